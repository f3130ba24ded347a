#!/usr/bin/env python
"""Benchmark of class visualization (`render.optimize`), not a timed test.

    .venv/bin/python bench/featurevis.py [--steps 24] [--sizes 224,512] [--repeats 3]

For each picture size, examples/class_vis.yaml (its transforms, priors and
FFT parameterization, with fewer steps) runs through `Runner` with caching
off, and the same arithmetic runs as a plain PyTorch loop written here by
hand (FFT spectrum -> decorrelated colour -> sigmoid -> jitter / scale /
rotate -> MobileNetV2 -> class logit minus the priors -> Adam). It prints
steps per second of each and the ratio runtime / plain (1.00 means the node
machinery costs nothing; the render node's time is taken from the runner's
per-node timing, so loading the model is not counted). Variants are
interleaved and the best of `--repeats` is kept, to damp the noise of a
shared machine. MobileNetV2 uses the packaged ImageNet weights; nothing is
downloaded.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dreamnodes import Context
from dreamnodes.graphs import load_recipe
from dreamnodes.nodes.model import load as load_model
from dreamnodes.nodes.param import COLOR_MATRIX
from dreamnodes.runtime import Runner
from dreamnodes.runtime.cache import Cache, default_cache_dir
from dreamnodes.runtime.cli import apply_sets

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "class_vis.yaml"


def recipe_settings() -> dict:
    """The numbers of class_vis.yaml the plain loop must reproduce."""
    r = load_recipe(RECIPE)
    p = {nid: n.params for nid, n in r.nodes.items()}
    types = {nid: n.type for nid, n in r.nodes.items()}
    vis = r.nodes["vis"]
    transforms = [(types[ref.node], p[ref.node]) for ref in vis.inputs.get("transforms", [])]
    priors = [(types[ref.node], p[ref.node]) for ref in vis.inputs.get("priors", [])]
    spectrum = p[vis.inputs["parameterization"].node]
    return {"transforms": transforms, "priors": priors, "decay": spectrum.get("decay", 1.0),
            "sd": spectrum.get("sd", 0.01), "lr": vis.params.get("step_size", 0.05),
            "label": p["target"]["label"]}


def plain_loop(model, settings: dict, size: int, steps: int, seed: int = 0) -> float:
    """The same arithmetic as the recipe, as one hand-written loop; returns seconds."""
    g = torch.Generator().manual_seed(seed)
    k = [c.lower() for c in model.categories].index(settings["label"])
    h = w = size
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.rfftfreq(w).view(1, -1)
    scale = (1.0 / torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / size) ** settings["decay"])[None, None, ..., None]
    spec = (settings["sd"] * torch.randn(1, 3, h, w // 2 + 1, 2, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([spec], lr=settings["lr"])
    mean = torch.tensor(model.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.std).view(1, 3, 1, 1)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        x = torch.fft.irfft2(torch.view_as_complex((scale * spec).contiguous()), s=(h, w), norm="ortho") / 4
        img = torch.sigmoid(torch.einsum("dc,nchw->ndhw", COLOR_MATRIX, x))
        x = img
        for kind, p in settings["transforms"]:
            if kind == "transform.jitter":
                d = p.get("pixels", 32)
                dy, dx = (int(torch.randint(-d, d + 1, (1,), generator=g)) for _ in range(2))
                x = torch.roll(x, (dy, dx), (2, 3))
            elif kind == "transform.scale":
                lo, hi = p.get("low", 0.9), p.get("high", 1.1)
                s = lo + (hi - lo) * float(torch.rand(1, generator=g))
                x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False)
            elif kind == "transform.rotate":
                a = math.radians(p.get("degrees", 5.0) * (2 * float(torch.rand(1, generator=g)) - 1))
                theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
                grid = F.affine_grid(theta, list(x.shape), align_corners=False)
                x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            elif kind == "transform.pad":
                x = F.pad(x, (p.get("pixels", 16),) * 4, mode="constant", value=0.5)
            else:
                raise SystemExit(f"the plain loop does not know {kind}; extend it")
        logit = model.module((x - mean) / std)[0, k]
        penalty = img.new_zeros(())
        for kind, p in settings["priors"]:
            if kind == "prior.tv":
                dx = img[:, :, :-1, 1:] - img[:, :, :-1, :-1]
                dy = img[:, :, 1:, :-1] - img[:, :, :-1, :-1]
                penalty = penalty + p.get("weight", 1.0) * (dx * dx + dy * dy + 1e-8).sqrt().mean()
            elif kind == "prior.l2":
                penalty = penalty + p.get("weight", 1.0) * (img - p.get("center", 0.5)).pow(2).mean()
            else:
                raise SystemExit(f"the plain loop does not know {kind}; extend it")
        (penalty - logit).backward()
        opt.step()
    return time.perf_counter() - t0


def runtime_run(runner: Runner, size: int, steps: int, seed: int) -> float:
    """Seconds of the render node of class_vis.yaml through the runtime.

    The runner keeps results in memory, as the editor and a re-run do: the model is loaded (and
    its faster copy made) once, and a new seed makes the render node itself run every time.
    """
    recipe = load_recipe(RECIPE)
    apply_sets(recipe, [f"vis.steps={steps}", f"vis.width={size}", f"vis.height={size}"])
    recipe.nodes.pop("out")  # nothing written: the picture is the render node's output
    result = runner.run(recipe, only=["vis"], seed=seed)
    assert "vis" in result.seconds, "the render node did not run"
    return result.seconds["vis"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="class visualization speed: runtime vs plain PyTorch")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--sizes", default="224,512")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    settings = recipe_settings()
    model = load_model(Context(node_id="net"))
    runner = Runner(cache=Cache(default_cache_dir(), disk=False), device="cpu")
    seeds = iter(range(1, 1_000_000))
    print(f"class visualization of '{settings['label']}' (examples/class_vis.yaml), {args.steps} steps, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'size':>5} {'runtime steps/s':>16} {'plain steps/s':>14} {'runtime/plain':>14} {'s/step':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        plain_loop(model, settings, size, 2)  # warm-up of this size, for both
        runtime_run(runner, size, 2, next(seeds))
        best_rt, best_plain = math.inf, math.inf
        for _ in range(args.repeats):
            best_rt = min(best_rt, runtime_run(runner, size, args.steps, next(seeds)))
            best_plain = min(best_plain, plain_loop(model, settings, size, args.steps))
        print(f"{size:>5} {args.steps / best_rt:>16.2f} {args.steps / best_plain:>14.2f} "
              f"{best_rt / best_plain:>14.3f} {best_rt / args.steps:>8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
