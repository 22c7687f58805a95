#!/usr/bin/env python3
"""Tokenizer goldens: transformers' CLIPTokenizer (the class diffusers' Stable Diffusion pipelines
load) on a corpus of a few thousand strings, with the built-in vocabulary folder.

    /work/venv/bin/python Tests/References/make_clip_tokenizer_goldens.py

Versions: transformers 5.25.0, tokenizers 0.23.3 (transformers 5 has only the `tokenizers`-backed
CLIPTokenizer; there is no separate slow class any more), Python 3.11.7.
Reads Sources/Text/Resources/clip-vit-large-patch14/ (written by make_clip_vocab.py) and writes
Tests/TextTests/Goldens/:
- clip_tokenizer.jsonl: one JSON object per line, {"text": ..., "ids": [...]}: the ids of
  `tok(text, truncation=True, max_length=77)`. The padded form is these ids followed by the pad
  id up to 77 — checked here for every string, so the file need not repeat the padding.
- sd2_tokenizer/{tokenizer_config,special_tokens_map}.json + clip_tokenizer_sd2.jsonl: the same
  vocabulary with Stable Diffusion 2's pad token "!" (id 0; a plain-string special token, so a
  "!" in the text is split off as that token before normalisation), on a smaller corpus.
- sd2_tokenizer_v5/: that tokenizer as transformers 5 saves it (tokenizer.json + tokenizer_config.json
  only; checked here to give the same ids on every string), tokenizer.json stored as
  tokenizer.template.json with empty vocab and merges (the test fills them in from the built-in folder).
The corpus is seeded: reruns write identical files.
"""
import json, os, random, shutil, unicodedata
from transformers import CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "../../Sources/Text/Resources/clip-vit-large-patch14")
OUT = os.path.join(HERE, "../TextTests/Goldens")

FIXED = [
    "", " ", "   ", "\n", "\t", "a", "A", "a photo of a cat", "A Photo Of A CAT",
    "a photograph of an astronaut riding a horse", "masterpiece, best quality, 1girl, solo",
    "(masterpiece:1.2), (best quality:1.4), [foo|bar], {baz}, <lora:detail:0.8>",
    "(word:1.2)", "((double)) [[square]] {{curly}}", "prompt AND other prompt BREAK next",
    "don't", "DON'T", "it's they're we've I'm you'll he'd", "''s 's '", "'S 'T 'RE 'VE 'M 'LL 'D",
    "rock'n'roll", "o'clock", "y'all", "hello, world!", "hello,world!", "...", "!!!", "?!?!", "a--b", "a — b – c",
    "3.14159", "1,000,000", "2024-01-01", "12:30pm", "v1.5", "sd-v1-5", "x2 2x 4k 8K 1080p", "007", "½ ¾ ² ³ ⅔ Ⅻ",
    "https://example.com/path?query=1&b=2#frag", "user@example.com", "C:\\Users\\name\\file.txt", "#hashtag @mention",
    "line one\nline two", "tab\tseparated\tvalues", "mixed \t\n\r whitespace", "trailing space ", " leading space",
    "multiple     spaces", "\u00a0nbsp\u00a0", "em\u2003space", "ideographic\u3000space", "zero\u200bwidth",
    "line\u2028sep", "next\u0085line", "file\u001cseparator", "vertical\u000btab", "form\u000cfeed",
    "<|startoftext|>", "<|endoftext|>", "<|startoftext|>a cat<|endoftext|>", "<|STARTOFTEXT|> x", "<|ENDOFTEXT|> y",
    "<|Endoftext|>", "x<|endoftext|>!", "a <|endoftext|> b", "<| startoftext|>", "<|startoftext|", "|endoftext|>",
    "<|endoftext|><|endoftext|>", "!<|startoftext|>", "<|startoftext|>!",
    "café", "cafe\u0301", "naïve façade résumé", "Ångström", "\u212bngstr\u00f6m", "\u2126hm", "ﬁnance ﬂower",
    "Straße STRASSE", "İstanbul ıi", "ΣΊΣΥΦΟΣ σίσυφος", "Москва", "日本語のテキスト", "中文 字符", "한국어 텍스트",
    "\u1100\u1161\u11a8", "\uf900\uf901", "العربية", "עברית", "हिन्दी", "ภาษาไทย", "Ελληνικά", "Tiếng Việt",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷🇯🇵", "cat 🐱 dog 🐶", "✨✨✨", "©®™", "→←↑↓", "∑∫√∞",
    "\x00", "a\x00b", "\x7f", "\x01\x02\x03", "\ufffd", "\ufeffbom", "\u0301", "e\u0301\u0301",
    "x" * 300, "ab " * 100, "a, " * 80, "1 2 3 4 5 6 7 8 9 0 " * 10, "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis", "AbCdEfGhIjKlMnOpQrStUvWxYz",
]

