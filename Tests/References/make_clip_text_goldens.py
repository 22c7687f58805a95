#!/usr/bin/env python3
"""CLIPTextModel goldens: transformers' outputs for tiny random text encoders.

    /work/venv/bin/python Tests/References/make_clip_text_goldens.py

Versions: torch 2.15.0, transformers 5.25.0, safetensors 0.8.0 (Python 3.11.7).
Writes Tests/TextTests/Goldens/clip_text/<case>/:
- config.json + model.safetensors: saved by `save_pretrained` (transformers 5's names, no
  `text_model.` prefix), so the test also proves that such a folder loads;
- io.safetensors: input_ids [B, 77] (I64), last_hidden_state [B, 77, C], clip_skip_1 and
  clip_skip_2 (final_layer_norm(hidden_states[-2]) and [-3], as diffusers' `encode_prompt`
  with clip_skip 1 and 2), hidden_states_0 (the embeddings; quick_gelu case), pooled [B, C], and for the
  projection case text_embeds [B, P].
Case `prefixed` holds the first case's weights as transformers 4 saved them: `text_model.`
prefix plus the `text_model.embeddings.position_ids` buffer (I64), F16, with io computed from
those F16-rounded weights.
openclip.safetensors: the gelu case's weights under an original SD 2.x file's OpenCLIP names
(`cond_stage_model.model.*`, in_proj q/k/v stacked, plus logit_scale and a text_projection that an
SD 2 text encoder ignores), checked here to convert back exactly with diffusers'
`convert_open_clip_checkpoint` (diffusers 0.42.1); the test compares with gelu/io.safetensors.
Cases:
- quick_gelu: SD 1.x-like (quick_gelu, legacy eos_token_id 2: pooled at each row's largest id,
  pad = eos 499 as in CLIP's tokenizer); hidden 32, 3 layers, 4 heads, intermediate 37.
- gelu: SD 2.x-like (gelu, eos_token_id 499 with pad "!" 0: pooled at the first eos), 2 layers,
  layer_norm_eps 1e-6.
- projection: CLIPTextModelWithProjection (gelu_pytorch_tanh, projection_dim 24).
Weights: every parameter randn · 0.2 (layer-norm weights 1 + 0.1 randn) so that no zero or
identity initialisation hides a bug.
"""
import json, os, shutil
import torch
from safetensors.torch import save_file, load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../TextTests/Goldens/clip_text")
torch.use_deterministic_algorithms(True)
VOCAB, L = 500, 77


def ids_rows(pad, eos, bos=498, lengths=(5, 40, 77)):
    g = torch.Generator().manual_seed(3)
    rows = []
    for n in lengths:
        body = torch.randint(1, 490, (max(n - 2, 0),), generator=g).tolist()[: L - 2]
        row = [bos] + body + [eos]
        rows.append(row + [pad] * (L - len(row)))
    return torch.tensor(rows, dtype=torch.int64)


def reinit(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * r if ("layer_norm" in name and name.endswith("weight")) else 0.2 * r)


def outputs(model, ids):
    text = model.text_model if hasattr(model, "text_model") else model
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        hs = out.hidden_states
        assert len(hs) == text.config.num_hidden_layers + 1
        io = {
            "input_ids": ids,
            "last_hidden_state": out.last_hidden_state,
            "clip_skip_1": text.final_layer_norm(hs[-2]),
            "clip_skip_2": text.final_layer_norm(hs[-3]),
        }
        if text.config.hidden_act == "quick_gelu":
            io["hidden_states_0"] = hs[0]
        if hasattr(out, "text_embeds"):
            io["text_embeds"] = out.text_embeds
            io["pooled"] = text(ids).pooler_output
        else:
            io["pooled"] = out.pooler_output
        # The clip-skip-0 path is last_hidden_state itself.
        assert torch.allclose(text.final_layer_norm(hs[-1]), out.last_hidden_state, atol=1e-6)
    return {k: v.contiguous() for k, v in io.items()}


def case(name, cls, seed, ids, **kw):
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                            max_position_embeddings=L, **kw)
    model = cls(config).eval()
    reinit(model, seed)
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    io = outputs(model, ids)
    save_file(io, os.path.join(folder, "io.safetensors"))
    print(name, {k: tuple(v.shape) for k, v in io.items()})
    return model, folder


def main():
    os.makedirs(OUT, exist_ok=True)
    sd1_ids = ids_rows(pad=499, eos=499)
    model, folder = case("quick_gelu", CLIPTextModel, 1, sd1_ids, num_hidden_layers=3, hidden_act="quick_gelu",
                         bos_token_id=0, eos_token_id=2, pad_token_id=1)
    case("gelu", CLIPTextModel, 2, ids_rows(pad=0, eos=499), num_hidden_layers=2, hidden_act="gelu",
         layer_norm_eps=1e-6, bos_token_id=498, eos_token_id=499, pad_token_id=0)
    case("projection", CLIPTextModelWithProjection, 3, ids_rows(pad=499, eos=499), num_hidden_layers=2,
         hidden_act="gelu_pytorch_tanh", projection_dim=24, bos_token_id=498, eos_token_id=499, pad_token_id=499)

    # transformers 4's layout of the quick_gelu case: prefixed names, the position_ids buffer, F16.
    prefixed = os.path.join(OUT, "prefixed")
    shutil.rmtree(prefixed, ignore_errors=True)
    os.makedirs(prefixed)
    shutil.copy(os.path.join(folder, "config.json"), prefixed)
    state = {k: v.half() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    tensors = {"text_model." + k: v for k, v in state.items()}
    tensors["text_model.embeddings.position_ids"] = torch.arange(L, dtype=torch.int64)[None]
    save_file(tensors, os.path.join(prefixed, "model.safetensors"), metadata={"format": "pt"})
    with torch.no_grad():
        model.load_state_dict({k: v.float() for k, v in state.items()})
    save_file(outputs(model, sd1_ids), os.path.join(prefixed, "io.safetensors"))
    # An original-layout SD 2.x file's text tower (OpenCLIP names) holding the gelu case's weights,
    # checked to map back exactly through diffusers' own converter; plus tensors diffusers ignores.
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    gelu = os.path.join(OUT, "gelu")
    state = load_file(os.path.join(gelu, "model.safetensors"))
    P = "cond_stage_model.model."
    oc = {P + "token_embedding.weight": state["embeddings.token_embedding.weight"],
          P + "positional_embedding": state["embeddings.position_embedding.weight"],
          P + "ln_final.weight": state["final_layer_norm.weight"], P + "ln_final.bias": state["final_layer_norm.bias"],
          P + "logit_scale": torch.tensor(4.6), P + "text_projection": torch.randn(32, 24)}
    for n in range(2):
        src, dst = f"encoder.layers.{n}.", P + f"transformer.resblocks.{n}."
        for w in ["weight", "bias"]:
            oc[dst + f"attn.in_proj_{w}"] = torch.cat([state[src + f"self_attn.{p}_proj.{w}"] for p in "qkv"])
            for a, b in [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]:
                oc[dst + f"{b}.{w}"] = state[src + f"{a}.{w}"]
    oc = {k: v.contiguous() for k, v in oc.items()}
    ref = CLIPTextModel(CLIPTextConfig.from_pretrained(gelu))
    converted = convert_open_clip_checkpoint(ref, oc)
    converted.pop("text_projection.weight", None)  # the SD 2 model has none (diffusers drops it when loading)
    converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    assert converted.keys() == state.keys(), set(converted) ^ set(state)
    assert all(torch.equal(converted[k], state[k]) for k in state)
    save_file(oc, os.path.join(OUT, "openclip.safetensors"))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
