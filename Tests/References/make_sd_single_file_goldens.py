#!/usr/bin/env python3
"""Goldens for Stable Diffusion single-file checkpoints (the original `model.diffusion_model.*`,
`first_stage_model.*`, `cond_stage_model.*` layout that A1111 and civitai distribute).

    /work/venv/bin/python Tests/References/make_sd_single_file_goldens.py

Versions: torch 2.15.0, diffusers 0.42.1, transformers 5.25.0, accelerate 1.16.0, safetensors 0.8.0.

Writes Tests/ImageModelTests/Goldens/sd-single-file/:
- `<case>/` for case in sd1, sd2: a TINY random StableDiffusionPipeline saved by diffusers
  (`unet/`, `vae/`, `text_encoder/` weights + configs; no tokenizer or scheduler: the mapping test
  needs none) and `<case>.safetensors`, the same weights as one original-layout file written by
  diffusers' own `scripts/convert_diffusers_to_original_stable_diffusion.py` (vendored beside this
  file) plus the extra tensors real files carry and loaders ignore (EMA counters, the DDPM schedule
  buffers, CLIP's position_ids; for SD2 OpenCLIP's 24th resblock, text_projection, logit_scale).
  The script only recognises an SD2 text encoder with >= 23 layers, so the SD2 one has 23 (as
  diffusers' SD 2.x text encoders do: the 24th OpenCLIP layer is dropped, "penultimate layer").
  Each file is checked to load back with `StableDiffusionPipeline.from_single_file(path,
  config=folder, local_files_only=True)` into state dicts identical to the folder's.
- `layouts.json`: for the real SD 1.5, SD 1.5 inpainting, SD 2.1 (768-v) and SD 2 inpainting
  shapes, the list of (original name, shape) of a full-size file — built on the meta device (no
  weights) from the Hugging Face hub configs below, renamed by the same script — and the diffusers
  configs the single-file loader would use for it (the hub repo's unet/vae/text_encoder/scheduler
  configs that `from_single_file` fetches for the detected model type).

Hub configs used (diffusers 0.42.1 `DIFFUSERS_DEFAULT_PIPELINE_PATHS`): v1 →
stable-diffusion-v1-5/stable-diffusion-v1-5, v2 → stabilityai/stable-diffusion-2-1, inpainting →
stable-diffusion-v1-5/stable-diffusion-inpainting, inpainting_v2 →
stabilityai/stable-diffusion-2-inpainting. The values are the hub files' (read from copies vendored in
public repositories: the 2-1 folder in Luoyukeji/static-f, the v1-5 unet/vae/scheduler in
KiritoFD/dreambooth_ and Chinmay6824/AutoMedVis-Text-to-Video-Ad-Generation); the two inpainting
repos' scheduler classes (DDIM for SD 1.5 inpainting, PNDM for SD 2 inpainting) could not be
checked offline here.
"""
import copy, json, os, shutil, subprocess, sys
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "../ImageModelTests/Goldens/sd-single-file")
sys.path.insert(0, HERE)
import convert_diffusers_to_original_stable_diffusion as conv  # noqa: E402

torch.use_deterministic_algorithms(True)

DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
VAE_DOWN = ["DownEncoderBlock2D"] * 4
VAE_UP = ["UpDecoderBlock2D"] * 4


# ---------------------------------------------------------------------------------------------
# Hub configs (see the docstring). Keys: the union of the SD 1.5 and SD 2.1 hub files.

def unet_config(v2, inpainting=False, v_prediction=True):
    return {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "attention_head_dim": [5, 10, 20, 20] if v2 else 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False,
        "cross_attention_dim": 1024 if v2 else 768,
        "down_block_types": DOWN,
        "downsample_padding": 1,
        "dual_cross_attention": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 9 if inpainting else 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_class_embeds": None,
        "only_cross_attention": False,
        "out_channels": 4,
        "sample_size": 96 if (v2 and v_prediction and not inpainting) else 64,
        "transformer_layers_per_block": 1,
        "up_block_types": UP,
        "upcast_attention": bool(v2 and v_prediction and not inpainting),
        "use_linear_projection": bool(v2),
    }


def vae_config(sample_size):
    return {
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": VAE_DOWN,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": sample_size,
        "scaling_factor": 0.18215,
        "up_block_types": VAE_UP,
    }