WORDS = ("a an the of in on at with by from portrait landscape photo painting digital art highly detailed "
         "sharp focus 8k octane render trending artstation cinematic lighting dramatic golden hour sunset "
         "cyberpunk city neon rain reflections fantasy castle dragon knight armor forest river mountain "
         "beautiful woman man child old young smiling face eyes hair blue red green white black dark light "
         "studio ghibli greg rutkowski alphonse mucha by artist style oil watercolor sketch pencil anime "
         "realistic photorealistic hyperrealistic unreal engine volumetric fog bokeh depth field wide angle "
         "closeup macro shot 35mm film grain vintage retro futuristic spaceship robot cat dog bird flower").split()
PUNCT = [",", ".", "!", "?", ":", ";", "(", ")", "[", "]", "{", "}", "|", "-", "_", "/", "\\", "'", '"', "&", "*",
         "+", "=", "<", ">", "@", "#", "$", "%", "^", "~", "`", "...", "--", "::"]
SPACES = [" ", " ", " ", " ", "  ", "\n", "\t", "\u00a0", "\u3000", ""]


def assigned_chars():
    """Characters Python 3.11's Unicode 14 assigns (not surrogates, not unassigned), by range."""
    ranges = [(0x20, 0x250), (0x370, 0x530), (0x590, 0x700), (0x900, 0xE80), (0x1100, 0x1200), (0x1E00, 0x2200),
              (0x2300, 0x2800), (0x3000, 0x3100), (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xF900, 0xFB50),
              (0xFE00, 0xFF70), (0x1F300, 0x1F650), (0x1F900, 0x1FA00), (0x0, 0x20), (0x300, 0x370)]
    out = []
    for a, b in ranges:
        out.extend(chr(c) for c in range(a, b) if unicodedata.category(chr(c)) not in ("Cn", "Cs"))
    return out


def corpus():
    rng = random.Random(17)
    chars = assigned_chars()
    texts = list(FIXED)
    # Prompts: words, case, punctuation and weights as users write them.
    for _ in range(1100):
        n = rng.randint(1, 30)
        parts = []
        for _ in range(n):
            w = rng.choice(WORDS)
            r = rng.random()
            if r < 0.15: w = w.upper()
            elif r < 0.3: w = w.capitalize()
            elif r < 0.35: w = f"({w}:{rng.uniform(0.1, 2):.{rng.randint(1, 2)}f})"
            elif r < 0.4: w = rng.choice(["(", "[", "{"]) + w + rng.choice([")", "]", "}"])
            elif r < 0.45: w = w + rng.choice(["'s", "'S", "'t", "'ll"])
            parts.append(w)
            if rng.random() < 0.3: parts.append(rng.choice(PUNCT))
            parts.append(rng.choice(SPACES))
        texts.append("".join(parts))
    # Past 77 tokens: truncation keeps BOS, 75 tokens and EOS.
    for _ in range(60):
        texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(70, 120))))
    # Random Unicode: assigned characters of many scripts, symbols, controls, combining marks.
    for _ in range(1200):
        n = rng.randint(1, 30)
        texts.append("".join(rng.choice(chars) if rng.random() < 0.8 else rng.choice(SPACES + PUNCT) for _ in range(n)))
    # Mixed: words with random characters glued on.
    for _ in range(400):
        texts.append("".join(rng.choice(WORDS) + rng.choice(chars) + rng.choice(SPACES) for _ in range(rng.randint(1, 8))))
    # Numbers and identifiers.
    for _ in range(200):
        texts.append(rng.choice(["", "x", "v", "#", "$"]) + str(rng.randint(0, 10 ** rng.randint(1, 12))) +
                     rng.choice(["", ".5", "px", "k", "%", "-b"]))
    return texts


