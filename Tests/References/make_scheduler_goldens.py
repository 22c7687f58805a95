#!/usr/bin/env python3
"""Golden trajectories of diffusers' schedulers for Tests/DiffusionTests (SchedulerGoldenTests).

Pinned reference: diffusers 0.42.1, torch 2.15.0 (CPU), numpy 2.4.6, scipy 1.17.1 (LMS), Python 3.11.
Run:  /work/venv/bin/python Tests/References/make_scheduler_goldens.py [FILE ...]
(no arguments: every file; else only the named ones, e.g. `LCMScheduler TCDScheduler conversions`).
Writes Tests/DiffusionTests/Goldens/<SchedulerClass>.json, schedules.json, conversions.json
(`B.from_config(A.config)` for files of class A: what carries over when a user switches sampler)
and guidance_embedding.json (LCM pipelines' `get_guidance_scale_embedding`).

Each case builds a scheduler with some config overrides, SAVES its config and reloads it
(`from_pretrained(dir)`), as users load a pipeline's scheduler_config.json, then runs the
usual pipeline loop on a fixed analytic "model"

    model(x, t) = x * float32(0.3 cos(t / 1000)) + float32(0.1) * sin(x)

from fixed starting noise (torch.Generator seed 0, shape [2, 3, 4], times init_noise_sigma).
Every noise tensor a scheduler draws (through diffusers.utils.torch_utils.randn_tensor) is
recorded so the Swift samplers can replay it. Recorded per step: timestep, model input
(after scale_model_input), x after the step. Numbers are float32 values printed with 9
significant digits (enough to round-trip float32).

Image-to-image cases start from a fixed clean sample noised with `scheduler.add_noise` at the
first timestep they run, in either of diffusers' two ways: `set_timesteps(n, strength=s)`
(LCM/TCD only: the LCM img2img pipeline restricts the schedule itself and runs all n steps) or
`set_begin_index(k)` (StableDiffusionImg2ImgPipeline: the last n − k steps of the full schedule).
"""
import inspect
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch
import diffusers
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler, LCMScheduler, LMSDiscreteScheduler, PNDMScheduler,
                       TCDScheduler, UniPCMultistepScheduler)
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img import (
    LatentConsistencyModelPipeline)

assert diffusers.__version__ == "0.42.1", diffusers.__version__
assert torch.__version__.startswith("2.15"), torch.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "DiffusionTests", "Goldens")
SHAPE = (2, 3, 4)
SCALED = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
COS = {"beta_schedule": "squaredcos_cap_v2"}
SIGMOID = {"beta_schedule": "sigmoid"}
LINEAR = {}
SCHEDS = {"linear": LINEAR, "scaled": SCALED, "cos": COS}
PREDS = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
ZSNR = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "prediction_type": "v_prediction"}


