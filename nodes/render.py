"""Render nodes: the loops that change pictures to maximise objectives.

`render.deepdream` is gradient ascent on a photo, octave by octave, as in
the original DeepDream notebook (Mordvintsev, Olah, Tyka, "Inceptionism",
2015): the picture is dreamed small first, and the detail the dream added
is carried up to each larger octave. Each step's gradient is normalised by
its mean magnitude, so `step_size` is the average change of a pixel per
step, in 8-bit levels.
"""
from __future__ import annotations

from typing import Annotated, Optional

import torch
import torch.nn.functional as F

from dreamnodes import Context, NodeError, Range, node
from dreamnodes.types import Image, Objective, Transform

from .image import resize
from .model import capture

MIN_OCTAVE_SIDE = 32


def octave_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes from the smallest octave to the full picture; too-small octaves are dropped."""
    sizes = [(round(height / scale**k), round(width / scale**k)) for k in reversed(range(octaves))]
    kept = [s for s in sizes if min(s) >= MIN_OCTAVE_SIDE]
    return kept or [(height, width)]


def split_transforms(transforms: list[Transform]) -> dict[str, list[Transform]]:
    out: dict[str, list[Transform]] = {"input": [], "gradient": [], "image": []}
    for t in transforms:
        out[t.stage].append(t)
    return out


def guide_objective(objective: Objective, guide: Image, device: torch.device):
    """Match features to a guide picture's, as the original notebook's `objective_guide`.

    For each position of the dreamed feature map, the score is its largest dot product with
    any position of the guide's feature map (at the objective's first layer); the gradient
    pulls each position towards the guide feature it already resembles most.
    """
    layer = objective.layers[0]
    with torch.no_grad():
        g = capture(objective.model, guide.pixels[:1].to(device), (layer,))[layer]  # [1, C, h, w]
    g = g[0].flatten(1)  # [C, M]

    def score(acts):
        a = acts[layer].flatten(2)  # [N, C, P]
        sim = torch.einsum("ncp,cm->npm", a, g)  # [N, P, M]
        return sim.max(dim=2).values.mean(1)

    return score, (layer,)


@node("render.deepdream", random=True)
def deepdream(image: Image, objective: Objective, ctx: Context,
              transforms: list[Transform] = (), guide: Optional[Image] = None,
              octaves: Annotated[int, Range(1, 12)] = 4,
              octave_scale: Annotated[float, Range(1.0, 4.0)] = 1.4,
              steps: Annotated[int, Range(1, 1000)] = 10,
              step_size: Annotated[float, Range(0.0, 255.0)] = 1.5,
              preview_every: Annotated[int, Range(1, 1000)] = 5,
              seed: Optional[int] = None) -> Image:
    """DeepDream: amplify what a layer sees in a picture, octave by octave.

    Args:
        image: the picture to dream on.
        objective: what to maximise (a layer, channel, neuron or class, from model.layer).
        transforms: per-step transforms (jitter, blur, ...), applied in order.
        guide: a guide picture; the dream then grows the guide's features instead of the layer's own.
        octaves: how many scales to dream at.
        octave_scale: size ratio between one octave and the next.
        steps: gradient steps per octave.
        step_size: average change per pixel per step, in 8-bit levels (1.5 in the original notebook).
        preview_every: send a preview picture every this many steps.
        seed: fixes the jitter draws; null derives it from the recipe's seed.
    """
    device = ctx.device
    gen = ctx.generator()
    stages = split_transforms(list(transforms))
    if guide is not None:
        score_fn, layers = guide_objective(objective, guide, device)
    else:
        score_fn, layers = objective.fn, objective.layers
    base = image.pixels.to(device)
    n, _, height, width = base.shape
    sizes = octave_sizes(height, width, octaves, octave_scale)
    total = len(sizes) * steps
    detail = torch.zeros(n, 3, *sizes[0], device=device)
    lr = step_size / 255.0
    done = 0
    x = base
    with torch.enable_grad():
        for oi, (h, w) in enumerate(sizes):
            octave_base = resize(base, h, w)
            detail = F.interpolate(detail, size=(h, w), mode="bilinear", align_corners=False)
            x = (octave_base + detail).clamp(0, 1)
            for step in range(steps):
                x = x.detach().requires_grad_(True)
                inp = x
                for t in stages["input"]:
                    inp = t(inp, gen)
                score = score_fn(capture(objective.model, inp, layers))  # [N]
                if not torch.isfinite(score).all():
                    raise NodeError("the objective became NaN or infinite; lower step_size", ctx.node_id)
                (grad,) = torch.autograd.grad(score.sum(), x)
                for t in stages["gradient"]:
                    if step % t.every == 0:
                        grad = t(grad, gen)
                grad = grad / grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
                x = (x.detach() + lr * grad).clamp_(0, 1)
                for t in stages["image"]:
                    if (step + 1) % t.every == 0:
                        x = t(x, gen).clamp_(0, 1)
                done += 1
                ctx.progress(done, total, f"octave {oi + 1}/{len(sizes)} score {score.mean().item():.3g}")
                if done % preview_every == 0 or done == total:
                    ctx.preview(Image(x.detach().cpu()))
            detail = x - octave_base
    return Image(x.detach().to("cpu", torch.float32).contiguous())
