#!/usr/bin/env python3
"""Whole-pipeline goldens for text-to-image: diffusers' StableDiffusionPipeline on a tiny random
SD1-shaped pipeline folder, given the start latents.

    /work/venv/bin/python Tests/References/make_sd_pipeline_goldens.py

Versions: torch 2.15.0, diffusers 0.42.1, transformers 5.25.0, safetensors 0.8.0 (requirements.txt).

Writes Tests/ImageModelTests/Goldens/sd-pipeline/:
- tiny/                    a pipeline folder as diffusers saves it (model_index.json, scheduler/,
                           tokenizer/, text_encoder/, unet/, vae/), random weights. The tokenizer is
                           CLIP's real BPE cut to its first 500 merges (vocab 1014: the 512 byte
                           symbols, the merges, <|startoftext|>, <|endoftext|>), so the text
                           encoder's embedding stays small.
- <case>.safetensors       `latents` (the start noise, [N, 4, h, w]), `prompt_embeds` (what the
                           text encoder gives the unet, cond rows), `output_latents` (the final
                           latents, before the VAE) and `sample` (the VAE's decoded output, [-1, 1]
                           scale, before clamping); metadata: the call as JSON.
- tiny-lcm/unet/, tiny-lcm/scheduler/
                           an LCM-distilled unet's shape (the tiny unet + `time_cond_proj_dim` 32: it
                           takes the guidance scale as an input) and LCMScheduler's config; the test
                           puts it in the tiny pipeline in place of its unet and scheduler.
- lcm-*.safetensors        the same keys for calls on it: LatentConsistencyModelPipeline (4 LCM
                           steps, guidance 8.5 embedded, no negative side) and StableDiffusionPipeline
                           with TCDScheduler (eta 0.3; a negative prompt that it does not use). Start
                           latents and every step's noise come from `torch.Generator().manual_seed(seed)`
                           (`latents` holds the start noise as drawn): `--rng torch`'s order.
"""
import gzip, json, os, shutil, zipfile, glob
import torch
from diffusers import (StableDiffusionPipeline, UNet2DConditionModel, AutoencoderKL, PNDMScheduler,
                       EulerDiscreteScheduler, DPMSolverMultistepScheduler, DDIMScheduler,
                       EulerAncestralDiscreteScheduler, LatentConsistencyModelPipeline, LCMScheduler, TCDScheduler)
from transformers import CLIPTextModel, CLIPTextConfig, CLIPTokenizer
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "../ImageModelTests/Goldens/sd-pipeline")
torch.use_deterministic_algorithms(True)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return [chr(c) for c in cs]


def tiny_tokenizer(folder, merges_kept=500):
    wheel = sorted(glob.glob("/work/wheels/open_clip_torch-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as z:
        text = gzip.decompress(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
    merges = text.split("\n")[1:49152 - 256 - 2 + 1][:merges_kept]
    symbols = bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"), model_max_length=77)
    tok.save_pretrained(folder)
    return tok, len(vocab)


def build(folder):
    torch.manual_seed(0)
    tok, vocab = tiny_tokenizer(os.path.join(folder, "tokenizer"))
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                                        bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1,
                                        projection_dim=32))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16, 16, 16), layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        latent_channels=4, norm_num_groups=8, sample_size=64)
    for m in (text, unet, vae):
        with torch.no_grad():
            for p in m.parameters():  # no zero-initialised layer hides a bug; values exact in F16
                p.add_(torch.randn_like(p) * 0.05)
                p.copy_(p.half().float())
    # Stable Diffusion 1.5's scheduler_config.json (clip_sample is a DDIM key it carries along).
    sched = PNDMScheduler.from_config(dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           num_train_timesteps=1000, set_alpha_to_one=False, skip_prk_steps=True,
                                           steps_offset=1, clip_sample=False, timestep_spacing="leading",
                                           trained_betas=None, prediction_type="epsilon"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)  # F16 files: half the size
    tiny_tokenizer(os.path.join(folder, "tokenizer"))  # transformers 5 saves only tokenizer.json; folders have both
    return StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, local_files_only=True, torch_dtype=torch.float32)


def embeds(pipe, prompts, clip_skip):
    """What the unet attends to: the last hidden state, or with clip_skip the hidden state that many
    layers before it through the final layer norm (diffusers' encode_prompt, computed here because
    its clip_skip path reaches for `text_encoder.text_model`, which transformers 5 no longer has)."""
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    out = pipe.text_encoder(ids, output_hidden_states=True)
    if clip_skip is None:
        return out[0]
    return pipe.text_encoder.final_layer_norm(out.hidden_states[-(clip_skip + 1)])


