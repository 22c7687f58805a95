#!/usr/bin/env python3
"""Checks that a text-to-image pipeline folder written by diffuse loads in diffusers and
transformers and draws the same images there, given the same start latents.

1. Unless folders are given, trains a tiny Stable Diffusion from scratch with `diffuse train image`
   on 16 coloured squares captioned by colour (16×16 pixels, 8×8×4 latents, a 1-layer 32-wide
   CLIP text encoder; a few dozen steps: the weights are what matters, not the pictures).
2. For each folder: every float-typed key of text_encoder/config.json must be a JSON float
   (transformers 5's `@strict` CLIPTextConfig refuses `1` for `initializer_factor`), and
   `diffusers.StableDiffusionPipeline.from_pretrained(folder)` must load it with no missing or
   unexpected weights.
3. For each case (prompt, guidance, steps, sampler) the same start latents go through
   `diffuse generate image --latents L --raw R` and through diffusers' pipeline (the folder's
   scheduler swapped diffusers' way, `Cls.from_config(pipe.scheduler.config)`); the final latents
   and the VAE's decoded images ([-1, 1], before clamping) must agree within 1e-3 max abs.
Prints the max abs differences; exits 1 on any failure.

    swift build -c release
    /work/venv/bin/python Tests/References/check_text_to_image_interop.py [--diffuse .build/release/diffuse] [FOLDER ...]

Versions used: torch 2.13.0+cpu, diffusers 0.42.1, transformers 5.25.0, safetensors 0.8.0,
numpy 2.4.6, Pillow 13.0.0 (Python 3.11.7). Not part of `make test` (needs Python).
"""
import argparse, json, os, subprocess, sys, tempfile, warnings
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file, load_file
from diffusers import (StableDiffusionPipeline, DPMSolverMultistepScheduler, DDIMScheduler, EulerDiscreteScheduler,
                       EulerAncestralDiscreteScheduler, PNDMScheduler)
import transformers
from transformers import CLIPTextModel

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
transformers.logging.disable_progress_bar()
TOL = 1e-3

# transformers 5.25 CLIPTextConfig fields typed `float` (attention_dropout is int | float).
TEXT_FLOAT_KEYS = ["layer_norm_eps", "initializer_range", "initializer_factor"]

SAMPLERS = {  # our --sampler name → diffusers class
    "dpm++2m": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "pndm": PNDMScheduler,
}

CASES = [  # prompt, guidance, steps, sampler, count, seed
    ("red square", 7.5, 8, "dpm++2m", 2, 1),
    ("blue square", 1.0, 4, "ddim", 1, 2),
    ("a yellow square on white", 5.0, 6, "euler", 2, 3),
    ("green square", 3.0, 5, "pndm", 1, 4),
]