def flat(t):
    return [float("%.9g" % v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def model(x, t):
    c = 0.3 * math.cos(float(t) / 1000.0)
    return x * c + 0.1 * torch.sin(x)


class Recorder:
    """Wraps randn_tensor in a scheduler module and keeps every tensor it returns."""

    def __init__(self, module):
        self.module, self.orig, self.draws = module, getattr(module, "randn_tensor", None), []

    def __enter__(self):
        if self.orig is None:  # this scheduler never draws noise
            return self
        def rec(*a, **k):
            t = self.orig(*a, **k)
            self.draws.append(flat(t))
            return t
        self.module.randn_tensor = rec
        return self

    def __exit__(self, *exc):
        if self.orig is not None:
            self.module.randn_tensor = self.orig


def run(cls, name, overrides, steps, step_kwargs=None, set_kwargs=None, begin=None):
    sched = cls(**overrides)
    with tempfile.TemporaryDirectory() as d:
        sched.save_config(d)
        with open(os.path.join(d, "scheduler_config.json")) as f:
            config_text = f.read()
        sched = cls.from_pretrained(d)
    sched.set_timesteps(steps, **(set_kwargs or {}))
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
    img2img = set_kwargs is not None or begin is not None
    if img2img:
        init = torch.linspace(-1.5, 1.5, math.prod(SHAPE), dtype=torch.float32).reshape(SHAPE).sin()
        k = begin or 0
        x = sched.add_noise(init, noise, sched.timesteps[k:k + 1])
        if begin is not None:
            sched.set_begin_index(begin)
    else:
        x = noise * sched.init_noise_sigma
    module = sys.modules[cls.__module__]
    case = {"name": name, "steps": steps, "config": json.loads(config_text.replace("-Infinity", '"-Infinity"')),
            "config_text": config_text, "step_kwargs": step_kwargs or {},
            "init_noise_sigma": float(sched.init_noise_sigma), "shape": list(SHAPE), "x_T": flat(x),
            "timesteps": [float(t) for t in sched.timesteps], "model_inputs": [], "samples": []}
    if img2img:
        case.update({"set_timesteps_kwargs": set_kwargs or {}, "begin_index": begin or 0,
                     "init_sample": flat(init), "init_noise": flat(noise)})
    with Recorder(module) as rec:
        for t in sched.timesteps[begin or 0:]:
            inp = sched.scale_model_input(x, t)
            out = model(inp, t)
            kw = dict(step_kwargs or {})
            if "generator" in inspect.signature(sched.step).parameters:
                kw["generator"] = gen
            x = sched.step(out, t, x, **kw).prev_sample
            case["model_inputs"].append(flat(inp))
            case["samples"].append(flat(x))
    case["noise"] = rec.draws
    if hasattr(sched, "sigmas") and not isinstance(sched, (DDPMScheduler, DDIMScheduler)):
        case["sigmas"] = [float("%.9g" % v) for v in sched.sigmas.tolist()]
    if case["model_inputs"] == [case["x_T"]] + case["samples"][:-1]:
        del case["model_inputs"]  # unscaled: the input is the previous sample
    return case


def cases(only=()):
    out = {}
    def add(cls, name, overrides, steps=10, step_kwargs=None, set_kwargs=None, begin=None):
        if only and cls.__name__ not in only:
            return
        try:
            out.setdefault(cls.__name__, []).append(run(cls, name, overrides, steps, step_kwargs, set_kwargs, begin))
        except Exception as e:
            sys.exit(f"{cls.__name__} {name}: {type(e).__name__} {e}")

    for s, sv in {**SCHEDS, "sigmoid": SIGMOID}.items():
        for p, pv in PREDS.items():
            add(DDPMScheduler, f"{s}-{p}", {**sv, "prediction_type": pv})
    add(DDPMScheduler, "fixed_large", {"variance_type": "fixed_large"})
    add(DDPMScheduler, "fixed_small_log", {"variance_type": "fixed_small_log"})
    add(DDPMScheduler, "trailing", {"timestep_spacing": "trailing"}, 12)
    add(DDPMScheduler, "linspace", {"timestep_spacing": "linspace"}, 12)
    add(DDPMScheduler, "leading-offset1-noclip", {"steps_offset": 1, "clip_sample": False})
    add(DDPMScheduler, "thresholding", {"thresholding": True, "sample_max_value": 2.0})
    add(DDPMScheduler, "zsnr-trailing-v", ZSNR)

    for s, sv in SCHEDS.items():
        for p, pv in PREDS.items():
            add(DDIMScheduler, f"{s}-{p}", {**sv, "prediction_type": pv})
    add(DDIMScheduler, "eta1", {}, 10, {"eta": 1.0})
    add(DDIMScheduler, "eta0.5-scaled-v", {**SCALED, "prediction_type": "v_prediction"}, 10, {"eta": 0.5})
    add(DDIMScheduler, "sd-style", {**SCALED, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}, 12)
    add(DDIMScheduler, "trailing", {"timestep_spacing": "trailing"}, 12)
    add(DDIMScheduler, "linspace", {"timestep_spacing": "linspace"}, 12)
    add(DDIMScheduler, "thresholding", {"thresholding": True, "sample_max_value": 1.5})
    add(DDIMScheduler, "zsnr-trailing-v", ZSNR)

    D = DPMSolverMultistepScheduler
    for s, sv in SCHEDS.items():
        for p, pv in PREDS.items():
            add(D, f"{s}-{p}", {**sv, "prediction_type": pv}, 12)
    add(D, "linear-eps-20", {}, 20)
    add(D, "karras", {"use_karras_sigmas": True}, 12)
    add(D, "karras-scaled-v-20", {**SCALED, "use_karras_sigmas": True, "prediction_type": "v_prediction"}, 20)
    # (DPM-Solver with Karras sigmas on the cosine schedule truncates timesteps to repeated
    # integers and diffusers' step-index lookup then runs off the end: not a usable golden.)
    add(D, "exponential", {"use_exponential_sigmas": True}, 12)
    add(D, "sigma_min-final", {"final_sigmas_type": "sigma_min"}, 12)
    add(D, "sigma_min-final-20", {"final_sigmas_type": "sigma_min", **SCALED}, 20)
    add(D, "trailing", {"timestep_spacing": "trailing"}, 12)
    add(D, "leading-offset1", {"timestep_spacing": "leading", "steps_offset": 1}, 12)
    add(D, "zsnr-trailing-v", ZSNR, 12)
    add(D, "order3", {"solver_order": 3}, 12)
    add(D, "order3-20", {"solver_order": 3}, 20)
    add(D, "heun-solver", {"solver_type": "heun"}, 12)
    add(D, "thresholding-x0", {"thresholding": True, "prediction_type": "sample", "sample_max_value": 1.5}, 12)
    add(D, "euler_at_final", {"euler_at_final": True, "final_sigmas_type": "sigma_min"}, 20)
    add(D, "lambda_min_clipped", {**COS, "lambda_min_clipped": -5.1}, 12)
    add(D, "sde", {"algorithm_type": "sde-dpmsolver++"}, 12)
    add(D, "sde-scaled-v-20", {**SCALED, "algorithm_type": "sde-dpmsolver++", "prediction_type": "v_prediction"}, 20)
    add(D, "sde-karras", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}, 12)
    add(D, "sde-heun-solver", {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"}, 12)
    add(D, "sde-order3", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, 12)

    for s, sv in SCHEDS.items():
        for p, pv in PREDS.items():
            add(EulerDiscreteScheduler, f"{s}-{p}", {**sv, "prediction_type": pv})
    add(EulerDiscreteScheduler, "karras", {"use_karras_sigmas": True}, 12)
    add(EulerDiscreteScheduler, "karras-scaled-v", {**SCALED, "use_karras_sigmas": True, "prediction_type": "v_prediction"}, 12)
    add(EulerDiscreteScheduler, "exponential", {"use_exponential_sigmas": True}, 12)
    add(EulerDiscreteScheduler, "leading-offset1", {**SCALED, "timestep_spacing": "leading", "steps_offset": 1}, 12)
    add(EulerDiscreteScheduler, "trailing", {"timestep_spacing": "trailing"}, 12)
    add(EulerDiscreteScheduler, "zsnr-trailing-v", ZSNR, 12)
    add(EulerDiscreteScheduler, "sigma_min-final", {"final_sigmas_type": "sigma_min"}, 12)
    add(EulerDiscreteScheduler, "karras-sigma-range", {"use_karras_sigmas": True, "sigma_min": 0.05, "sigma_max": 50.0}, 12)

    for s, sv in SCHEDS.items():
        for p in ["eps", "v"]:
            add(EulerAncestralDiscreteScheduler, f"{s}-{p}", {**sv, "prediction_type": PREDS[p]})
    # With linspace spacing the cosine schedule starts at sigma = 20291, where diffusers'
    # sigma_down = sqrt(sigma_to^2 - sigma_up^2) is float32 rounding noise (the tests allow those
    # two cases a looser bound); these start at t = 901 instead.
    for p in ["eps", "v"]:
        add(EulerAncestralDiscreteScheduler, f"cos-{p}-leading",
            {**COS, "prediction_type": PREDS[p], "timestep_spacing": "leading", "steps_offset": 1})
    add(EulerAncestralDiscreteScheduler, "leading-offset1", {**SCALED, "timestep_spacing": "leading", "steps_offset": 1}, 12)
    add(EulerAncestralDiscreteScheduler, "trailing", {"timestep_spacing": "trailing"}, 12)
    add(EulerAncestralDiscreteScheduler, "zsnr-trailing-v", ZSNR, 12)

    for s, sv in {"linear": {"beta_start": 0.0001, "beta_end": 0.02}, "scaled": SCALED, "cos": COS}.items():
        for p, pv in PREDS.items():
            add(HeunDiscreteScheduler, f"{s}-{p}", {**sv, "prediction_type": pv})
    add(HeunDiscreteScheduler, "default-betas", {}, 10)
    add(HeunDiscreteScheduler, "karras", {"use_karras_sigmas": True}, 10)
    add(HeunDiscreteScheduler, "exponential", {"use_exponential_sigmas": True}, 10)
    add(HeunDiscreteScheduler, "leading-offset1", {"timestep_spacing": "leading", "steps_offset": 1}, 10)
    add(HeunDiscreteScheduler, "trailing", {"timestep_spacing": "trailing"}, 10)
    add(HeunDiscreteScheduler, "clip-x0", {"clip_sample": True, "prediction_type": "sample"}, 10)

    U = UniPCMultistepScheduler
    for s, sv in SCHEDS.items():
        for p, pv in PREDS.items():
            add(U, f"{s}-{p}", {**sv, "prediction_type": pv}, 12)
    add(U, "linear-eps-20", {}, 20)
    add(U, "karras", {"use_karras_sigmas": True}, 12)
    add(U, "exponential", {"use_exponential_sigmas": True}, 12)
    add(U, "order3", {"solver_order": 3}, 12)
    add(U, "order3-20", {"solver_order": 3}, 20)
    # bh1 with a final sigma of 0 gives NaN in diffusers (B(h) = -inf times 0).
    add(U, "bh1", {"solver_type": "bh1", "final_sigmas_type": "sigma_min"}, 12)
    add(U, "trailing", {"timestep_spacing": "trailing"}, 12)
    add(U, "leading-offset1", {"timestep_spacing": "leading", "steps_offset": 1}, 12)
    add(U, "zsnr-trailing-v", ZSNR, 12)
    add(U, "sigma_min-final", {"final_sigmas_type": "sigma_min"}, 12)
    add(U, "karras-sigma_min-final", {"final_sigmas_type": "sigma_min", "use_karras_sigmas": True}, 12)
    add(U, "thresholding-x0", {"thresholding": True, "prediction_type": "sample", "sample_max_value": 1.5}, 12)
    add(U, "disable-corrector", {"disable_corrector": [0, 3]}, 12)

    for s, sv in SCHEDS.items():
        for p in ["eps", "v"]:
            add(PNDMScheduler, f"{s}-{p}", {**sv, "prediction_type": PREDS[p]}, 10)
    add(PNDMScheduler, "sd-plms", {**SCALED, "skip_prk_steps": True, "steps_offset": 1}, 12)
    add(PNDMScheduler, "plms-v", {"skip_prk_steps": True, "prediction_type": "v_prediction"}, 12)
    add(PNDMScheduler, "linspace", {"timestep_spacing": "linspace"}, 10)
    add(PNDMScheduler, "trailing-plms", {"timestep_spacing": "trailing", "skip_prk_steps": True}, 10)
    add(PNDMScheduler, "alpha-to-one", {"set_alpha_to_one": True}, 8)

    for s, sv in SCHEDS.items():
        for p, pv in PREDS.items():
            add(LMSDiscreteScheduler, f"{s}-{p}", {**sv, "prediction_type": pv}, 12)
    add(LMSDiscreteScheduler, "karras", {"use_karras_sigmas": True}, 12)
    add(LMSDiscreteScheduler, "exponential-scaled", {**SCALED, "use_exponential_sigmas": True}, 12)
    add(LMSDiscreteScheduler, "leading-offset1", {**SCALED, "timestep_spacing": "leading", "steps_offset": 1}, 12)
    add(LMSDiscreteScheduler, "trailing", {"timestep_spacing": "trailing"}, 12)

    # LCM and TCD default to the scaled-linear schedule (Stable Diffusion's), original_inference_steps 50.
    for p, pv in PREDS.items():
        for n in [1, 2, 4, 8]:
            add(LCMScheduler, f"{p}-{n}", {"prediction_type": pv}, n)
    add(LCMScheduler, "linear-eps", {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, 4)
    add(LCMScheduler, "cos-v", {**COS, "prediction_type": "v_prediction"}, 4)
    add(LCMScheduler, "original-steps-20", {"original_inference_steps": 20}, 8)
    add(LCMScheduler, "original-steps-7", {"original_inference_steps": 7}, 3)
    # a small timestep_scaling makes c_skip (the boundary condition's skip term) large
    add(LCMScheduler, "timestep-scaling-0.01", {"timestep_scaling": 0.01}, 4)
    add(LCMScheduler, "timestep-scaling-0.01-v", {"timestep_scaling": 0.01, "prediction_type": "v_prediction"}, 8)
    add(LCMScheduler, "clip", {"clip_sample": True}, 4)
    add(LCMScheduler, "thresholding", {"thresholding": True, "sample_max_value": 1.5}, 4)
    add(LCMScheduler, "zsnr-v", {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}, 4)
    # keys LCMScheduler keeps but never uses
    add(LCMScheduler, "unused-keys", {"set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "trailing"}, 4)
    add(LCMScheduler, "img2img-strength-0.5", {}, 4, set_kwargs={"strength": 0.5})
    add(LCMScheduler, "img2img-strength-0.3-v", {"prediction_type": "v_prediction"}, 2, set_kwargs={"strength": 0.3})
    add(LCMScheduler, "img2img-begin-2", {}, 4, begin=2)
    add(LCMScheduler, "img2img-begin-5-v", {"prediction_type": "v_prediction"}, 8, begin=5)

    for g in [0.0, 0.3, 1.0]:
        for p in ["eps", "v"]:
            for n in [1, 2, 4, 8]:
                add(TCDScheduler, f"{p}-gamma{g}-{n}", {"prediction_type": PREDS[p]}, n, {"eta": g})
    add(TCDScheduler, "x0-gamma0.3", {"prediction_type": "sample"}, 4, {"eta": 0.3})
    add(TCDScheduler, "linear-eps-gamma0.3", {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, 4,
        {"eta": 0.3})
    add(TCDScheduler, "cos-v-gamma0.5", {**COS, "prediction_type": "v_prediction"}, 4, {"eta": 0.5})
    add(TCDScheduler, "original-steps-20-gamma0.3", {"original_inference_steps": 20}, 8, {"eta": 0.3})
    add(TCDScheduler, "zsnr-v-gamma0.3", {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}, 4,
        {"eta": 0.3})
    # gamma with (1 - gamma) * t' close to an integer: floor((1 - gamma) t') in float32 as torch does
    add(TCDScheduler, "gamma0.7-8", {}, 8, {"eta": 0.7})
    add(TCDScheduler, "img2img-strength-0.5-gamma0.3", {}, 4, {"eta": 0.3}, set_kwargs={"strength": 0.5})
    add(TCDScheduler, "img2img-begin-1-gamma0.3", {}, 4, {"eta": 0.3}, begin=1)
    add(TCDScheduler, "img2img-begin-6-v-gamma1", {"prediction_type": "v_prediction"}, 8, {"eta": 1.0}, begin=6)
    return out


def schedules():
    """betas and alphas_cumprod exactly as diffusers computes them (DDPMScheduler)."""
    out = []
    for name, kw in {"linear": {}, "scaled_linear": SCALED, "squaredcos_cap_v2": COS, "sigmoid": SIGMOID,
                     "linear-zsnr": {"rescale_betas_zero_snr": True},
                     "scaled_linear-zsnr": {**SCALED, "rescale_betas_zero_snr": True},
                     "linear-50": {"num_train_timesteps": 50}}.items():
        s = DDPMScheduler(**kw)
        out.append({"name": name, "config": kw, "betas": flat(s.betas), "alphas_cumprod": flat(s.alphas_cumprod)})
    return out


CLASSES = [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
           EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, UniPCMultistepScheduler, PNDMScheduler,
           LMSDiscreteScheduler, LCMScheduler, TCDScheduler]


def conversions():
    """`B.from_config(A.config)` for A loaded from a file, as a pipeline swaps its scheduler."""
    sources = {
        # a full file as save_config writes it, plus a key no class knows
        "ddim-sd-full": (DDIMScheduler, {**SCALED, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}),
        "dpm-karras-full": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True, "prediction_type": "v_prediction"}),
        "euler-a-zsnr-full": (EulerAncestralDiscreteScheduler, ZSNR),
        "lcm-full": (LCMScheduler, {"original_inference_steps": 25, "timestep_scaling": 5.0, "prediction_type": "v_prediction"}),
    }
    out = []
    with tempfile.TemporaryDirectory() as d:
        for name, (cls, kw) in sources.items():
            cls(**kw).save_config(d)
            path = os.path.join(d, "scheduler_config.json")
            cfg = json.load(open(path))
            cfg["my_custom_key"] = [1, 2]
            json.dump(cfg, open(path, "w"), indent=2, sort_keys=True)
            out.append((name, open(path).read()))
        # a hand-written minimal file: missing keys take each class's own defaults
        minimal = '{"_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, ' \
                  '"beta_end": 0.012, "prediction_type": "v_prediction"}'
        out.append(("ddpm-minimal", minimal))
        result = []
        for name, text in out:
            with open(os.path.join(d, "scheduler_config.json"), "w") as f:
                f.write(text)
            src_cls = getattr(diffusers, json.loads(text.replace("-Infinity", "null"))["_class_name"])
            src = src_cls.from_pretrained(d)
            targets = {}
            for cls in CLASSES:
                tgt = cls.from_config(src.config)
                with tempfile.TemporaryDirectory() as d2:
                    tgt.save_config(d2)
                    targets[cls.__name__] = open(os.path.join(d2, "scheduler_config.json")).read()
            result.append({"name": name, "source": text, "targets": targets})
    return result


def guidance_embedding():
    """LatentConsistencyModelPipeline.get_guidance_scale_embedding(w, d): the pipeline passes w = guidance − 1."""
    out = []
    for w, d in [([0.0, 1.5, 7.5], 256), ([3.0], 7), ([0.25, 14.0], 4), ([7.5], 1)]:
        e = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, torch.tensor(w), embedding_dim=d)
        out.append({"w": w, "dim": d, "embedding": flat(e)})
    return out


def main():
    # Optional arguments name the files to write (e.g. `LCMScheduler TCDScheduler conversions`):
    # torch's float32 kernels differ in the last bits between CPUs (AVX2 / AVX-512), so
    # regenerating every file on another machine churns goldens that have not changed.
    only = set(sys.argv[1:])
    def wanted(stem):
        return not only or stem in only
    os.makedirs(OUT, exist_ok=True)
    meta = {"diffusers": diffusers.__version__, "torch": torch.__version__, "numpy": np.__version__}
    for cls, cs in cases(only).items():
        with open(os.path.join(OUT, cls + ".json"), "w") as f:
            json.dump({"meta": meta, "class": cls, "cases": cs}, f, separators=(",", ":"))
    files = {"conversions": lambda: {"conversions": conversions()},
             "guidance_embedding": lambda: {"cases": guidance_embedding()},
             "schedules": lambda: {"schedules": schedules()}}
    for stem, make in files.items():
        if wanted(stem):
            with open(os.path.join(OUT, stem + ".json"), "w") as f:
                json.dump({"meta": meta, **make()}, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
