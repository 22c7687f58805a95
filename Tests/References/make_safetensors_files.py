#!/usr/bin/env python3
"""safetensors format goldens for diffuse.

    /work/venv/bin/python Tests/References/make_safetensors_files.py

(a) Tests/NNTests/Goldens/pyfiles/{f32,f16,bf16}.safetensors written by the Python `safetensors`
    library (safetensors.torch.save_file), plus pyfiles/expected.json: for each file its
    __metadata__ and, per tensor, name, dtype, shape and the values (row-major, flattened)
    converted to float exactly (f16/bf16 -> f32 -> Python float is exact). All values finite.
(b) Tests/NNTests/Corrupt/*.safetensors: hand-built malformed files, each described in
    Corrupt/README.md (one line each) and Corrupt/manifest.json, which also records whether the
    reference Rust implementation (via safetensors.safe_open) rejects the file, and its message.
"""
import json, os, struct
import torch
from safetensors import safe_open
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, "../NNTests/Goldens/pyfiles")
BAD = os.path.join(HERE, "../NNTests/Corrupt")


def py_files():
    os.makedirs(PY, exist_ok=True)
    torch.manual_seed(7)
    base = {
        "scalar": torch.tensor(3.25),                                   # shape []
        "vec": torch.tensor([0.0, -0.0, 1.0, -2.5, 0.1, 1e-3, 65504.0, 2.0 ** -24, 6.0e-5, 1.0 / 3.0]),
        "empty": torch.zeros(0, 3),                                     # shape [0, 3], zero bytes
        "mat": torch.randn(3, 4),
        "cube": torch.randn(2, 3, 2),
        "rank4": torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4) / 8 - 1,
    }
    expected = {}
    for fname, dt, dname in [("f32", torch.float32, "F32"), ("f16", torch.float16, "F16"),
                             ("bf16", torch.bfloat16, "BF16")]:
        t = {k: v.to(dt).contiguous() for k, v in base.items()}
        if dt == torch.bfloat16:
            t["big"] = torch.tensor([3.0e38, -1.0e-38, 1.0e-40], dtype=dt)   # bf16 range, incl. subnormal
        if dt == torch.float32:
            t["big"] = torch.tensor([3.0e38, -1.0e-38, 1.0e-44], dtype=dt)   # incl. f32 subnormal
        if dt == torch.float16:
            t["big"] = torch.tensor([-65504.0, 2.0 ** -14, 2.0 ** -24 * 3], dtype=dt)  # f16 max/min normal/subnormal
        meta = {"format": "pt", "writer": "safetensors.torch.save_file", "note": f"{dname} golden"}
        path = os.path.join(PY, fname + ".safetensors")
        save_file(t, path, metadata=meta)
        # read back through the library to be sure what's in the file
        with safe_open(path, "pt") as h:
            tensors = []
            for k in sorted(h.keys()):
                v = h.get_tensor(k)
                assert v.dtype == dt and torch.equal(v, t[k])
                vals = v.to(torch.float32).flatten().tolist()
                tensors.append({"name": k, "dtype": dname, "shape": list(v.shape), "values": vals})
            expected[fname + ".safetensors"] = {"metadata": h.metadata(), "tensors": tensors}
        print(f"pyfiles/{fname}.safetensors {os.path.getsize(path)} B")
    with open(os.path.join(PY, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, allow_nan=False)
        f.write("\n")


def st(header, data=b"", header_len=None):
    """header: bytes or JSON-able object; returns 8-byte LE length + header + data."""
    hb = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    n = len(hb) if header_len is None else header_len
    return struct.pack("<Q", n) + hb + data


F32x6 = struct.pack("<6f", *[1, 2, 3, 4, 5, 6])  # 24 bytes


def valid_bytes():
    return st({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}},
              F32x6 + struct.pack("<2f", 7, 8))


