#!/usr/bin/env python3
"""Parity goldens for UNet2DConditionModel (Stable Diffusion's unet): diffusers' outputs for fixed inputs.

    /work/venv/bin/python Tests/References/make_unet2d_condition_goldens.py

Versions: torch 2.15.0, diffusers 0.42.1, safetensors 0.8.0 (requirements.txt beside this file).

Each case is a tiny random config shaped like a Stable Diffusion family member, written to
Tests/ImageModelTests/Goldens/cond_<case>/ as diffusers saves it (`save_pretrained`: config.json +
diffusion_pytorch_model.safetensors, F32 or F16), so the test also proves that a diffusers unet
folder loads; plus io.safetensors:
  input.sample [N,C,H,W], input.timestep [N], input.encoder_hidden_states [N,L,D] (F32),
  input.timestep_cond [N,P] (when time_cond_proj_dim), input.class_labels [N] (I64, when
  class-conditional), output [N,C',H,W].
The reference runs on the folder as reloaded (`from_pretrained`), in float32, default attention
processor (torch SDPA).
"""
import os, shutil, zlib
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../ImageModelTests/Goldens")
torch.use_deterministic_algorithms(True)


def run(model, io):
    model.eval()
    with torch.no_grad():
        return model(io["input.sample"], io["input.timestep"], encoder_hidden_states=io["input.encoder_hidden_states"],
                     timestep_cond=io.get("input.timestep_cond"), class_labels=io.get("input.class_labels")).sample


def write_case(name, cfg, n, hw, tokens, seed, half=False, timesteps=(1.0, 999.0, 500.0)):
    d = os.path.join(OUT, "cond_" + name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**cfg)
    with torch.no_grad():
        for pn, p in model.named_parameters():  # no zero-initialised layers hiding bugs
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(zlib.crc32(pn.encode()))))
    if half:
        model.half()
    model.save_pretrained(d, safe_serialization=True)
    model = UNet2DConditionModel.from_pretrained(d, torch_dtype=torch.float32)  # as users load it
    g = torch.Generator().manual_seed(seed + 1)
    io = {"input.sample": torch.randn(n, cfg.get("in_channels", 4), *hw, generator=g),
          "input.timestep": torch.tensor(timesteps[:n], dtype=torch.float32),
          "input.encoder_hidden_states": torch.randn(n, tokens, cfg["cross_attention_dim"], generator=g)}
    if cfg.get("time_cond_proj_dim"):
        io["input.timestep_cond"] = torch.randn(n, cfg["time_cond_proj_dim"], generator=g)
    if cfg.get("num_class_embeds"):
        io["input.class_labels"] = torch.arange(n, dtype=torch.int64) % cfg["num_class_embeds"]
    elif cfg.get("class_embed_type") == "timestep":
        io["input.class_labels"] = torch.tensor([3, 250, 999][:n], dtype=torch.int64)
    io["output"] = run(model, io)
    # How far float32 is from float64 for this very net (our tolerance must exceed it).
    io64 = {k: (v.double() if v.is_floating_point() else v) for k, v in io.items() if k != "output"}
    try:
        f64_gap = float((run(model.double(), io64) - io["output"].double()).abs().max())
    except RuntimeError:  # the timestep class embedding does not run in float64
        f64_gap = float("nan")
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    print(name, "params", sum(p.numel() for p in model.parameters()), "out", tuple(io["output"].shape),
          "max|out|", float(io["output"].abs().max()), "torch f32 vs f64", f64_gap)


os.makedirs(OUT, exist_ok=True)
# SD 1.x shape: conv proj_in/out, one head count for all blocks, mid cross-attention block,
# a non-square latent, 77 text tokens.
write_case("sd1", dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=[8, 16], layers_per_block=2,
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=32, attention_head_dim=2, norm_num_groups=4), 2, (16, 24), 77, seed=11, half=True)
# SD 2.x shape: linear proj_in/out, per-block head counts, upcast attention, three levels, and a
# latent (10×14) that is not a multiple of the U-Net's factor 4 (upsamplers resize to the skips).
write_case("sd2", dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=[8, 16, 16], layers_per_block=1,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=24, attention_head_dim=[2, 4, 8], use_linear_projection=True, upcast_attention=True,
    norm_num_groups=4), 2, (10, 14), 9, seed=12)
# Inpainting: 9 input channels (latents ++ mask ++ masked-image latents), 4 out; only_cross_attention
# as a list (block 0's attn1 attends to the text too).
write_case("inpaint", dict(
    sample_size=8, in_channels=9, out_channels=4, block_out_channels=[8, 16], layers_per_block=1,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4, only_cross_attention=[True, False]),
    1, (8, 8), 5, seed=13, half=True)
# LCM-style: a guidance embedding through time_cond_proj_dim, scale-shift resnets, per-block
# layers and transformer depths, timestep_post_act and time_embedding_act_fn; a "timestep" class
# embedding on top.
write_case("lcm", dict(
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=[8, 16], layers_per_block=[1, 2],
    transformer_layers_per_block=[1, 2], down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=16, attention_head_dim=2,
    norm_num_groups=4, time_cond_proj_dim=8, resnet_time_scale_shift="scale_shift", timestep_post_act="silu",
    time_embedding_act_fn="mish", mid_block_scale_factor=1.25, norm_eps=1e-6, class_embed_type="timestep"),
    2, (8, 8), 6, seed=14, half=True)
# Class-conditional variants and the small keys: concatenated class embedding, no mid block,
# other conv kernels, centred input, mish, time_embedding_dim, downsample padding 0.
write_case("class", dict(
    sample_size=8, in_channels=3, out_channels=2, block_out_channels=[8, 16], layers_per_block=1,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"], up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
    mid_block_type=None, cross_attention_dim=8, attention_head_dim=4, norm_num_groups=4, num_class_embeds=3,
    class_embeddings_concat=True, conv_in_kernel=1, conv_out_kernel=5, center_input_sample=True, act_fn="mish",
    time_embedding_dim=40, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1), 2, (8, 8), 3, seed=15, half=True)