def write(tok, texts, path):
    pad = tok.pad_token_id
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            ids = tok(t, truncation=True, max_length=77).input_ids
            padded = tok(t, padding="max_length", truncation=True, max_length=77).input_ids
            assert padded == ids + [pad] * (77 - len(ids)), t
            f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
    print(f"wrote {path}: {len(texts)} strings, {os.path.getsize(path)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    texts = corpus()
    write(CLIPTokenizer.from_pretrained(VOCAB), texts, os.path.join(OUT, "clip_tokenizer.jsonl"))
    # SD 2's tokenizer folder: the same vocabulary, pad "!" (a plain string, as in the hub folder).
    sd2 = os.path.join(OUT, "sd2_tokenizer")
    os.makedirs(sd2, exist_ok=True)
    for name in ["tokenizer_config.json", "special_tokens_map.json"]:
        with open(os.path.join(VOCAB, name)) as f:
            c = json.load(f)
        c["pad_token"] = "!"
        with open(os.path.join(sd2, name), "w") as f:
            json.dump(c, f, indent=2)
            f.write("\n")
    tmp = "/tmp/clip_sd2_tokenizer"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(sd2, tmp)
    for name in ["vocab.json", "merges.txt"]:
        shutil.copy(os.path.join(VOCAB, name), tmp)
    sd2_texts = FIXED + [t for t in texts[len(FIXED):] if "!" in t][:150] + texts[len(FIXED):len(FIXED) + 60]
    sd2_tok = CLIPTokenizer.from_pretrained(tmp)
    write(sd2_tok, sd2_texts, os.path.join(OUT, "clip_tokenizer_sd2.jsonl"))

    # transformers 5's own folder layout: save_pretrained writes tokenizer.json + tokenizer_config.json
    # only. Same ids on the whole corpus; its tokenizer.json minus vocab and merges (which the
    # test fills in from the built-in folder) is kept as a template.
    v5 = "/tmp/clip_sd2_tokenizer_v5"
    shutil.rmtree(v5, ignore_errors=True)
    sd2_tok.save_pretrained(v5)
    assert sorted(os.listdir(v5)) == ["tokenizer.json", "tokenizer_config.json"], os.listdir(v5)
    reloaded = CLIPTokenizer.from_pretrained(v5)
    for t in sd2_texts + texts:
        assert reloaded(t, padding="max_length", truncation=True, max_length=77).input_ids == \
            sd2_tok(t, padding="max_length", truncation=True, max_length=77).input_ids, t
    with open(os.path.join(v5, "tokenizer.json")) as f:
        template = json.load(f)
    template["model"]["vocab"], template["model"]["merges"] = {}, []
    out_v5 = os.path.join(OUT, "sd2_tokenizer_v5")
    os.makedirs(out_v5, exist_ok=True)
    with open(os.path.join(out_v5, "tokenizer.template.json"), "w") as f:
        json.dump(template, f, indent=2, ensure_ascii=False)
        f.write("\n")
    config = json.load(open(os.path.join(v5, "tokenizer_config.json")))
    for k in ["is_local", "local_files_only"]:  # where this run loaded from, not the tokenizer
        config.pop(k, None)
    with open(os.path.join(out_v5, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
