#!/usr/bin/env python3
"""Checks that model folders travel both ways between diffusers and diffuse.

1. diffusers → diffuse: a random class-conditional UNet2DModel saved by `save_pretrained`
   (config.json + diffusion_pytorch_model.safetensors) is run by `diffuse forward`.
2. diffuse → diffusers: a pipeline folder written by `diffuse train image` (2 steps) — and any
   folders given on the command line, e.g. samples/image — is loaded by diffusers'
   `DDPMPipeline.from_pretrained` / `UNet2DModel.from_pretrained` and run on the same input.
In both, diffusers' output and ours must agree within 1e-4 max abs. Exits 1 on a mismatch.
3. Distilled students (folders with distillation.json: a tiny one made here by `diffuse distill`
   both ways, and any given): diffusers loads the unet and the folder's scheduler (LCMScheduler /
   DDIMScheduler) and samples them in its own loop — DDPMPipeline's, with class labels and no
   guidance (the student has it baked in) — from `torch.Generator().manual_seed(seed)`; we run
   `diffuse generate image --rng torch` with the same seed: same images (final samples within 1e-4).

    /work/venv/bin/python Tests/References/check_diffusers_interop.py [--diffuse .build/release/diffuse] [FOLDER ...]
    /work/venv/bin/python Tests/References/check_diffusers_interop.py samples/image samples/image-fast

Pinned stack: Tests/References/requirements.txt. Not part of `make test` (needs Python).
"""
import argparse, json, os, subprocess, sys, tempfile
import torch
from diffusers import UNet2DModel, DDPMPipeline, DDPMScheduler, LCMScheduler, DDIMScheduler, TCDScheduler
from safetensors.torch import save_file, load_file

torch.set_num_threads(1)
TOL = 1e-4


def compare(folder, unet, diffuse, tmp, tag):
    cfg = unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    g = torch.Generator().manual_seed(0)
    n = 3
    x = torch.randn((n, cfg.in_channels, size, size), generator=g)
    t = torch.tensor([0, 421, 999], dtype=torch.int64)
    inputs = {"sample": x, "timestep": t}
    kwargs = {}
    if cfg.num_class_embeds:
        labels = torch.arange(n, dtype=torch.int64) % cfg.num_class_embeds
        inputs["class_labels"] = labels
        kwargs["class_labels"] = labels
    with torch.no_grad():
        want = unet.float()(x, t, **kwargs).sample
    inp, out = os.path.join(tmp, f"{tag}-in.safetensors"), os.path.join(tmp, f"{tag}-out.safetensors")
    save_file(inputs, inp)
    subprocess.run([diffuse, "forward", folder, "--input", inp, "--output", out], check=True)
    got = load_file(out)["sample"]
    err = (got - want).abs().max().item()
    ok = err <= TOL * max(1.0, want.abs().max().item())
    print(f"{'ok ' if ok else 'BAD'} {tag}: {folder}: max abs error {err:.3g} (output max {want.abs().max().item():.3g})")
    return ok


STUDENT_SCHEDULERS = {"LCMScheduler": LCMScheduler, "DDIMScheduler": DDIMScheduler, "TCDScheduler": TCDScheduler}


def sample_student(folder, diffuse, tmp, steps, classes, seed):
    """Samples the student in diffusers' loop and with `diffuse generate --rng torch`; True when they agree."""
    with open(os.path.join(folder, "scheduler", "scheduler_config.json")) as f:
        cls = json.load(f)["_class_name"]
    sched = STUDENT_SCHEDULERS[cls].from_pretrained(folder, subfolder="scheduler")
    unet = UNet2DModel.from_pretrained(folder, subfolder="unet").float()
    cfg = unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    n = len(classes)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, cfg.in_channels, size, size), generator=g) * sched.init_noise_sigma
    labels = torch.tensor(classes, dtype=torch.int64) if cfg.num_class_embeds else None
    sched.set_timesteps(steps)
    with torch.no_grad():
        for t in sched.timesteps:
            out = unet(sched.scale_model_input(x, t), t, class_labels=labels).sample
            x = sched.step(out, t, x, generator=g).prev_sample
    raw = os.path.join(tmp, "student-raw.safetensors")
    args = [diffuse, "generate", "image", "--model", folder, "--count", str(n), "--steps", str(steps), "--seed", str(seed),
            "--rng", "torch", "--raw", raw, "--out", os.path.join(tmp, "student-out")]
    if labels is not None:
        args += ["--class", ",".join(str(c) for c in classes)]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    got = load_file(raw)["sample"]
    err = (got - x).abs().max().item()
    # The last step predicts x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar): a float32 difference in
    # eps reaches the image multiplied by sqrt((1 - abar) / abar) at that step's timestep (157 at
    # t = 999 of the linear schedule, one step; about 1 from 4 steps on), so the tolerance is too.
    abar = sched.alphas_cumprod[int(sched.timesteps[-1])].item()
    amplification = max(1.0, ((1 - abar) / abar) ** 0.5)
    ok = err <= TOL * amplification * max(1.0, x.abs().max().item())
    print(f"{'ok ' if ok else 'BAD'} student: {folder}: {cls} {steps} steps, classes {classes}, seed {seed}: "
          f"max abs difference {err:.3g} (max {x.abs().max().item():.3g}; eps differences amplified up to {amplification:.3g}x by the last step)")
    return ok


def tiny_students(diffuse, tmp, teacher):
    """A two-stage student of `teacher` made each way (a few steps each: the check is of the folder, not its quality)."""
    folders = []
    for method in ("consistency", "progressive"):
        run = os.path.join(tmp, f"student-{method}")
        subprocess.run([diffuse, "distill", "image", "--teacher", teacher, "--data", "builtin:fashion-mnist", "--out", run,
                        "--method", method, "--guidance-steps", "2", "--steps", "2", "--batch", "2", "--preview-every", "0"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        folders.append(os.path.join(run, "model"))
    return folders


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--diffuse", default=".build/release/diffuse")
    ap.add_argument("folders", nargs="*", help="pipeline or model folders written by diffuse")
    a = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        # 1. diffusers saves, we load.
        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                           layers_per_block=1, norm_num_groups=8, attention_head_dim=8, num_class_embeds=5)
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(torch.randn_like(p) * 0.05)  # zero-initialised layers would hide bugs
        folder = os.path.join(tmp, "from-diffusers")
        unet.save_pretrained(folder)
        ok &= compare(folder, unet, a.diffuse, tmp, "diffusers-saved")
        # 2. we save, diffusers loads.
        run = os.path.join(tmp, "run")
        subprocess.run([a.diffuse, "train", "image", "--data", "builtin:fashion-mnist", "--out", run,
                        "--steps", "2", "--batch", "2"], check=True, stdout=subprocess.DEVNULL)
        students = tiny_students(a.diffuse, tmp, os.path.join(run, "model"))
        students += [f for f in a.folders if os.path.exists(os.path.join(f, "distillation.json"))]
        for folder in [os.path.join(run, "model")] + [f for f in a.folders if f not in students]:
            pipe = DDPMPipeline.from_pretrained(folder)
            assert isinstance(pipe.scheduler, DDPMScheduler), type(pipe.scheduler)
            ok &= compare(folder, pipe.unet, a.diffuse, tmp, "diffuse-saved")
        # 3. students: the same images from the same seed.
        for folder in students:
            with open(os.path.join(folder, "distillation.json")) as f:
                default_steps = json.load(f)["steps"]
            for steps, seed in sorted({(1, 3), (2, 5), (default_steps, 7)}):
                ok &= sample_student(folder, a.diffuse, tmp, steps, [0, 3, 7, 9], seed)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