def text_encoder_config(v2):
    return {
        "architectures": ["CLIPTextModel"],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "dropout": 0.0,
        "eos_token_id": 2,
        "hidden_act": "gelu" if v2 else "quick_gelu",
        "hidden_size": 1024 if v2 else 768,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 4096 if v2 else 3072,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "model_type": "clip_text_model",
        "num_attention_heads": 16 if v2 else 12,
        "num_hidden_layers": 23 if v2 else 12,
        "pad_token_id": 1,
        "projection_dim": 512 if v2 else 768,
        "vocab_size": 49408,
    }


def scheduler_config(cls, prediction):
    return {
        "_class_name": cls,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": prediction,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
    }


# ---------------------------------------------------------------------------------------------
# Extra tensors of real single files, ignored by diffusers' loader.

DDPM_BUFFERS = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                "posterior_mean_coef1", "posterior_mean_coef2"]


def extras(v2, te, g):
    """Shapes (or tensors when `g` is a generator) of the tensors real files add."""
    out = {k: torch.rand(1000, generator=g) for k in DDPM_BUFFERS}
    out["model_ema.decay"] = torch.tensor(0.9999)
    out["model_ema.num_updates"] = torch.tensor(470000, dtype=torch.int32)
    out["logvar"] = torch.zeros(1000)
    if v2:
        # te: the 23-layer diffusers state dict already converted to OpenCLIP names.
        p = "cond_stage_model.model."
        for k in [k for k in te if k.startswith(p + "transformer.resblocks.22.")]:
            out[k.replace("resblocks.22.", "resblocks.23.")] = torch.randn(te[k].shape, generator=g)
        w = te[p + "token_embedding.weight"].shape[1]
        out[p + "text_projection"] = torch.randn(w, w, generator=g)
        out[p + "logit_scale"] = torch.tensor(4.6052)
    else:
        n = te["cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"].shape[0]
        out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(n).unsqueeze(0)
    return out


# ---------------------------------------------------------------------------------------------
# Tiny pipelines.

def tiny_pipeline(v2, seed):
    torch.manual_seed(seed)
    hidden = 8 if v2 else 16
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=DOWN, up_block_types=UP,
        block_out_channels=(4, 4, 8, 8), layers_per_block=2, norm_num_groups=2,
        cross_attention_dim=hidden, attention_head_dim=(1, 2, 2, 4) if v2 else 2,
        use_linear_projection=v2, upcast_attention=v2)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=VAE_DOWN, up_block_types=VAE_UP,
                        block_out_channels=(4, 4, 8, 8), layers_per_block=2, latent_channels=4,
                        norm_num_groups=2, sample_size=32)
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=23 if v2 else 2,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu" if v2 else "quick_gelu",
        bos_token_id=0, eos_token_id=2, pad_token_id=1))
    # Random weights everywhere (zero-initialised layers would hide mapping bugs).
    for m in (unet, vae, te):
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
    tok = None
    sched = DDIMScheduler.from_config(scheduler_config("DDIMScheduler", "v_prediction" if v2 else "epsilon"))
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=te, tokenizer=tok, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def state_dicts(pipe):
    return {"unet": pipe.unet.state_dict(), "vae": pipe.vae.state_dict(), "text_encoder": pipe.text_encoder.state_dict()}


