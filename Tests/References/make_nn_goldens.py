#!/usr/bin/env python3
"""NN-layer / optimizer / EMA goldens for diffuse (Tests/NNTests/Goldens/<case>.safetensors).

    /work/venv/bin/python Tests/References/make_nn_goldens.py

Versions pinned in requirements.txt beside this file (torch, diffusers, safetensors, numpy).
All tensors F32, CPU, torch.use_deterministic_algorithms(True), torch.manual_seed per case.

Module-case file contract:
  param.<state_dict name>       every parameter (exact PyTorch/diffusers name)
  input.<name>                  inputs (x, temb, timesteps, ...)
  output                        module output
  loss_weight                   random, shaped like output; loss = (output * loss_weight).sum()
  grad.input.<name>             d loss / d input (differentiable float inputs)
  grad.param.<name>             d loss / d param (parameters with requires_grad)
  __metadata__: config (JSON of constructor args, diffusers' names), module (class name);
                aliases (JSON {alias: written name}) only where one parameter has two state_dict names
                (Downsample2D name="conv": Conv2d_0.* == conv.*; only conv.* is written)
Cases without gradients (timesteps_*, fourier) have only param./input./output.
Parameters are re-initialised after construction: randn*0.2, norm weights 1+0.1*randn.
Optimizer / EMA layouts are described at their functions below.
"""
import json, os
import torch
import torch.nn as nn
from safetensors.torch import save_file
from diffusers.models.embeddings import Timesteps, GaussianFourierProjection, TimestepEmbedding
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D
from diffusers.training_utils import EMAModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../NNTests/Goldens")
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)
SEEDS = {}


def seed(case):
    s = 1000 + len(SEEDS)
    SEEDS[case] = s
    torch.manual_seed(s)


def save(case, tensors, module, config, extra_meta=None):
    t = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in tensors.items()}
    path = os.path.join(OUT, case + ".safetensors")
    meta = {"config": json.dumps(config), "module": module}
    meta.update(extra_meta or {})
    save_file(t, path, metadata=meta)
    print(f"{case:24s} {os.path.getsize(path):7d} B  {len(t)} tensors")


def reinit(m):
    with torch.no_grad():
        norm_params = set()
        for mod_name, mod in m.named_modules():
            if isinstance(mod, (nn.GroupNorm, nn.LayerNorm)) and mod.weight is not None:
                norm_params.add((mod_name + "." if mod_name else "") + "weight")
        for n, p in m.named_parameters():
            if n in norm_params:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.2)


def module_case(case, module_name, config, m, inputs, call, grads=True, reinit_params=True):
    """inputs: dict name -> tensor (float inputs get requires_grad when grads)."""
    seed(case)
    if reinit_params:
        reinit(m)
    m.eval()
    # Canonical names: state_dict keys, with shared-parameter aliases collapsed. Downsample2D(name="conv")
    # registers one Conv2d as both `Conv2d_0` and `conv`; state_dict lists both, diffusers checkpoints
    # store `conv.*`, so only `conv.*` is written and the alias goes to metadata `aliases`.
    sd = m.state_dict(keep_vars=True)
    by_id = {}
    for n, p in sd.items():
        by_id.setdefault(id(p), []).append(n)
    canon, aliases = {}, {}
    for names in by_id.values():
        pick = sorted(names, key=lambda n: ("Conv2d_0" in n, n))[0]
        for n in names:
            canon[n] = pick
            if n != pick:
                aliases[n] = pick
    assert set(canon.values()) == set(canon[n] for n, _ in m.named_parameters()), case  # no buffers
    tensors = {f"param.{n}": sd[n] for n in sorted(set(canon.values()))}
    ins = {}
    for n, v in inputs.items():
        v = v.clone()
        if grads and v.is_floating_point():
            v.requires_grad_(True)
        ins[n] = v
        tensors[f"input.{n}"] = v
    out = call(m, ins)
    tensors["output"] = out
    if grads:
        w = torch.randn_like(out)
        tensors["loss_weight"] = w
        (out * w).sum().backward()
        for n, v in ins.items():
            if v.grad is not None:
                tensors[f"grad.input.{n}"] = v.grad
        for n, p in m.named_parameters():
            if p.requires_grad and p.grad is not None:
                tensors[f"grad.param.{canon[n]}"] = p.grad
    save(case, tensors, module_name, config, {"aliases": json.dumps(aliases)} if aliases else None)


def build(case, cls, kw):
    seed(case + "/build")
    return cls(**kw)


def x_only(m, ins):
    return m(ins["x"])


