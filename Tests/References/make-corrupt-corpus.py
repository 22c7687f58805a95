#!/usr/bin/env python3
"""Writes the corrupted-media corpus the codec tests feed to the readers.

Every file must make the reader throw a MediaError (never crash, never succeed). Output:
  Tests/ImageTests/Corrupt/*.png   Tests/AudioTests/Corrupt/*   Tests/VideoTests/Corrupt/*
Needs only Python 3's standard library, plus the `ffmpeg` command for the valid base files
that some entries are cut from. Deterministic: a fixed seed, bit-exact ffmpeg flags.
Run from the package root:  python3 Tests/References/make-corrupt-corpus.py
"""
import os
import random
import shutil
import struct
import subprocess
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
rng = random.Random(4)


def out_dir(name):
    d = os.path.join(ROOT, "Tests", name, "Corrupt")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def put(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- PNG
def chunk(kind, data, crc=None):
    c = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", c & 0xFFFFFFFF)


SIG = b"\x89PNG\r\n\x1a\n"


def ihdr(w, h, depth=8, ctype=2):
    return chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))


def raw_rows(w, h, bpp):
    return b"".join(b"\x00" + bytes((x * 31 + y * 17) & 255 for x in range(w * bpp)) for y in range(h))


def png(w=8, h=8, depth=8, ctype=2, idat=None, plte=None):
    body = ihdr(w, h, depth, ctype)
    if plte is not None:
        body += chunk(b"PLTE", plte)
    body += chunk(b"IDAT", zlib.compress(raw_rows(w, h, 3)) if idat is None else idat)
    return SIG + body + chunk(b"IEND", b"")


def make_png():
    d = out_dir("ImageTests")
    good = png()
    put(d, "empty.png", b"")
    put(d, "wrong-magic.png", b"\xff\xd8\xff\xe0" + good[4:])
    put(d, "signature-only.png", SIG)
    put(d, "truncated-idat.png", good[: len(SIG) + 25 + 30])
    ih = ihdr(8, 8)
    put(d, "bad-ihdr-crc.png", SIG + ih[:-4] + b"\x00\x00\x00\x00" + good[len(SIG) + len(ih):])
    put(d, "zero-width.png", SIG + ihdr(0, 8) + good[len(SIG) + 25:])
    put(d, "huge-dimensions.png", SIG + ihdr(100000, 100000) + good[len(SIG) + 25:])
    put(d, "width-over-2-31.png", SIG + ihdr(0x80000001, 8) + good[len(SIG) + 25:])
    put(d, "bad-bit-depth.png", SIG + ihdr(8, 8, depth=3) + good[len(SIG) + 25:])
    put(d, "bad-color-type.png", SIG + ihdr(8, 8, ctype=5) + good[len(SIG) + 25:])
    put(d, "garbage-zlib.png", png(idat=bytes(rng.randrange(256) for _ in range(200))))
    put(d, "short-idat.png", png(idat=zlib.compress(raw_rows(8, 3, 3))))
    put(d, "palette-without-plte.png", png(ctype=3, idat=zlib.compress(b"".join(b"\x00" + bytes(8) for _ in range(8)))))
    put(d, "header-only.png", SIG + ihdr(8, 8))
    put(d, "random-bytes.png", bytes(rng.randrange(256) for _ in range(512)))


# ---------------------------------------------------------------- audio
def wav(channels=1, rate=8000, bits=16, fmt=1, frames=64, riff_size=None, data_size=None):
    block = channels * bits // 8
    data = bytes((i * 7) & 255 for i in range(frames * max(block, 1)))
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def ffmpeg(args, path):
    subprocess.run(["ffmpeg", "-v", "error", "-y"] + args + ["-fflags", "+bitexact", "-flags", "+bitexact", path],
                   check=True)
    with open(path, "rb") as f:
        return f.read()