def make_case(name, v2, seed):
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    pipe = tiny_pipeline(v2, seed).to(torch.float16)  # F16 (as most shared files are): half the bytes
    pipe.save_pretrained(folder, safe_serialization=True)
    # The tokenizer is None here; model_index.json must still name a class for from_single_file.
    index = json.load(open(os.path.join(folder, "model_index.json")))
    index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    json.dump(index, open(os.path.join(folder, "model_index.json"), "w"), indent=2, sort_keys=True)
    # transformers 5 saves CLIPTextModel without the `text_model.` prefix; folders in the wild (and the
    # conversion script's SD2 test) have it. transformers 5 loads both.
    te_file = os.path.join(folder, "text_encoder", "model.safetensors")
    save_file({"text_model." + k: v for k, v in load_file(te_file).items()}, te_file, metadata={"format": "pt"})
    single = os.path.join(OUT, name + ".safetensors")
    subprocess.run([sys.executable, os.path.join(HERE, "convert_diffusers_to_original_stable_diffusion.py"),
                    "--model_path", folder, "--checkpoint_path", single, "--use_safetensors", "--half"],
                   check=True, stdout=subprocess.DEVNULL)
    sd = load_file(single)
    g = torch.Generator().manual_seed(seed + 1)
    sd.update({k: v.half() if v.is_floating_point() else v for k, v in extras(v2, sd, g).items()})
    save_file(dict(sorted(sd.items())), single)

    # diffusers loads the single file back into the folder's tensors, bit for bit.
    back = StableDiffusionPipeline.from_single_file(single, config=folder, local_files_only=True,
                                                     tokenizer=None, safety_checker=None, torch_dtype=torch.float16)
    ref = state_dicts(StableDiffusionPipeline.from_pretrained(folder, tokenizer=None, safety_checker=None,
                                                              torch_dtype=torch.float16))
    got = state_dicts(back)
    for comp in ref:
        assert set(ref[comp]) == set(got[comp]), (comp, set(ref[comp]) ^ set(got[comp]))
        for k in ref[comp]:
            assert torch.equal(ref[comp][k], got[comp][k]), (comp, k)
    shutil.rmtree(os.path.join(folder, "scheduler"), ignore_errors=True)
    for f in ("model_index.json",):
        os.remove(os.path.join(folder, f))
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
    print(f"{name}: {len(sd)} tensors in the single file, {os.path.getsize(single)} bytes; folder {size} bytes")


# ---------------------------------------------------------------------------------------------
# Real layouts (names and shapes only).

def layout(v2, inpainting, v_prediction=True):
    uc, vae_size = unet_config(v2, inpainting, v_prediction), 768 if (v2 and v_prediction and not inpainting) else 512
    vc, tc = vae_config(vae_size), text_encoder_config(v2)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config({k: v for k, v in uc.items() if not k.startswith("_")})
        vae = AutoencoderKL.from_config({k: v for k, v in vc.items() if not k.startswith("_")})
        te = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in tc.items() if k not in ("architectures", "model_type")}))
    u = {"model.diffusion_model." + k: v for k, v in conv.convert_unet_state_dict(unet.state_dict()).items()}
    a = {"first_stage_model." + k: v for k, v in conv.convert_vae_state_dict(vae.state_dict()).items()}
    t = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in te.state_dict().items()}
    if v2:
        t = {"transformer." + k: v for k, v in t.items()}
        t = {"cond_stage_model.model." + k: v for k, v in conv.convert_text_enc_state_dict_v20(t).items()}
    else:
        t = {"cond_stage_model.transformer." + k: v for k, v in t.items()}
    sd = {**u, **a, **t}
    sd.update(extras(v2, t, None))  # t holds meta tensors: only their shapes are read
    if v2:
        sched = scheduler_config("PNDMScheduler" if inpainting else "DDIMScheduler",
                                 "v_prediction" if (v_prediction and not inpainting) else "epsilon")
    else:
        sched = scheduler_config("DDIMScheduler" if inpainting else "PNDMScheduler", "epsilon")
    return {
        "tensors": sorted([k, list(v.shape)] for k, v in sd.items()),
        "unet": uc, "vae": vc, "text_encoder": tc, "scheduler": sched,
        "tokenizer_pad_token": "!" if v2 else "<|endoftext|>",
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    make_case("sd1", v2=False, seed=1)
    make_case("sd2", v2=True, seed=2)
    configs = {name: layout(*args) for name, args in {
        "sd15": (False, False), "sd15-inpainting": (False, True), "sd21-v": (True, False),
        "sd2-inpainting": (True, True), "sd21-base": (True, False, False)}.items()}
    # The tensor lists of the inpainting and 512-base layouts differ from their family's only in
    # the unet's conv_in ([320, 9, 3, 3]) or not at all: the test derives them.
    out = {"tensors": {k: configs[k].pop("tensors") for k in ("sd15", "sd21-v")}, "configs": configs}
    for c in configs.values():
        c.pop("tensors", None)
    with open(os.path.join(OUT, "layouts.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
    print("layouts.json:", os.path.getsize(os.path.join(OUT, "layouts.json")), "bytes")


if __name__ == "__main__":
    main()
