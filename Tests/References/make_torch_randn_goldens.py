#!/usr/bin/env python3
"""Goldens for TorchGenerator (Sources/Diffusion/TorchRandom.swift).

Pinned: torch 2.15.0 (CPU, x86-64; torch runs its AVX2 normal kernel on AVX2 and AVX-512
machines). Run:  /work/venv/bin/python Tests/References/make_torch_randn_goldens.py

Writes Tests/DiffusionTests/Goldens/torch_randn.json. Values are stored as float32 bit
patterns (uint32), so the Swift test can demand bit equality. Tensors of more than 64
elements keep their first 64 values plus the count, the sequential float64 sum of all values
and the sum of all bit patterns mod 2**64 (which changes if any element changes by one ulp).
"""
import json
import os

import torch

PINNED = "2.15.0"
assert torch.__version__.split("+")[0] == PINNED, f"made with torch {PINNED}, found {torch.__version__}"
# The default kernel (no AVX2) rounds differently; the goldens are for the AVX2 one.
assert torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"), torch.backends.cpu.get_cpu_capability()

SEEDS = [0, 42, 2**32 + 7, 123456789]
SHAPES = [[1], [5], [15], [16], [17], [33], [2, 3, 8, 8], [4, 1, 32, 32]]
SEQUENCES = [[[7], [20]], [[20], [3]], [[5], [5], [5]], [[3], [16], [1]], [[1], [17], [2]]]
KEEP = 64


def record(t):
    flat = t.contiguous().view(-1)
    bits = [b & 0xFFFFFFFF for b in flat.view(torch.int32).tolist()]
    out = {"shape": list(t.shape), "count": len(bits)}
    if len(bits) <= KEEP:
        out["bits"] = bits
    else:
        out["bits"] = bits[:KEEP]
        s = 0.0
        for v in flat.tolist():
            s += v
        out["sum"] = s
        out["bits_sum"] = sum(bits) % 2**64
    return out


def main():
    cases = []
    for seed in SEEDS:
        for shape in SHAPES:
            torch.manual_seed(seed)
            cases.append({"name": f"manual_seed({seed}) randn({shape})", "seed": seed,
                          "draws": [record(torch.randn(shape))]})
    for seed in SEEDS:
        for seq in SEQUENCES:
            g = torch.Generator().manual_seed(seed)
            draws = [record(torch.randn(shape, generator=g)) for shape in seq]
            cases.append({"name": f"Generator().manual_seed({seed}) randn {seq}", "seed": seed,
                          "draws": draws})
            # The global generator must give the same stream.
            torch.manual_seed(seed)
            assert [record(torch.randn(shape)) for shape in seq] == draws
    doc = {"torch": torch.__version__, "cases": cases}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "DiffusionTests", "Goldens",
                        "torch_randn.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(path, os.path.getsize(path), "bytes,", len(cases), "cases")


if __name__ == "__main__":
    main()
