#!/usr/bin/env python3
"""Writes one small PNG per colour type and bit depth into Tests/ImageTests/Formats/.

Pure standard library. Every file is 13×7 and holds a pattern that ImageTests recomputes:
  8-bit sample (x, y, channel c) = (x*37 + y*11 + c*50) & 255
  16-bit files hold the 8-bit value × 257 (so they read back as exactly the 8-bit value)
  1/2/4-bit gray: (x + y) & 1, (x + y) & 3, (x + y*3) & 15
  palette: index (x + y) & 15 (depth 8) or & 3 (depth 2); entry i = (i*16, 255 - i*16, i*7),
  alpha i*17 in the tRNS variant.
Run from the package root:  python3 Tests/References/make-png-formats.py
"""
import os
import shutil
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W, H = 13, 7


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack(samples, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, n = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


def write(path, depth, ctype, sample, channels, plte=None, trns=None):
    raw = b""
    for y in range(H):
        raw += b"\x00" + pack([sample(x, y, c) for x in range(W) for c in range(channels)], depth)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, depth, ctype, 0, 0, 0))
    if plte:
        data += chunk(b"PLTE", plte)
    if trns:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def p8(x, y, c):
    return (x * 37 + y * 11 + c * 50) & 255


def p16(x, y, c):
    return p8(x, y, c) * 257


if __name__ == "__main__":
    d = os.path.join(ROOT, "Tests", "ImageTests", "Formats")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    j = lambda name: os.path.join(d, name)
    write(j("gray1.png"), 1, 0, lambda x, y, c: (x + y) & 1, 1)
    write(j("gray2.png"), 2, 0, lambda x, y, c: (x + y) & 3, 1)
    write(j("gray4.png"), 4, 0, lambda x, y, c: (x + y * 3) & 15, 1)
    write(j("gray8.png"), 8, 0, p8, 1)
    write(j("gray16.png"), 16, 0, p16, 1)
    write(j("gray-alpha8.png"), 8, 4, p8, 2)
    write(j("gray-alpha16.png"), 16, 4, p16, 2)
    write(j("rgb8.png"), 8, 2, p8, 3)
    write(j("rgb16.png"), 16, 2, p16, 3)
    write(j("rgba8.png"), 8, 6, p8, 4)
    write(j("rgba16.png"), 16, 6, p16, 4)
    plte = b"".join(bytes((i * 16, 255 - i * 16, i * 7)) for i in range(16))
    write(j("palette8.png"), 8, 3, lambda x, y, c: (x + y) & 15, 1, plte=plte)
    write(j("palette2.png"), 2, 3, lambda x, y, c: (x + y) & 3, 1, plte=plte[:12])
    write(j("palette8-trns.png"), 8, 3, lambda x, y, c: (x + y) & 15, 1, plte=plte, trns=bytes(i * 17 for i in range(16)))
    print("formats written")
