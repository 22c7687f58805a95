#!/usr/bin/env python3
"""Times diffusers' UNet2DModel (PyTorch, CPU) next to `diffuse bench model` on the same config,
same machine and thread count, alternating the two so that both see the same machine state.

    /work/venv/bin/python Tests/References/bench_unet2d_vs_torch.py [CONFIG] [--threads 2] [--rounds 3]

Pinned reference stack: see requirements.txt beside this file. Installs nothing.
Prints the CPU (model name, family/model), the OpenBLAS core diffuse runs on and why
(`diffuse bench core`), the torch and diffusers versions, then one line per (engine, mode, batch)
with the median over rounds and the ratio ours/torch.
"""
import argparse, json, os, resource, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("config", nargs="?", default=os.path.join(os.path.dirname(__file__), "../../../shared/bench/fmnist_unet2d.json"))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--diffuse", default=os.path.join(os.path.dirname(__file__), "../../.build/release/diffuse"))
ap.add_argument("--torch-only", action="store_true")
args = ap.parse_args()

CASES = [("forward", 1), ("forward", 64), ("train", 64)]


def torch_case(mode, batch):
    """Runs one case in a fresh process so peak RSS is per case."""
    code = f"""
import json, resource, statistics, time, torch
from diffusers import UNet2DModel
torch.set_num_threads({args.threads})
torch.manual_seed(0)
cfg = json.load(open({args.config!r}))
cfg = {{k: v for k, v in cfg.items() if not k.startswith('_')}}
m = UNet2DModel(**cfg)
s = cfg.get('sample_size', 32); s = s if isinstance(s, int) else s[0]
x = torch.randn({batch}, cfg['in_channels'], s, s)
t = torch.randint(0, 1000, ({batch},))
y = torch.randint(0, cfg.get('num_class_embeds') or 1, ({batch},)) if cfg.get('num_class_embeds') else None
def step():
    if {mode!r} == 'forward':
        with torch.inference_mode():
            m(x, t, class_labels=y)
    else:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(m(x, t, class_labels=y).sample, target)
        loss.backward(); opt.step()
if {mode!r} == 'train':
    m.train(); opt = torch.optim.AdamW(m.parameters(), lr=1e-4); target = torch.randn_like(x)
else:
    m.eval()
for _ in range(2): step()
ts = []
for _ in range({args.runs}):
    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
print(json.dumps({{"median_s": statistics.median(ts), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours_case(mode, batch):
    out = subprocess.run([args.diffuse, "bench", "model", args.config, "--batch", str(batch), "--mode", mode,
                          "--threads", str(args.threads), "--runs", str(args.runs), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def cpu_description():
    fields = {}
    try:
        for line in open("/proc/cpuinfo"):
            k, _, v = line.partition(":")
            fields.setdefault(k.strip(), v.strip())
    except OSError:
        return "unknown CPU"
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')})"


def versions():
    code = "import torch, diffusers; print(torch.__version__, diffusers.__version__)"
    torch_v, diffusers_v = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return torch_v, diffusers_v


results = {}
for r in range(args.rounds):
    for mode, batch in CASES:
        results.setdefault(("torch", mode, batch), []).append(torch_case(mode, batch))
        if not args.torch_only:
            results.setdefault(("diffuse", mode, batch), []).append(ours_case(mode, batch))

torch_v, diffusers_v = versions()
print(f"CPU {cpu_description()}")
core = subprocess.run([args.diffuse, "bench", "core"], capture_output=True, text=True).stdout.strip() or "?"
print(f"diffuse: {core}")
print(f"torch {torch_v} (threads {args.threads}), diffusers {diffusers_v}")
print(f"config {os.path.basename(args.config)}, {args.threads} threads, {args.rounds} alternating rounds x {args.runs} runs (median)")
for mode, batch in CASES:
    t = statistics.median(x["median_s"] for x in results[("torch", mode, batch)])
    tm = max(x["peak_rss_bytes"] for x in results[("torch", mode, batch)])
    line = f"{mode:8s} batch {batch:3d}: torch {t*1000:8.1f} ms ({tm/1e6:6.0f} MB)"
    if not args.torch_only:
        o = statistics.median(x["median_s"] for x in results[("diffuse", mode, batch)])
        om = max(x["peak_rss_bytes"] for x in results[("diffuse", mode, batch)])
        line += f"   diffuse {o*1000:8.1f} ms ({om/1e6:6.0f} MB)   ratio {o/t:5.2f}"
    print(line)