def make_audio(tmp):
    d = out_dir("AudioTests")
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=0.5"]
    flac = ffmpeg(tone, os.path.join(tmp, "a.flac"))
    ogg = ffmpeg(tone + ["-c:a", "libvorbis"], os.path.join(tmp, "a.ogg"))
    aiff = ffmpeg(tone, os.path.join(tmp, "a.aiff"))
    put(d, "empty.wav", b"")
    put(d, "random-bytes.wav", bytes(rng.randrange(256) for _ in range(600)))
    put(d, "riff-only.wav", b"RIFF" + struct.pack("<I", 4) + b"WAVE")
    put(d, "zero-channels.wav", wav(channels=0))
    put(d, "zero-sample-rate.wav", wav(rate=0))
    put(d, "absurd-sample-rate.wav", wav(rate=50_000_000))
    put(d, "too-many-channels.wav", wav(channels=1000, frames=1))
    put(d, "unknown-format-tag.wav", wav(fmt=0x1234))
    put(d, "zero-bits.wav", wav(bits=0))
    put(d, "truncated-data.wav", wav(frames=64)[:44 + 40])
    put(d, "truncated.flac", flac[:len(flac) // 3])
    put(d, "bad-magic.flac", b"fLaX" + flac[4:])
    put(d, "truncated.ogg", ogg[:90])
    put(d, "truncated.aiff", aiff[:len(aiff) // 2])
    put(d, "text.wav", b"This is not a sound file, just some text.\n" * 4)
    # IEEE float WAV (format 3) whose samples are NaN and infinity.
    put(d, "nan-samples.wav", wav(fmt=3, bits=32, frames=4)[:-16] + struct.pack("<4f", float("nan"), 0.5, float("inf"), 0))


# ---------------------------------------------------------------- video
def y4m(w, h, frame_bytes):
    return b"YUV4MPEG2 W%d H%d F25:1 Ip A1:1 C420jpeg\n" % (w, h) + b"FRAME\n" + frame_bytes


def gif_header(w, h):
    # GIF89a, logical screen w×h, no global table; one image descriptor of the same size, no data.
    return b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)


def make_video(tmp):
    d = out_dir("VideoTests")
    src = ["-f", "lavfi", "-i", "testsrc=size=32x32:rate=10:duration=1", "-pix_fmt", "yuv420p"]
    mp4_end = ffmpeg(src + ["-c:v", "mpeg4"], os.path.join(tmp, "end.mp4"))            # moov at the end
    mp4_front = ffmpeg(src + ["-c:v", "mpeg4", "-movflags", "+faststart"], os.path.join(tmp, "front.mp4"))
    gif = ffmpeg(src[:4] + [], os.path.join(tmp, "a.gif"))
    avi = ffmpeg(src + ["-c:v", "mpeg4"], os.path.join(tmp, "a.avi"))
    wavdata = wav(rate=8000, frames=4000)
    put(d, "empty.mp4", b"")
    put(d, "random-bytes.mp4", bytes(rng.randrange(256) for _ in range(2048)))
    put(d, "text.mp4", b"Not a video, only text.\n" * 10)
    put(d, "ftyp-only.mp4", mp4_front[:32])
    put(d, "moov-missing.mp4", mp4_end[:len(mp4_end) // 2])
    i = mp4_front.find(b"moov")
    size = struct.unpack(">I", mp4_front[i - 4:i])[0]
    put(d, "zeroed-moov.mp4", mp4_front[:i + 4] + bytes(size - 8) + mp4_front[i - 4 + size:])
    put(d, "huge-dimensions.y4m", y4m(100000, 100000, bytes(64)))
    put(d, "zero-dimensions.y4m", y4m(0, 0, bytes(64)))
    put(d, "truncated-frame.y4m", y4m(32, 32, bytes(100)))
    put(d, "audio-only.mp4", wavdata)
    put(d, "truncated.gif", gif[:40])
    put(d, "huge.gif", gif_header(65535, 65535))
    put(d, "truncated.avi", avi[:600])
    h264 = ffmpeg(src + ["-c:v", "libx264", "-movflags", "+faststart"], os.path.join(tmp, "h264.mp4"))
    put(d, "truncated-mdat.mp4", h264[:len(h264) * 2 // 3])
    webm = ffmpeg(src + ["-c:v", "libvpx", "-b:v", "200k"], os.path.join(tmp, "a.webm"))
    put(d, "truncated.webm", webm[:300])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        make_png()
        make_audio(tmp)
        make_video(tmp)
    print("corpus written")
