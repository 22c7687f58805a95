#!/usr/bin/env python3
"""Parity goldens for AutoencoderKL: diffusers' encoder posterior and decoder outputs for fixed inputs.

    /work/venv/bin/python Tests/References/make_vae_goldens.py

Versions: torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0 (requirements.txt beside this file).

Each case is written to Tests/ImageModelTests/Goldens/<case>/:
- vae_small: random weights rounded to float16 and saved as an F16 diffusers folder (config.json +
  diffusion_pytorch_model.safetensors), so the test also proves a diffusers vae folder with half
  weights loads; the references are computed in float32 from exactly those weights.
- the others: config.json only; every parameter is set by `formula_weight` (the same formula as
  make_unet2d_goldens.py; Swift: UNet2DParityTests.formulaWeights). `vae_sd15` is the Stable
  Diffusion 1.5 VAE config (83.7 M parameters), far too large to commit as weights.
io.safetensors (F32):
  encode.<tag>.input [N,C,H,W] (in [-1, 1]) -> encode.<tag>.mean, encode.<tag>.logvar
      (`vae.encode(x).latent_dist`, logvar clamped as diffusers does)
  decode.<tag>.input [N,latent,h,w] -> decode.<tag>.output (`vae.decode(z).sample`)
  A tag containing "tiled" was run after `vae.enable_tiling()` (and the input is larger than one
  tile, so the tiles overlap and blend).
"""
import json, os, shutil, sys, zlib
import numpy as np
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_unet2d_goldens import formula_weight  # the formula the Swift tests compute too

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../ImageModelTests/Goldens")
# The shared benchmark configs (../shared/bench beside the checkout; DIFFUSE_BENCH_CONFIGS overrides).
SHARED = os.environ.get("DIFFUSE_BENCH_CONFIGS",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/bench"))
torch.use_deterministic_algorithms(True)




def run(vae, kind, tag, x):
    if "tiled" in tag:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    with torch.no_grad():
        if kind == "encode":
            d = vae.encode(x).latent_dist
            return {"mean": d.mean, "logvar": d.logvar}
        return {"output": vae.decode(x).sample}


def write_case(name, cfg, inputs, formula, seed=0):
    """inputs: (kind, tag, shape) with kind "encode" or "decode"."""
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    vae = AutoencoderKL(**cfg)
    with torch.no_grad():
        for pn, p in vae.named_parameters():
            if formula:
                p.copy_(formula_weight(pn, tuple(p.shape)))
            else:  # no zero-initialised layers hiding bugs; then exactly representable in float16
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(zlib.crc32(pn.encode()))))
                p.copy_(p.half().float())
    if formula:
        vae.save_config(d)
    else:
        vae.save_config(d)
        save_file({k: v.half().contiguous() for k, v in vae.state_dict().items()},
                  os.path.join(d, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        vae = AutoencoderKL.from_pretrained(d, torch_dtype=torch.float32)  # as users load it
    vae.eval()
    g = torch.Generator().manual_seed(seed + 1)
    io, gaps = {}, []
    for kind, tag, shape in inputs:
        x = torch.rand(*shape, generator=g) * 2 - 1 if kind == "encode" else torch.randn(*shape, generator=g)
        io[f"{kind}.{tag}.input"] = x
        out = run(vae, kind, tag, x)
        for k, v in out.items():
            io[f"{kind}.{tag}.{k}"] = v
        # Conditioning: how far float32 is from float64 for this very net (our tolerance must exceed it).
        out64 = run(vae.double(), kind, tag, x.double())
        vae.float()
        gaps.append(max(float((out64[k] - out[k].double()).abs().max()) for k in out))
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    print(name, "params", sum(p.numel() for p in vae.parameters()),
          "max|out|", max(float(v.abs().max()) for k, v in io.items() if not k.endswith("input")),
          "torch f32 vs f64", max(gaps))


def load(path):
    c = json.load(open(path))
    return {k: v for k, v in c.items() if not k.startswith("_")}


def levels(n):
    return dict(down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n)


os.makedirs(OUT, exist_ok=True)
# Two levels (f = 2), tiles of 16 pixels / 8 latents: tiled decode of 10×14 latents makes 2×3
# tiles (the last column 2 latents wide), tiled encode of 20×28 pixels 2×3 tiles as well.
write_case("vae_small", dict(
    block_out_channels=[16, 32], layers_per_block=1, norm_num_groups=8, latent_channels=4, sample_size=16,
    **levels(2)), [
        ("encode", "square", (2, 3, 16, 16)), ("encode", "wide", (1, 3, 16, 24)),
        ("decode", "square", (2, 4, 8, 8)), ("decode", "wide", (1, 4, 8, 12)),
        ("decode", "tiled", (2, 4, 10, 14)), ("encode", "tiled", (1, 3, 20, 28)),
    ], formula=False, seed=1)
# Three levels (f = 4), two resnets per level, no post_quant_conv; tiles of 16 pixels / 4 latents.
write_case("vae_three_levels", dict(
    block_out_channels=[32, 64, 64], layers_per_block=2, norm_num_groups=16, latent_channels=4, sample_size=16,
    use_post_quant_conv=False, **levels(3)), [
        ("encode", "wide", (1, 3, 16, 24)), ("decode", "wide", (1, 4, 4, 6)),
        ("decode", "tiled", (1, 4, 7, 10)), ("encode", "tiled", (1, 3, 24, 40)),
    ], formula=True, seed=2)
# No mid-block attention, mish resnets, no quant_conv, other channel counts and scaling.
write_case("vae_no_attention", dict(
    in_channels=4, out_channels=2, block_out_channels=[8, 16], layers_per_block=2, norm_num_groups=4, latent_channels=3,
    sample_size=32, act_fn="mish", use_quant_conv=False, mid_block_add_attention=False, scaling_factor=0.13025,
    shift_factor=0.0609, force_upcast=False, **levels(2)), [
        ("encode", "wide", (2, 4, 8, 12)), ("decode", "wide", (2, 3, 4, 6)),
    ], formula=True, seed=3)
# The Stable Diffusion 1.5 VAE config at 64×64 pixels / 8×8 latents.
write_case("vae_sd15", load(os.path.join(SHARED, "sd15_vae.json")), [
    ("encode", "square", (1, 3, 64, 64)), ("decode", "square", (1, 4, 8, 8)),
], formula=True, seed=4)
