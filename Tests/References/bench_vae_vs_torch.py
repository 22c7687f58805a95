#!/usr/bin/env python3
"""Times diffusers' AutoencoderKL.decode (PyTorch, CPU) next to `diffuse bench model` on the same
VAE config (random weights), same machine and thread count, alternating the two so that both see
the same machine state. Latents are [batch, latent_channels, sample_size / 2^(levels-1), ...]:
64×64 for the Stable Diffusion 1.5 VAE (a 512×512 image).

    /work/venv/bin/python Tests/References/bench_vae_vs_torch.py [CONFIG] [--threads 2] [--rounds 1]

Pinned reference stack: see requirements.txt beside this file. Installs nothing.
Each case runs in a fresh process, so peak RSS (ru_maxrss) is per engine and case.
"""
import argparse, json, os, statistics, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("config", nargs="?", default=os.path.join(os.path.dirname(__file__), "../../../shared/bench/sd15_vae.json"))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=1)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--diffuse", default=os.path.join(os.path.dirname(__file__), "../../.build/release/diffuse"))
args = ap.parse_args()


def torch_case():
    code = f"""
import json, resource, statistics, time, torch
from diffusers import AutoencoderKL
torch.set_num_threads({args.threads})
torch.manual_seed(0)
cfg = json.load(open({args.config!r}))
cfg = {{k: v for k, v in cfg.items() if not k.startswith('_')}}
vae = AutoencoderKL(**cfg).eval()
s = cfg.get('sample_size', 32); s = s if isinstance(s, int) else s[0]
f = 2 ** (len(cfg['block_out_channels']) - 1)
z = torch.randn({args.batch}, cfg.get('latent_channels', 4), s // f, s // f)
def step():
    with torch.inference_mode():
        vae.decode(z)
for _ in range(2): step()
ts = []
for _ in range({args.runs}):
    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
print(json.dumps({{"median_s": statistics.median(ts), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours_case():
    out = subprocess.run([args.diffuse, "bench", "model", args.config, "--batch", str(args.batch),
                          "--threads", str(args.threads), "--runs", str(args.runs), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


results = {"torch": [], "diffuse": []}
for r in range(args.rounds):
    results["torch"].append(torch_case())
    results["diffuse"].append(ours_case())
    print(f"round {r}: torch {results['torch'][-1]}, diffuse {results['diffuse'][-1]}", file=sys.stderr)

t = statistics.median(x["median_s"] for x in results["torch"])
tm = max(x["peak_rss_bytes"] for x in results["torch"])
o = statistics.median(x["median_s"] for x in results["diffuse"])
om = max(x["peak_rss_bytes"] for x in results["diffuse"])
print(f"config {os.path.basename(args.config)}, decode batch {args.batch}, {args.threads} threads, "
      f"{args.rounds} alternating rounds x {args.runs} runs (median)")
print(f"torch {t:7.2f} s ({tm/1e6:6.0f} MB)   diffuse {o:7.2f} s ({om/1e6:6.0f} MB)   ratio {o/t:5.2f}")
