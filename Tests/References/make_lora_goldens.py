#!/usr/bin/env python3
"""LoRA goldens: files in the diffusers/PEFT and kohya formats and the weights diffusers fuses from them.

    /work/venv/bin/python Tests/References/make_lora_goldens.py

Versions: torch 2.15.0, diffusers 0.42.1, transformers 5.25.0, peft 0.21.2, safetensors 0.8.0.
Run make_sd_single_file_goldens.py first: the base model is its tiny SD 1.x folder
(Tests/ImageModelTests/Goldens/sd-single-file/sd1/: unet and text_encoder).

Writes Tests/ImageModelTests/Goldens/lora/:
- `peft.safetensors`: a unet LoRA made with peft (`unet.add_adapter(LoraConfig(r=4, lora_alpha=8, ...))`
  on the attention projections, proj_in (a 1×1 conv), the GEGLU projection and the resnets' 3×3 conv1),
  random non-zero A and B, saved by
  `StableDiffusionPipeline.save_lora_weights` (diffusers format: `unet.<module>.lora_A.weight` /
  `lora_B.weight`, alpha in the `lora_adapter_metadata` header entry).
- `kohya.safetensors`: the same unet LoRA in kohya's format (`lora_unet_<module with _>.lora_down.weight`,
  `.lora_up.weight`, `.alpha`) plus a text-encoder LoRA (`lora_te_text_model_encoder_layers_N_…`,
  alpha 2 on rank 4) written here: peft 0.21 cannot add text-encoder adapters under transformers 5.
  (The test renames the peft file's keys to `unet.<module>.lora.down.weight` / `lora.up.weight` +
  `.alpha`, diffusers' intermediate naming, itself: a third file would only repeat these bytes.)
- `expected.safetensors`: for scale s in {1.0, 0.5}: `unet.s<s>.<param>` — the unet weights after
  `pipe.load_lora_weights(peft file)` + `pipe.fuse_lora(lora_scale=s)` (only the changed tensors) —
  and `text_encoder.s<s>.<param>`: W + s·(alpha/r)·up@down in float64 torch, rounded to F32.
"""
import json, os, shutil
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "../ImageModelTests/Goldens/sd-single-file/sd1")
OUT = os.path.join(HERE, "../ImageModelTests/Goldens/lora")
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "ff.net.0.proj", "conv1"]
R, ALPHA, TE_ALPHA = 4, 8.0, 2.0
torch.use_deterministic_algorithms(True)


def base_pipe():
    unet = UNet2DConditionModel.from_pretrained(BASE, subfolder="unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(os.path.join(BASE, "text_encoder"), torch_dtype=torch.float32)
    return StableDiffusionPipeline(unet=unet, vae=None, text_encoder=te, tokenizer=None, scheduler=DDIMScheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    g = torch.Generator().manual_seed(17)

    # --- unet LoRA with peft, saved by diffusers.
    pipe = base_pipe()
    pipe.unet.add_adapter(LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights=False))
    with torch.no_grad():
        for n, p in pipe.unet.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    lora = get_peft_model_state_dict(pipe.unet)
    StableDiffusionPipeline.save_lora_weights(OUT, unet_lora_layers=lora, weight_name="peft.safetensors",
                                              unet_lora_adapter_metadata=pipe.unet.peft_config["default"].to_dict())
    peft_file = os.path.join(OUT, "peft.safetensors")
    with safe_open(peft_file, "pt") as f:
        print("peft metadata:", f.metadata())
    sd = load_file(peft_file)
    print("peft keys e.g.:", sorted(sd)[:2], len(sd))

    # --- kohya and dotted copies of the same unet LoRA.
    kohya = {}
    for k, v in sd.items():
        assert k.startswith("unet.") and (k.endswith(".lora_A.weight") or k.endswith(".lora_B.weight")), k
        module = k[len("unet."):-len(".lora_A.weight")]
        down = k.endswith(".lora_A.weight")
        kohya[f"lora_unet_{module.replace('.', '_')}.lora_{'down' if down else 'up'}.weight"] = v
        kohya[f"lora_unet_{module.replace('.', '_')}.alpha"] = torch.tensor(ALPHA)

    # --- text-encoder LoRA (kohya only) and its fused weights in float64.
    te_sd = pipe.text_encoder.state_dict()
    te_targets = [n[:-len(".weight")] for n in te_sd
                  if n.endswith(".weight") and any(t in n for t in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"))]
    expected = {}
    te_delta = {}
    for m in te_targets:
        w = te_sd[m + ".weight"]
        down = torch.randn(R, w.shape[1], generator=g) * 0.3
        up = torch.randn(w.shape[0], R, generator=g) * 0.3
        name = "lora_te_" + ("text_model." + m if not m.startswith("text_model.") else m).replace(".", "_")
        kohya[name + ".lora_down.weight"], kohya[name + ".lora_up.weight"] = down, up
        kohya[name + ".alpha"] = torch.tensor(TE_ALPHA)
        te_delta[m + ".weight"] = (TE_ALPHA / R) * (up.double() @ down.double())
    for s in (1.0, 0.5):
        for n, d in te_delta.items():
            expected[f"text_encoder.s{s}.{n}"] = (te_sd[n].double() + s * d).float()
    save_file(kohya, os.path.join(OUT, "kohya.safetensors"))

    # --- diffusers' fused unet weights.
    before = {k: v.clone() for k, v in base_pipe().unet.state_dict().items()}
    for s in (1.0, 0.5):
        p = base_pipe()
        p.load_lora_weights(OUT, weight_name="peft.safetensors")
        p.fuse_lora(lora_scale=s, components=["unet"])
        p.unload_lora_weights()
        after = p.unet.state_dict()
        assert set(after) == set(before), set(after) ^ set(before)
        changed = [k for k in after if not torch.equal(after[k], before[k])]
        # A plain-torch check of the same merge, in float64.
        for k in changed:
            module = k[:-len(".weight")]
            a, b = sd[f"unet.{module}.lora_A.weight"].double(), sd[f"unet.{module}.lora_B.weight"].double()
            delta = (b.flatten(1) @ a.flatten(1)).reshape(before[k].shape) * (ALPHA / R) * s
            err = (after[k].double() - (before[k].double() + delta)).abs().max().item()
            assert err < 1e-5, (k, err)
            expected[f"unet.s{s}.{k}"] = after[k].contiguous()
        print(f"scale {s}: {len(changed)} unet tensors changed")
        p.load_lora_weights(os.path.join(OUT, "kohya.safetensors"))  # diffusers reads the kohya file too
    save_file(expected, os.path.join(OUT, "expected.safetensors"))
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    main()