SAMPLERS = {  # our --sampler name → diffusers class and extra config
    "pndm": (PNDMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpm++2m": (DPMSolverMultistepScheduler, {}),
    "dpm++2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
}

CASES = [
    # name, prompts, negative, guidance, sampler, steps, (h, w) latents, seed, clip_skip
    ("apple-euler", ["a red apple"], None, 7.5, "euler", 4, (8, 8), 1, None),
    ("cat-dpm-negative-wide", ["a photo of a cat, highly detailed"], "blurry, low quality", 7.5, "dpm++2m", 5, (8, 12), 2, None),
    ("two-prompts-unguided-pndm", ["grinning face with big eyes", "woman firefighter: medium skin tone"], None, 1.0, "pndm", 3, (8, 8), 3, None),
    ("ddim-clip-skip", ["an old red barn in the snow"], "", 5.0, "ddim", 4, (12, 8), 4, 1),
    ("karras-long-prompt", [" ".join(["a very long prompt"] * 30)], "watermark", 7.5, "dpm++2m-karras", 4, (8, 8), 5, None),
]


def main():
    folder = os.path.join(OUT, "tiny")
    pipe = build(folder)
    for name, prompts, negative, guidance, sampler, steps, (h, w), seed, clip_skip in CASES:
        cls, extra = SAMPLERS[sampler]
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **extra)
        n = len(prompts)
        latents = torch.randn(n, 4, h, w, generator=torch.Generator().manual_seed(seed))
        neg = None if negative is None else [negative] * n
        with torch.no_grad():
            cond = embeds(pipe, prompts, clip_skip)
            uncond = embeds(pipe, neg or [""] * n, clip_skip)
            if clip_skip is None:  # diffusers' own path agrees
                ref, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
                assert torch.equal(ref, cond)
            out = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond if guidance > 1 else None, height=h * 8, width=w * 8,
                       num_inference_steps=steps, guidance_scale=guidance, latents=latents.clone(), output_type="latent",
                       generator=torch.Generator().manual_seed(seed + 100)).images
            sample = pipe.vae.decode(out / pipe.vae.config.scaling_factor).sample
        call = dict(prompts=prompts, negative_prompt=negative, guidance=guidance, sampler=sampler, steps=steps,
                    height=h * 8, width=w * 8, clip_skip=clip_skip, seed=seed + 100)
        save_file({"latents": latents.contiguous(), "prompt_embeds": cond.contiguous(),
                   "output_latents": out.contiguous(), "sample": sample.contiguous()},
                  os.path.join(OUT, name + ".safetensors"), metadata={"call": json.dumps(call)})
        print(name, tuple(out.shape), float(sample.abs().max()))


LCM_CASES = [
    # name, pipeline, prompts, negative, guidance, sampler, steps, (h, w) latents, seed, eta
    ("lcm-4steps", "lcm", ["a red apple", "cat face"], None, 8.5, "lcm", 4, (8, 8), 11, None),
    ("lcm-tcd-sd-pipeline", "sd", ["grinning face with big eyes"], "blurry", 3.0, "tcd", 3, (8, 12), 12, 0.3),
]


def lcm(pipe):
    """The tiny pipeline with an LCM unet (time_cond_proj_dim 32), called as diffusers' LCM and SD pipelines call it."""
    folder = os.path.join(OUT, "tiny-lcm")
    torch.manual_seed(1)
    unet = UNet2DConditionModel(**{**pipe.unet.config, "time_cond_proj_dim": 32})
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
            p.copy_(p.half().float())
    sched = LCMScheduler.from_config(pipe.scheduler.config)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    unet.to(torch.float16).save_pretrained(os.path.join(folder, "unet"), safe_serialization=True)
    sched.save_pretrained(os.path.join(folder, "scheduler"))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"), torch_dtype=torch.float32)
    parts = dict(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=unet,
                 safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for name, kind, prompts, negative, guidance, sampler, steps, (h, w), seed, eta in LCM_CASES:
        cls = {"lcm": LCMScheduler, "tcd": TCDScheduler}[sampler]
        p = (LatentConsistencyModelPipeline if kind == "lcm" else StableDiffusionPipeline)(
            scheduler=cls.from_config(sched.config), **parts)
        n = len(prompts)
        latents = torch.randn(n, 4, h, w, generator=torch.Generator().manual_seed(seed))  # what the pipeline draws first
        extra = {} if kind == "lcm" else dict(negative_prompt=[negative] * n, eta=eta)
        with torch.no_grad():
            cond, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
            out = p(prompt=prompts, height=h * 8, width=w * 8, num_inference_steps=steps, guidance_scale=guidance,
                    output_type="latent", generator=torch.Generator().manual_seed(seed), **extra).images
            sample = pipe.vae.decode(out / pipe.vae.config.scaling_factor).sample
        call = dict(pipeline=kind, prompts=prompts, negative_prompt=negative, guidance=guidance, sampler=sampler,
                    steps=steps, height=h * 8, width=w * 8, clip_skip=None, seed=seed, eta=eta)
        save_file({"latents": latents.contiguous(), "prompt_embeds": cond.contiguous(),
                   "output_latents": out.contiguous(), "sample": sample.contiguous()},
                  os.path.join(OUT, name + ".safetensors"), metadata={"call": json.dumps(call)})
        print(name, tuple(out.shape), float(sample.abs().max()))


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["lcm"]:  # only the LCM cases, on the committed tiny folder
        lcm(StableDiffusionPipeline.from_pretrained(os.path.join(OUT, "tiny"), safety_checker=None, local_files_only=True,
                                                    torch_dtype=torch.float32))
    else:
        main()
        lcm(StableDiffusionPipeline.from_pretrained(os.path.join(OUT, "tiny"), safety_checker=None, local_files_only=True,
                                                    torch_dtype=torch.float32))