def main():
    os.makedirs(OUT, exist_ok=True)
    g = lambda *s: torch.randn(*s)

    # 1. Linear
    for case, kw in [("linear", dict(in_features=7, out_features=5)),
                     ("linear_nobias", dict(in_features=7, out_features=5, bias=False))]:
        m = build(case, nn.Linear, kw)
        torch.manual_seed(1); x = g(3, 7)
        module_case(case, "Linear", kw, m, {"x": x}, x_only)

    # 2. Conv2d
    for case, kw, shape in [
        ("conv2d", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1), (2, 4, 9, 8)),
        ("conv2d_groups", dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2, dilation=2), (1, 4, 7, 7)),
    ]:
        m = build(case, nn.Conv2d, kw)
        torch.manual_seed(2); x = g(*shape)
        module_case(case, "Conv2d", kw, m, {"x": x}, x_only)

    # 3. Conv1d
    kw = dict(in_channels=3, out_channels=4, kernel_size=5, padding=2)
    m = build("conv1d", nn.Conv1d, kw)
    torch.manual_seed(3); x = g(2, 3, 17)
    module_case("conv1d", "Conv1d", kw, m, {"x": x}, x_only)

    # 4. GroupNorm
    kw = dict(num_groups=4, num_channels=8, eps=1e-6)
    m = build("groupnorm", nn.GroupNorm, kw)
    torch.manual_seed(4); x = g(2, 8, 5, 3)
    module_case("groupnorm", "GroupNorm", kw, m, {"x": x}, x_only)

    # 5. Timesteps / GaussianFourierProjection (no grads)
    ts = torch.tensor([0.0, 1.0, 17.0, 999.0])
    for case, flip, shift in [("timesteps_flip_shift0", True, 0), ("timesteps_noflip_shift1", False, 1),
                              ("timesteps_flip_shift1", True, 1)]:
        kw = dict(num_channels=32, flip_sin_to_cos=flip, downscale_freq_shift=shift)
        m = build(case, Timesteps, kw)
        module_case(case, "Timesteps", kw, m, {"timesteps": ts}, lambda m, i: m(i["timesteps"]),
                    grads=False, reinit_params=False)
    kw = dict(embedding_size=16, scale=16.0, set_W_to_weight=True, log=True, flip_sin_to_cos=False)
    m = build("fourier", GaussianFourierProjection, kw)  # weight = randn*16 from construction (kept)
    module_case("fourier", "GaussianFourierProjection", kw, m,
                {"timesteps": torch.tensor([1.0, 10.0, 500.0])}, lambda m, i: m(i["timesteps"]),
                grads=False, reinit_params=False)

    # 6. TimestepEmbedding
    kw = dict(in_channels=32, time_embed_dim=64, act_fn="silu")
    m = build("timestep_embedding", TimestepEmbedding, kw)
    torch.manual_seed(6); x = g(3, 32)
    module_case("timestep_embedding", "TimestepEmbedding", kw, m, {"x": x}, x_only)

    # 7. Attention (UNet2D mid-block style, deprecated attn block layout)
    for case, heads, dim_head in [("attention", 2, 8), ("attention_onehead", 1, 16)]:
        kw = dict(query_dim=16, heads=heads, dim_head=dim_head, rescale_output_factor=1.0, eps=1e-6,
                  norm_num_groups=4, spatial_norm_dim=None, residual_connection=True, bias=True,
                  upcast_softmax=True, _from_deprecated_attn_block=True)
        m = build(case, Attention, kw)
        torch.manual_seed(7); x = g(2, 16, 4, 5)
        module_case(case, "Attention", kw, m, {"x": x}, x_only)

    # 8. ResnetBlock2D
    base = dict(temb_channels=16, groups=4, eps=1e-6, dropout=0.0, output_scale_factor=1.0,
                non_linearity="silu", time_embedding_norm="default")
    variants = [
        ("resnet2d", dict(base, in_channels=8, out_channels=12)),
        ("resnet2d_scale_shift", dict(base, in_channels=8, out_channels=8, time_embedding_norm="scale_shift",
                                      output_scale_factor=2.0)),
        ("resnet2d_down", dict(base, in_channels=8, out_channels=8, down=True)),
        ("resnet2d_up", dict(base, in_channels=8, out_channels=8, up=True)),
    ]
    for case, kw in variants:
        m = build(case, ResnetBlock2D, kw)
        torch.manual_seed(8); x = g(2, 8, 6, 6); temb = g(2, 16)
        module_case(case, "ResnetBlock2D", kw, m, {"x": x, "temb": temb}, lambda m, i: m(i["x"], i["temb"]))

    # 9. Downsample2D / Upsample2D
    for case, kw in [("downsample2d", dict(channels=8, use_conv=True, out_channels=8, padding=1, name="conv")),
                     ("downsample2d_pad0", dict(channels=8, use_conv=True, out_channels=8, padding=0, name="conv")),
                     ("downsample2d_avg", dict(channels=8, use_conv=False, out_channels=8, padding=1, name="conv"))]:
        m = build(case, Downsample2D, kw)
        torch.manual_seed(9); x = g(2, 8, 6, 6)
        module_case(case, "Downsample2D", kw, m, {"x": x}, x_only)
    kw = dict(channels=8, use_conv=True)
    m = build("upsample2d", Upsample2D, kw)
    torch.manual_seed(9); x = g(2, 8, 3, 4)
    module_case("upsample2d", "Upsample2D", kw, m, {"x": x}, x_only)

    # 10. Optimizers
    optim_case("adamw", "AdamW", dict(lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.1))
    optim_case("sgd_momentum", "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01))

    # 11. EMA
    ema_case("ema", dict(decay=0.999, min_decay=0.0, update_after_step=2, use_ema_warmup=True,
                         inv_gamma=1.0, power=2 / 3))
    ema_case("ema_nowarmup", dict(decay=0.999, min_decay=0.0, update_after_step=2, use_ema_warmup=False,
                                  inv_gamma=1.0, power=2 / 3))


def optim_case(case, name, kw):
    """init.p0/p1; for t in 0..4: grad.step<t>.pX (assigned to .grad), then optimizer.step(),
    after.step<t>.pX = params after that step. p0 [3,4], p1 [5]. Optimizer defaults otherwise
    (AdamW: amsgrad=False, maximize=False; SGD: dampening=0, nesterov=False)."""
    seed(case)
    p0 = nn.Parameter(torch.randn(3, 4)); p1 = nn.Parameter(torch.randn(5))
    t = {"init.p0": p0.detach().clone(), "init.p1": p1.detach().clone()}
    args = dict(kw)
    if "betas" in args:
        args["betas"] = tuple(args["betas"])
    opt = getattr(torch.optim, name)([p0, p1], foreach=False, **args)
    for s in range(5):
        g0 = torch.randn(3, 4); g1 = torch.randn(5)
        p0.grad = g0.clone(); p1.grad = g1.clone()
        opt.step()
        t[f"grad.step{s}.p0"] = g0; t[f"grad.step{s}.p1"] = g1
        t[f"after.step{s}.p0"] = p0.detach().clone(); t[f"after.step{s}.p1"] = p1.detach().clone()
    save(case, t, name, kw)


def ema_case(case, kw):
    """init.p0/p1 = model params at EMAModel construction (shadow starts as a copy).
    For t in 0..7: model params set to model.step<t>.pX, then ema.step(params);
    shadow.step<t>.pX = shadow after that step; decay[t] = ema.cur_decay_value, i.e.
    get_decay(optimization_step) with optimization_step already incremented (t+1).
    Exact float64 decays are also in metadata key `decay_f64` (JSON list)."""
    seed(case)
    p0 = nn.Parameter(torch.randn(4)); p1 = nn.Parameter(torch.randn(2, 3))
    t = {"init.p0": p0.detach().clone(), "init.p1": p1.detach().clone()}
    ema = EMAModel([p0, p1], **kw)
    decays = []
    for s in range(8):
        with torch.no_grad():
            p0.add_(0.3 * torch.randn(4)); p1.add_(0.3 * torch.randn(2, 3))
        t[f"model.step{s}.p0"] = p0.detach().clone(); t[f"model.step{s}.p1"] = p1.detach().clone()
        ema.step([p0, p1])
        assert ema.optimization_step == s + 1
        assert ema.cur_decay_value == ema.get_decay(s + 1)
        decays.append(float(ema.cur_decay_value))
        t[f"shadow.step{s}.p0"] = ema.shadow_params[0].detach().clone()
        t[f"shadow.step{s}.p1"] = ema.shadow_params[1].detach().clone()
    t["decay"] = torch.tensor(decays, dtype=torch.float64).to(torch.float32)
    tt = {k: v.detach().to(torch.float32).contiguous() for k, v in t.items()}
    path = os.path.join(OUT, case + ".safetensors")
    save_file(tt, path, metadata={"config": json.dumps(kw), "module": "EMAModel",
                                  "decay_f64": json.dumps(decays), "foreach": json.dumps(ema.foreach)})
    print(f"{case:24s} {os.path.getsize(path):7d} B  {len(tt)} tensors")


if __name__ == "__main__":
    main()
