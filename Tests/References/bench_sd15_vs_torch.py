#!/usr/bin/env python3
"""Stable Diffusion 1.5 on the CPU: diffuse against PyTorch + diffusers on the same random weights.

    /work/venv/bin/python Tests/References/bench_sd15_vs_torch.py [--diffuse .build/release/diffuse]
        [--folder /work/sd15-random] [--steps 20] [--size 512] [--threads 2] [--unet-runs 3]

Versions: torch 2.15.0, diffusers 0.42.1, transformers 5.25.0 (requirements.txt).

Makes (once) a pipeline folder with SD 1.5's real configs (../shared/bench/sd15_unet.json,
sd15_vae.json, CLIP ViT-L/14's text config, the CLIP vocabulary diffuse ships) and random
weights in F16 — the shape of every SD 1.5 checkpoint, 2.1 GB — then, alternating the two tools:
1. one unet forward at batch 2 (a guided step), 64×64 latents, 77×768 text states;
2. one 512² image at 20 DPM-Solver++ steps with guidance 7.5, end to end, split into the text
   encoder, the denoising steps and the VAE decode, with each process's peak RSS.
Prints the CPU model, diffuse's OpenBLAS core and the torch version beside the figures.
"""
import argparse, json, os, resource, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
SHARED = os.path.abspath(os.path.join(ROOT, "../shared/bench"))
PROMPT = "a red apple on a wooden table, photograph"
NEGATIVE = "blurry, low quality"


def make_folder(folder):
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel, AutoencoderKL, PNDMScheduler
    from transformers import CLIPTextModel, CLIPTextConfig, CLIPTokenizer
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(json.load(open(os.path.join(SHARED, "sd15_unet.json"))))
    vae = AutoencoderKL.from_config(json.load(open(os.path.join(SHARED, "sd15_vae.json"))))
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                        projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1))
    vocab = os.path.join(ROOT, "Sources/Text/Resources/clip-vit-large-patch14")
    tok = CLIPTokenizer(os.path.join(vocab, "vocab.json"), os.path.join(vocab, "merges.txt"), pad_token="<|endoftext|>",
                        model_max_length=77)
    sched = PNDMScheduler.from_config(dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           num_train_timesteps=1000, set_alpha_to_one=False, skip_prk_steps=True,
                                           steps_offset=1, clip_sample=False, timestep_spacing="leading"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):  # transformers 5 writes only tokenizer.json
        with open(os.path.join(vocab, f)) as a, open(os.path.join(folder, "tokenizer", f), "w") as b:
            b.write(a.read())


def torch_unet_forward(folder, threads, runs):
    import torch
    from diffusers import UNet2DConditionModel
    torch.set_num_threads(threads)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=torch.float32).eval()
    x, t, text = torch.randn(2, 4, 64, 64), torch.tensor([500, 500]), torch.randn(2, 77, 768)
    times = []
    with torch.no_grad():
        for _ in range(runs):
            s = time.perf_counter(); unet(x, t, text); times.append(time.perf_counter() - s)
    return statistics.median(times)


def torch_image(folder, threads, steps, size):
    import torch
    from diffusers import StableDiffusionPipeline, DPMSolverMultistepScheduler
    torch.set_num_threads(threads)
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None, local_files_only=True)
    pipe.tokenizer.model_max_length = 77  # folders made before this script set it
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    parts = {}
    with torch.no_grad():
        s = time.perf_counter()
        cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
        parts["text encoder"] = time.perf_counter() - s
        s = time.perf_counter()
        latents = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, height=size, width=size, num_inference_steps=steps,
                       guidance_scale=7.5, output_type="latent", generator=torch.Generator().manual_seed(0)).images
        parts["denoise"] = time.perf_counter() - s
        s = time.perf_counter()
        pipe.vae.decode(latents / pipe.vae.config.scaling_factor)
        parts["vae decode"] = time.perf_counter() - s
    parts["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    return parts


def run_child(fn, *args):
    """Each measurement in a fresh process, so peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--child", fn, json.dumps(args)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--diffuse", default=os.path.join(ROOT, ".build/release/diffuse"))
    p.add_argument("--folder", default="/work/sd15-random")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--unet-runs", type=int, default=3)
    p.add_argument("--image-only", action="store_true", help="skip the unet forward comparison")
    p.add_argument("--child")
    a, rest = p.parse_known_args()
    if a.child:
        print(json.dumps(globals()[a.child](*json.loads(rest[0]))))
        return
    if not os.path.exists(os.path.join(a.folder, "model_index.json")):
        make_folder(a.folder)
    import torch
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    core = json.loads(subprocess.run([a.diffuse, "bench", "core", "--json"], capture_output=True, text=True).stdout)
    print(f"CPU {cpu}; {a.threads} threads; torch {torch.__version__}; diffuse OpenBLAS core: {core}", flush=True)

    # 1. unet forward, batch 2
    bench = None if a.image_only else subprocess.run([a.diffuse, "bench", "model", os.path.join(a.folder, "unet"), "--batch", "2", "--runs", "5",
                            "--threads", str(a.threads), "--json"], capture_output=True, text=True, check=True)
    if bench:
      ours = json.loads(bench.stdout)
      theirs = run_child("torch_unet_forward", a.folder, a.threads, a.unet_runs)
      print(f"unet forward, batch 2, 64x64: diffuse {ours['median_s']:.2f} s (peak RSS {ours['peak_rss_bytes'] / 1e6:.0f} MB), "
          f"torch {theirs:.2f} s, ratio {ours['median_s'] / theirs:.2f}", flush=True)

    # 2. one image end to end
    out = subprocess.run([a.diffuse, "generate", "image", "--model", a.folder, "--prompt", PROMPT, "--negative-prompt", NEGATIVE,
                          "--width", str(a.size), "--height", str(a.size), "--steps", str(a.steps), "--sampler", "dpm++2m",
                          "--guidance", "7.5", "--threads", str(a.threads), "--verbose", "--out", "/tmp/sd15-bench.png"],
                         capture_output=True, text=True, check=True)
    ours_line = [l for l in out.stderr.splitlines() if l.startswith("text encoder")][-1]
    print(f"one {a.size}² image, {a.steps} steps, guidance 7.5: diffuse: {ours_line}", flush=True)
    t = run_child("torch_image", a.folder, a.threads, a.steps, a.size)
    print("  torch: " + ", ".join(f"{k} {v:.2f}" + ("" if "MB" in k else " s") for k, v in t.items()))


if __name__ == "__main__":
    main()
