#!/usr/bin/env bash
# Records what the bundled models generate (fixed seeds, 1 thread, a few steps, OpenBLAS's
# Haswell kernel pinned so the bits do not depend on which core OpenBLAS would pick) into
# Tests/CLITests/Recorded/. BundledOutputTests makes the same calls and compares bit for bit:
# a refactor of the pipelines must not change a single float. Inputs (a PNG, a mask, a WAV, an
# MP4) are made once by this script and committed beside the recordings.
#
#   Tests/References/record_bundled_outputs.sh [path/to/diffuse]
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${1:-.build/release/diffuse}
R=Tests/CLITests/Recorded
mkdir -p "$R"
export OPENBLAS_CORETYPE=Haswell DIFFUSE_THREADS=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Inputs (committed; made only when missing).
[ -f "$R/in-image.png" ] || $D generate image --class sneaker --count 1 --steps 8 --seed 100 --out "$tmp/img" \
  && { [ -f "$R/in-image.png" ] || cp "$tmp"/img/0000-sneaker.png "$R/in-image.png"; }
[ -f "$R/in-mask.png" ] || python3 - "$R/in-mask.png" <<'PY'
import struct, sys, zlib
w = h = 32
rows = b"".join(b"\x00" + bytes(255 if 8 <= x < 24 and 12 <= y < 28 else 0 for x in range(w)) for y in range(h))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
PY
[ -f "$R/in-note.wav" ] || python3 - "$R/in-note.wav" <<'PY'
import math, struct, sys, wave
rate, n = 16000, 16384
with wave.open(sys.argv[1], "wb") as f:
    f.setnchannels(1); f.setsampwidth(2); f.setframerate(rate)
    f.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * 261.63 * i / rate) * math.exp(-3 * i / n))) for i in range(n)))
PY
[ -f "$R/in-clip.mp4" ] || $D generate video --class bag --count 1 --frames 16 --steps 6 --seed 100 --out "$R/in-clip.mp4" >/dev/null

run() { local name=$1; shift; $D "$@" --threads 1 --raw "$R/$name.safetensors" >/dev/null; echo "$name"; }
run image-classes   generate image --class sneaker,bag,0 --count 3 --steps 4 --seed 11 --out "$tmp/a"
run image-guided    generate image --class trouser --count 2 --steps 3 --seed 12 --guidance 3 --guidance-rescale 0.5 --sampler euler-a --out "$tmp/b"
run image-init      generate image --init "$R/in-image.png" --strength 0.5 --class sneaker --count 2 --steps 6 --seed 13 --sampler ddim --out "$tmp/c"
run image-mask      generate image --init "$R/in-image.png" --mask "$R/in-mask.png" --class bag --count 1 --steps 4 --seed 14 --out "$tmp/d"
run audio-classes   generate audio --class 60,67 --steps 3 --seed 21 --out "$tmp/e.wav"
run audio-init      generate audio --init "$R/in-note.wav" --strength 0.4 --class 60 --count 1 --steps 5 --seed 22 --out "$tmp/f.wav"
run audio-gap       generate audio --init "$R/in-note.wav" --mask-from 0.3 --mask-to 0.6 --class 60 --count 1 --steps 3 --seed 23 --out "$tmp/g.wav"
run video-classes   generate video --class bag,sneaker --count 2 --frames 4 --steps 3 --seed 31 --out "$tmp/h.mp4"
run video-continue  generate video --init "$R/in-clip.mp4" --keep-frames 0-3 --class bag --count 1 --frames 8 --steps 3 --seed 32 --out "$tmp/i.mp4"