def toy_folder(folder):
    """16 images of 16×16: a coloured 8×8 square on white, captioned by its colour."""
    os.makedirs(folder, exist_ok=True)
    colours = [("red", (255, 0, 0)), ("green", (0, 255, 0)), ("blue", (0, 0, 255)), ("yellow", (255, 255, 0))]
    lines = []
    for i in range(16):
        name, rgb = colours[i % 4]
        x0 = 2 + (i // 4) * 2
        a = np.full((16, 16, 3), 255, np.uint8)
        a[4:12, x0:x0 + 8] = rgb
        Image.fromarray(a).save(os.path.join(folder, f"{i:02d}.png"))
        lines.append(json.dumps({"file_name": f"{i:02d}.png", "text": f"{name} square"}))
    with open(os.path.join(folder, "metadata.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")


def tiny_recipe(path):
    """The tiny recipe of TextToImageTrainingTests, with fewer steps."""
    recipe = {
        "vae": {"_class_name": "AutoencoderKL", "block_out_channels": [16, 16], "layers_per_block": 1,
                "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
                "latent_channels": 4, "norm_num_groups": 8, "sample_size": 16},
        "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "max_position_embeddings": 8, "projection_dim": None, "architectures": ["CLIPTextModel"]},
        "unet": {"_class_name": "UNet2DConditionModel", "sample_size": 8, "block_out_channels": [32, 32], "layers_per_block": 1,
                 "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
                 "cross_attention_dim": 32, "attention_head_dim": 2, "norm_num_groups": 8},
        "vae_training": {"steps": 20, "batch_size": 8, "warmup_steps": 5, "learning_rate": 2e-3, "checkpoint_every": 10, "ema_decay": 0},
        "training": {"steps": 30, "batch_size": 8, "warmup_steps": 5, "learning_rate": 1e-3, "checkpoint_every": 10, "ema_decay": 0.9},
        "preview_every": 0,
    }
    with open(path, "w") as f:
        json.dump(recipe, f, indent=2)


def check_configs(folder):
    ok = True
    with open(os.path.join(folder, "text_encoder", "config.json")) as f:
        cfg = json.load(f)
    for k in TEXT_FLOAT_KEYS:
        if k in cfg and not isinstance(cfg[k], float):
            print(f"BAD {folder}: text_encoder/config.json {k} = {cfg[k]!r} is not a JSON float (transformers 5 refuses it)")
            ok = False
    try:
        CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"))
    except Exception as e:  # what a user of transformers 5 sees
        print(f"BAD {folder}: transformers cannot load text_encoder/: {type(e).__name__}: {str(e).splitlines()[0]}")
        ok = False
    return ok


def compare(folder, diffuse, tmp, pipe, case):
    prompt, guidance, steps, sampler, n, seed = case
    pipe.scheduler = SAMPLERS[sampler].from_config(pipe.scheduler.config)
    size = pipe.unet.config.sample_size
    latents = torch.randn(n, pipe.unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(seed))
    lat_in, raw = os.path.join(tmp, "latents.safetensors"), os.path.join(tmp, "raw.safetensors")
    save_file({"latents": latents.contiguous()}, lat_in)
    subprocess.run([diffuse, "generate", "image", "--model", folder, "--prompt", prompt, "--count", str(n), "--steps", str(steps),
                    "--guidance", str(guidance), "--sampler", sampler, "--seed", str(seed), "--latents", lat_in, "--raw", raw,
                    "--out", os.path.join(tmp, "out")], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = load_file(raw)
    with torch.no_grad():
        want = pipe(prompt=[prompt] * n, num_inference_steps=steps, guidance_scale=guidance, latents=latents.clone(),
                    output_type="latent", generator=torch.Generator().manual_seed(seed)).images
        sample = pipe.vae.decode(want / pipe.vae.config.scaling_factor).sample
    e_lat = (ours["latents"] - want).abs().max().item()
    e_img = (ours["sample"] - sample).abs().max().item()
    good = e_lat <= TOL * max(1.0, want.abs().max().item()) and e_img <= TOL
    print(f"{'ok ' if good else 'BAD'} {os.path.basename(folder.rstrip('/'))}: \"{prompt}\" guidance {guidance} {steps} steps {sampler} ×{n}: "
          f"max abs difference latents {e_lat:.3g} (max {want.abs().max().item():.3g}), images {e_img:.3g}")
    return good


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--diffuse", default=".build/release/diffuse")
    ap.add_argument("--keep", help="train the tiny model into this folder and keep it")
    ap.add_argument("folders", nargs="*", help="pipeline folders written by diffuse (default: a tiny one trained here)")
    a = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folders = a.folders
        if not folders:
            data, recipe = os.path.join(tmp, "squares"), os.path.join(tmp, "recipe.json")
            run = a.keep or os.path.join(tmp, "run")
            toy_folder(data)
            tiny_recipe(recipe)
            subprocess.run([a.diffuse, "train", "image", "--data", data, "--config", recipe, "--out", run],
                           check=True, stdout=subprocess.DEVNULL)
            folders = [os.path.join(run, "model")]
        for folder in folders:
            ok &= check_configs(folder)
            try:
                pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, local_files_only=True, dtype=torch.float32)
            except Exception as e:
                print(f"BAD {folder}: diffusers cannot load the pipeline: {type(e).__name__}: {str(e).splitlines()[0]}")
                ok = False
                continue
            pipe.set_progress_bar_config(disable=True)
            for name in ("unet", "vae"):
                _, info = type(getattr(pipe, name)).from_pretrained(os.path.join(folder, name), output_loading_info=True)
                bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
                if bad:
                    print(f"BAD {folder}/{name}: {bad}")
                    ok = False
            for case in CASES:
                ok &= compare(folder, a.diffuse, tmp, pipe, case)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
