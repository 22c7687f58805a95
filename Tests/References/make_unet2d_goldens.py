#!/usr/bin/env python3
"""Parity goldens for UNet2DModel: diffusers' outputs for fixed inputs.

    /work/venv/bin/python Tests/References/make_unet2d_goldens.py

Versions: torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0 (requirements.txt beside this file).

Two kinds of case, both written to Tests/ImageModelTests/Goldens/<case>/:
- small configs: random-initialised weights saved by diffusers itself (`save_pretrained`,
  safetensors), so the test also proves that a diffusers folder loads; plus io.safetensors.
- large configs (google/ddpm-cifar10-32's): weights far too big to commit, so every parameter is
  set by a formula both sides compute (`formula_weight` below; Swift has the same), and only
  config.json + io.safetensors are stored.
io.safetensors: input.sample [N,C,H,W], input.timestep [N] (F32), input.class_labels [N] (I64,
when class-conditional), output [N,C,H,W].
"""
import json, os, shutil, zlib
import numpy as np
import torch
from diffusers import UNet2DModel
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../ImageModelTests/Goldens")
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/bench")
torch.use_deterministic_algorithms(True)


def formula_weight(name, shape):
    """a·(2u − 1), u uniform in [0, 1) from splitmix64 of (flat index + 1000003·Σ bytes(name)):
    exact integer arithmetic, so Swift computes the same values. Matrices and kernels:
    a = 1/√fan_in (PyTorch's default bound); vectors: a = 0.05, norm weights 1 + that."""
    n = int(np.prod(shape)) if len(shape) else 1
    seed = np.uint64(1000003 * sum(name.encode()))
    with np.errstate(over="ignore"):
        x = (np.arange(n, dtype=np.uint64) + seed) * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(30); x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27); x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    u = (x >> np.uint64(40)).astype(np.float64) / 16777216.0
    fan_in = int(np.prod(shape[1:])) if len(shape) >= 2 else 0
    a = 1 / np.sqrt(fan_in) if fan_in > 0 else 0.05
    v = a * (2 * u - 1)
    if "norm" in name and name.endswith("weight"):
        v = 1.0 + v
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def io_tensors(cfg, n, seed):
    g = torch.Generator().manual_seed(seed)
    s = cfg.get("sample_size", 32)
    s = s if isinstance(s, int) else s[0]
    x = torch.randn(n, cfg.get("in_channels", 3), s, s, generator=g)
    t = torch.tensor([1.0, 999.0, 500.0, 37.0][:n])
    d = {"input.sample": x, "input.timestep": t}
    if cfg.get("num_class_embeds"):
        d["input.class_labels"] = torch.arange(n, dtype=torch.int64) % cfg["num_class_embeds"]
    elif cfg.get("class_embed_type") == "timestep":
        d["input.class_labels"] = torch.tensor([3, 250, 999, 0][:n], dtype=torch.int64)
    return d


def run(model, io):
    model.eval()
    with torch.no_grad():
        y = model(io["input.sample"], io["input.timestep"], class_labels=io.get("input.class_labels")).sample
    return y


def write_case(name, cfg, n, formula, seed=0):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    model = UNet2DModel(**cfg)
    if formula:
        with torch.no_grad():
            for pn, p in model.named_parameters():
                p.copy_(formula_weight(pn, tuple(p.shape)))
        model.save_config(d)  # config.json only
    else:
        with torch.no_grad():
            for pn, p in model.named_parameters():  # no zero-initialised layers hiding bugs
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(zlib.crc32(pn.encode()))))
        model.save_pretrained(d, safe_serialization=True)
        model = UNet2DModel.from_pretrained(d)  # as users load it
    io = io_tensors(cfg, n, seed + 1)
    io["output"] = run(model, io)
    # Conditioning: how far float32 is from float64 for this very net (our tolerance must exceed it).
    io64 = {k: (v.double() if v.is_floating_point() else v) for k, v in io.items() if k != "output"}
    try:
        f64_gap = float((run(model.double(), io64) - io["output"].double()).abs().max())
    except RuntimeError:  # diffusers' "timestep" class embedding does not run in float64
        f64_gap = float("nan")
    model.float()
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    print(name, "params", sum(p.numel() for p in model.parameters()), "out", tuple(io["output"].shape),
          "max|out|", float(io["output"].abs().max()), "torch f32 vs f64", f64_gap)


def load(path):
    c = json.load(open(path))
    return {k: v for k, v in c.items() if not k.startswith("_")}


os.makedirs(OUT, exist_ok=True)
# google/ddpm-cifar10-32's config (35.7 M parameters): formula weights.
write_case("ddpm_cifar10", load(os.path.join(SHARED, "ddpm_cifar10_unet2d.json")), 2, formula=True)
# A class-conditional config (the Fashion-MNIST benchmark config, 4.0 M): formula weights.
write_case("fmnist_class", load(os.path.join(SHARED, "fmnist_unet2d.json")), 3, formula=True)
# Small configs with real saved weights.
write_case("small_scale_shift", dict(
    sample_size=16, in_channels=2, out_channels=3, block_out_channels=[8, 16], layers_per_block=1,
    down_block_types=["ResnetDownsampleBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "ResnetUpsampleBlock2D"],
    norm_num_groups=4, attention_head_dim=4, resnet_time_scale_shift="scale_shift", freq_shift=1, flip_sin_to_cos=False,
    mid_block_scale_factor=1.4142, norm_eps=1e-6, act_fn="silu"), 2, formula=False, seed=3)
write_case("small_fourier_resnet", dict(
    sample_size=16, in_channels=1, out_channels=1, block_out_channels=[8, 16, 16], layers_per_block=2,
    down_block_types=["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    norm_num_groups=4, attention_head_dim=None, time_embedding_type="fourier", downsample_type="resnet", upsample_type="resnet",
    downsample_padding=0, center_input_sample=True, act_fn="mish", attn_norm_num_groups=2), 2, formula=False, seed=4)
write_case("small_timestep_class", dict(
    sample_size=8, in_channels=3, out_channels=3, block_out_channels=[8, 16], layers_per_block=1,
    down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"],
    norm_num_groups=4, attention_head_dim=4, class_embed_type="timestep", add_attention=False, mid_block_type="UNetMidBlock2D",
    time_embedding_dim=24), 2, formula=False, seed=5)