def corrupt_files():
    os.makedirs(BAD, exist_ok=True)
    for f in os.listdir(BAD):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(BAD, f))
    one = lambda **kw: {"w": dict({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, **kw)}
    cases = [
        ("01_empty", b"", "empty file (0 bytes)"),
        ("02_short", b"\x10\x00\x00\x00\x00", "file shorter than 8 bytes (5 bytes, no complete header length)"),
        ("03_header_len_gt_file", st(one(), F32x6, header_len=4096),
         "header length (4096) larger than the whole file"),
        ("04_header_len_absurd", st(one(), F32x6, header_len=200_000_000),
         "header length 200,000,000 (> 100 MB limit), file is tiny"),
        ("05_header_len_u64_max", st(one(), F32x6, header_len=0xFFFFFFFFFFFFFFFF),
         "header length 0xFFFFFFFFFFFFFFFF (overflows when added to 8)"),
        ("06_header_len_zero", st(b"", F32x6), "header length 0 (empty header, not a JSON object)"),
        ("07_header_not_json", st(b"this is not json at all!", F32x6), "header bytes are not JSON"),
        ("08_header_json_array", st([1, 2, 3], F32x6), "header is valid JSON but an array, not an object"),
        ("09_header_json_string", st("hello", F32x6), "header is valid JSON but a string, not an object"),
        ("10_unknown_dtype", st(one(dtype="F8_XYZ"), F32x6), 'unknown dtype "F8_XYZ"'),
        ("11_dtype_not_string", st(one(dtype=7), F32x6), "dtype is a number, not a string"),
        ("12_shape_size_mismatch", st(one(shape=[2, 2]), F32x6),
         "shape [2,2] x F32 = 16 bytes but data_offsets span 24 bytes"),
        ("13_offsets_past_eof", st(one(data_offsets=[0, 48], shape=[4, 3]), F32x6),
         "data_offsets [0,48] end past end of file (data section is 24 bytes)"),
        ("14_overlapping_offsets",
         st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
             "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, F32x6),
         "tensors a [0,16] and b [8,24] overlap"),
        ("15_begin_gt_end", st(one(data_offsets=[24, 0]), F32x6), "data_offsets begin (24) > end (0)"),
        ("16_negative_shape", st(one(shape=[-1, 3], data_offsets=[0, 24]), F32x6), "shape has a negative entry [-1,3]"),
        ("17_non_integer_shape", st(one(shape=[2.5, 2]), F32x6), "shape has a non-integer entry [2.5,2]"),
        ("18_shape_not_array", st(one(shape="2x3"), F32x6), 'shape is a string "2x3", not an array'),
        ("19_missing_data_offsets", st({"w": {"dtype": "F32", "shape": [2, 3]}}, F32x6), "tensor entry has no data_offsets"),
        ("20_missing_dtype", st({"w": {"shape": [2, 3], "data_offsets": [0, 24]}}, F32x6), "tensor entry has no dtype"),
        ("21_missing_shape", st({"w": {"dtype": "F32", "data_offsets": [0, 24]}}, F32x6), "tensor entry has no shape"),
        ("22_offsets_wrong_arity", st(one(data_offsets=[0, 12, 24]), F32x6), "data_offsets has 3 entries instead of 2"),
        ("23_negative_offset", st(one(data_offsets=[-8, 16]), F32x6), "data_offsets begin is negative"),
        ("24_truncated_data", valid_bytes()[:-5],
         "valid 2-tensor file (32 data bytes) with its last 5 bytes cut off: last tensor runs past EOF"),
        ("25_duplicate_keys",
         st(b'{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},'
            b'"w":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', F32x6),
         'header JSON names tensor "w" twice'),
        ("26_non_utf8_header",
         st(b'{"w\xff\xfe":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', F32x6),
         "header contains invalid UTF-8 bytes (0xFF 0xFE) inside a key"),
        ("27_hole_in_data",
         st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}, F32x6),
         "data_offsets leave an unused gap (bytes 8..16) between tensors"),
        ("28_trailing_bytes", st(one(), F32x6 + b"\x00" * 8), "8 extra bytes after the last tensor's end"),
        ("29_metadata_not_strings", st(dict(one(), __metadata__={"n": 1}), F32x6),
         "__metadata__ value is a number, not a string"),
        ("30_header_truncated_json", st(b'{"w":{"dtype":"F32","shape":[2,3],"data_of', F32x6),
         "header JSON cut off mid-object (header length matches the cut bytes)"),
        ("31_shape_overflow", st(one(shape=[2**62, 2**62]), F32x6),
         "shape [2^62, 2^62]: element count overflows 64-bit"),
    ]
    manifest, lines = [], []
    for name, data, what in cases:
        fn = name + ".safetensors"
        path = os.path.join(BAD, fn)
        with open(path, "wb") as f:
            f.write(data)
        try:
            with safe_open(path, "pt") as h:
                for k in h.keys():
                    h.get_tensor(k)
            rejects, msg = False, "opened and read all tensors without error"
        except Exception as e:  # noqa: BLE001
            rejects, msg = True, f"{type(e).__name__}: {e}"
        manifest.append({"file": fn, "what": what, "bytes": len(data),
                         "reference_rejects": rejects, "reference_message": msg[:300]})
        lines.append(f"- `{fn}` ({len(data)} B): {what}." + ("" if rejects else
                     " NOTE: the reference Python/Rust safetensors accepts this file."))
        print(f"{fn:36s} {len(data):5d} B  rejects={rejects}  {msg[:90]}")
    with open(os.path.join(BAD, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    with open(os.path.join(BAD, "README.md"), "w") as f:
        f.write("# Malformed safetensors corpus\n\n"
                "Generated by `Tests/References/make_safetensors_files.py`. A correct loader must reject every\n"
                "file here with an error (never crash, hang, or allocate the claimed size). Layout of a valid\n"
                "file: u64 little-endian header length N, N bytes of UTF-8 JSON object header, data section.\n"
                "`manifest.json` records, per file, whether safetensors' reference implementation rejects it\n"
                "(safe_open + get_tensor) and its error message.\n\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    py_files()
    corrupt_files()
