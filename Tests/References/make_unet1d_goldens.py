#!/usr/bin/env python3
"""Parity goldens for UNet1DModel: diffusers' outputs for fixed inputs.

    nice -n 19 /work/venv/bin/python Tests/References/make_unet1d_goldens.py

Versions: torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0 (requirements.txt beside this file).

Cases, each written to Tests/AudioModelTests/Goldens/<case>/:
- formula weights (the Dance Diffusion layout and our lean config: too big to commit): every
  parameter is set by `formula_weight` (make_unet2d_goldens.py's; Swift has the same), buffers
  (the resampling kernels) keep their values; only config.json + io.safetensors are stored.
  io's metadata `state_dict` lists every state-dict key with its shape (buffers included), so
  the Swift test can check that a strict load accepts exactly diffusers' keys.
- saved weights (the small RL configs): random-initialised, perturbed, saved by diffusers
  itself (`save_pretrained`, safetensors) and reloaded, so the test also proves that a diffusers
  folder loads.
io.safetensors: input.sample [N, C, L]; input.timestep [N] (F32) with output; input.timestep_scalar
(a 0-dim tensor: one timestep for the batch) with output_scalar — except for the value function,
where diffusers itself fails on a scalar timestep with N > 1 (OutValueFunctionBlock concatenates
the [1, C] embedding to [N, fc]); ours repeats the timestep, which is what diffusers does
everywhere else.

`kernels/io.safetensors`: diffusers' Downsample1d/Upsample1d for each kernel ("linear", "cubic",
"lanczos3") on input [2, 3, 16]: output.down.<kernel>, output.up.<kernel>.
"""
import json, os, shutil, zlib
import numpy as np
import torch
from diffusers import UNet1DModel
from diffusers.models.unets.unet_1d_blocks import Downsample1d, Upsample1d
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../AudioModelTests/Goldens")
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


def run(model, sample, t, labels=None):
    model.eval()
    with torch.no_grad():
        if labels is None:
            return model(sample, t).sample
        return model(sample, t, class_labels=labels).sample


def write_case(name, cfg, n, length, timesteps, formula, seed=0):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    model = UNet1DModel(**cfg)
    state = {k: list(v.shape) for k, v in model.state_dict().items()}
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
        model = UNet1DModel.from_pretrained(d)  # as users load it
    g = torch.Generator().manual_seed(seed + 1)
    io = {"input.sample": torch.randn(n, cfg.get("in_channels", 2), length, generator=g),
          "input.timestep": torch.tensor(timesteps[:n], dtype=torch.float32),
          "input.timestep_scalar": torch.tensor(timesteps[-1], dtype=torch.float32)}
    io["output"] = run(model, io["input.sample"], io["input.timestep"])
    try:
        io["output_scalar"] = run(model, io["input.sample"], io["input.timestep_scalar"])
    except RuntimeError as e:  # OutValueFunctionBlock concatenates a [1, C] embedding to [N, fc]
        print(name, "no scalar-timestep output:", str(e).splitlines()[0])
        del io["input.timestep_scalar"]
    # Conditioning: how far float32 is from float64 for this very net (our tolerance must exceed it).
    m64 = model.double()
    gap = float((run(m64, io["input.sample"].double(), io["input.timestep"].double()) - io["output"].double()).abs().max())
    model.float()
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"),
              metadata={"state_dict": json.dumps(state, sort_keys=True)})
    print(name, "params", sum(p.numel() for p in model.parameters()), "out", tuple(io["output"].shape),
          "max|out|", float(io["output"].abs().max()), "torch f32 vs f64", gap)


def write_kernels():
    d = os.path.join(OUT, "kernels")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(7))
    io = {"input": x}
    for k in ["linear", "cubic", "lanczos3"]:
        io[f"output.down.{k}"] = Downsample1d(k)(x)
        io[f"output.up.{k}"] = Upsample1d(k)(x)
    save_file({k: v.detach().contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    print("kernels", {k: tuple(v.shape) for k, v in io.items()})


# Dance Diffusion's layout (harmonai/maestro-150k: NoSkip / DownBlock1D / AttnDownBlock1D, the
# UNetMidBlock1D, the mirrored up blocks; Fourier features concatenated to the stereo input), with
# three levels of 32/64/64 channels instead of fourteen up to 512 (widths chosen so that every
# block whose inner width is its input or its output width tells the two apart). Formula weights.
DANCE = dict(sample_size=128, sample_rate=16000, in_channels=2, out_channels=2, extra_in_channels=16,
             time_embedding_type="fourier", time_embedding_dim=16, flip_sin_to_cos=True, use_timestep_embedding=False,
             freq_shift=0.0, down_block_types=["DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"],
             up_block_types=["AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"], mid_block_type="UNetMidBlock1D",
             out_block_type=None, block_out_channels=[32, 64, 64], act_fn=None, norm_num_groups=8, layers_per_block=1,
             downsample_each_block=False)

# diffusers' RL U-Net test config (hopper shape): positional time embedding through the time MLP,
# residual temporal blocks, OutConv1DBlock. Saved weights.
RL = dict(block_out_channels=[8, 8, 16, 16], in_channels=14, out_channels=14, time_embedding_type="positional",
          use_timestep_embedding=True, flip_sin_to_cos=False, freq_shift=1.0, out_block_type="OutConv1DBlock",
          mid_block_type="MidResTemporalBlock1D", down_block_types=["DownResnetBlock1D"] * 4,
          up_block_types=["UpResnetBlock1D"] * 3, act_fn="swish")

# A value function (hopper value-function shape, smaller): every down block downsamples, the
# ValueFunction mid and out blocks reduce [N, C, 16] to [N, 1]. Fourier time features, Mish. Saved weights.
VALUE = dict(block_out_channels=[8, 8, 16, 32], in_channels=6, out_channels=6, time_embedding_type="fourier",
             use_timestep_embedding=True, flip_sin_to_cos=False, down_block_types=["DownResnetBlock1D"] * 4,
             up_block_types=[], mid_block_type="ValueFunctionMidBlock1D", out_block_type="ValueFunction",
             layers_per_block=1, downsample_each_block=True, act_fn="mish")

# Our lean default (UNet1DConfig.lean(), without class embedding; the Swift test checks that the
# two agree). Formula weights.
LEAN = dict(sample_size=16384, sample_rate=16000, in_channels=1, out_channels=1, extra_in_channels=0,
            time_embedding_type="positional", time_embedding_dim=None, flip_sin_to_cos=True, use_timestep_embedding=True,
            freq_shift=0.0, down_block_types=["DownResnetBlock1D"] * 8, up_block_types=["UpResnetBlock1D"] * 7,
            mid_block_type="MidResTemporalBlock1D", out_block_type="OutConv1DBlock",
            block_out_channels=[16, 16, 32, 32, 64, 64, 128, 128], act_fn="silu", norm_num_groups=8, layers_per_block=0,
            downsample_each_block=False)

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    write_kernels()
    write_case("dance", DANCE, 2, 128, [0.3, 0.85], formula=True, seed=1)
    write_case("rl_temporal", RL, 3, 16, [10.0, 999.0, 1.0], formula=False, seed=2)
    write_case("value_function", VALUE, 2, 16, [5.0, 0.5], formula=False, seed=3)
    if LEAN:
        write_case("lean", LEAN, 2, 256, [999.0, 20.0], formula=True, seed=4)
