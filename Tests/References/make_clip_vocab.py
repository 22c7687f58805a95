#!/usr/bin/env python3
"""CLIP's BPE vocabulary in the layout of openai/clip-vit-large-patch14's tokenizer folder.

    pip download --no-deps -d /tmp/w open-clip-torch      # any 2.x/3.x wheel; 3.3.0 used here
    /work/venv/bin/python Tests/References/make_clip_vocab.py /tmp/w/open_clip_torch-3.3.0-py3-none-any.whl

Reads open_clip/bpe_simple_vocab_16e6.txt.gz (the file OpenAI's CLIP ships) from the wheel and
writes Sources/Text/Resources/clip-vit-large-patch14/ — the built-in tokenizer of Stable
Diffusion 1.x/2.x (single-file checkpoints carry none):
- vocab.json: the 256 byte-unicode symbols (GPT-2's bytes_to_unicode order), the same with
  `</w>`, then the first 48,894 merges joined, then <|startoftext|> 49406, <|endoftext|> 49407
  (OpenAI's SimpleTokenizer builds exactly this list);
- merges.txt: those 48,894 merges under a `#version: 0.2` line;
- tokenizer_config.json, special_tokens_map.json: as the hub folder has them (SD 1.x; pad is
  <|endoftext|>. SD 2.x folders pad with "!", id 0).
Needs only the standard library.
"""
import gzip, json, os, sys, zipfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../Sources/Text/Resources/clip-vit-large-patch14")
MERGES = 49152 - 256 - 2  # OpenAI's count: vocab 49408 = 512 symbols + merges + 2 specials


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def special(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def main(wheel):
    with zipfile.ZipFile(wheel) as z:
        raw = gzip.decompress(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
    merges = raw.split("\n")[1:MERGES + 1]
    assert len(merges) == MERGES and all(len(m.split()) == 2 for m in merges)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    ids = {t: i for i, t in enumerate(vocab)}
    assert len(ids) == len(vocab) == 49408, len(ids)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(ids, f, ensure_ascii=False)
    with open(os.path.join(OUT, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    bos, eos = special("<|startoftext|>"), special("<|endoftext|>")
    with open(os.path.join(OUT, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": bos, "eos_token": eos, "pad_token": "<|endoftext|>", "unk_token": eos}, f, indent=2)
        f.write("\n")
    config = {
        "add_prefix_space": False,
        "bos_token": dict(bos, __type="AddedToken"),
        "do_lower_case": True,
        "eos_token": dict(eos, __type="AddedToken"),
        "errors": "replace",
        "model_max_length": 77,
        "name_or_path": "openai/clip-vit-large-patch14",
        "pad_token": "<|endoftext|>",
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": dict(eos, __type="AddedToken"),
    }
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"wrote {OUT}: {len(ids)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main(sys.argv[1])
