"""`render.optimize`: feature and class visualization from nothing.

The loop of Lucid's `render_vis` (Olah, Mordvintsev, Schubert, "Feature
Visualization", Distill 2017): a parameterization makes a picture, input
transforms (pad, jitter, scale, rotate) perturb it on its way into the
network, the objective scores the activations, priors penalise the picture,
and Adam changes the parameters to raise score minus penalty. Transforms
are what make the result a picture rather than an adversarial pattern: the
network must see the class under every small shift, zoom and rotation.

Transform stages: "input" transforms act on the way into the network
(gradients flow back through them); "gradient" transforms act on the
gradient with respect to the picture; "image" transforms act on the picture
between steps (blur every N steps), written back through the
parameterization's `assign`.

Large pictures are optimised in tiles, whatever the parameterization: the
picture is rendered whole, the objective's gradient with respect to it is
computed tile by tile (render.tiled_gradient: context margins, a grid that
moves every step), and that gradient is pushed back into the parameters,
so the network's memory is bounded by the tile. Input transforms then act
on each tile (with the same draws for every tile).
"""
from __future__ import annotations

from typing import Annotated, Literal, NamedTuple, Optional

import torch

from dreamnodes import Context, NodeError, Range, node
from dreamnodes.types import Frames, Image, Objective, Parameterization, Prior, Transform

from .model import capture
from .param import fft_image, pixel_image
from . import render
from .render import split_transforms


class Optimized(NamedTuple):
    image: Image
    frames: Frames


def _default_parameterization(kind: str) -> Parameterization:
    make = fft_image if kind == "fft" else pixel_image
    return Parameterization(f"{kind} (default)", make)


def _optimize_memory(ctx: Context, objective: Objective, width: int = 224, height: int = 224, batch: int = 1,
                     tile: int = 0, tile_overlap: int = 64, **_) -> int:
    return render.check_dream_memory("render.optimize", ctx.device, batch, height, width, tile, tile_overlap,
                                     objective.model, objective.layers, ctx.node_id,
                                     positional=render.untileable(objective))


@node("render.optimize", random=True, version="2", memory=_optimize_memory)
def optimize(objective: Objective, ctx: Context, parameterization: Optional[Parameterization] = None,
             transforms: list[Transform] = (), priors: list[Prior] = (),
             steps: Annotated[int, Range(1, 100000)] = 256,
             step_size: Annotated[float, Range(0.0, 10.0)] = 0.05,
             batch: Annotated[int, Range(1, 256)] = 1,
             width: Annotated[int, Range(16, 8192)] = 224,
             height: Annotated[int, Range(16, 8192)] = 224,
             default_param: Literal["fft", "pixels"] = "fft",
             frames_at: Optional[list[int]] = None,
             frames_every: Optional[Annotated[int, Range(1, 100000)]] = None,
             fps: Annotated[float, Range(0.1, 120.0)] = 12.0,
             tile: Annotated[int, Range(0, 8192)] = 0,
             tile_overlap: Annotated[int, Range(0, 1024)] = 64,
             preview_every: Annotated[int, Range(1, 100000)] = 16,
             seed: Optional[int] = None) -> Optimized:
    """Optimise pictures from noise to maximise an objective (feature / class visualization).

    Each step: make the picture from the parameterization, apply the input transforms, run the
    network as far as the objective needs, and take an Adam step on score minus priors.
    Olah, Mordvintsev, Schubert, "Feature Visualization", Distill 2017; Mordvintsev et al.,
    "Differentiable Image Parameterizations", Distill 2018. The `frames` output holds the first
    picture of the batch at the chosen steps (the final picture when none are chosen).

    Args:
        objective: what to maximise (objective.*, model.layer).
        parameterization: how the picture is represented (param.fft, param.pixels, a latent);
            when not wired, `default_param` is used.
        transforms: per-step transforms in order: input transforms (pad, jitter, scale, rotate)
            make the result robust; blur with target 'image' smooths the picture every N steps.
        priors: penalties on the picture (prior.l2, prior.tv, prior.student_t, prior.multiscale).
        steps: number of Adam steps.
        step_size: Adam's learning rate (0.05 suits param.fft).
        batch: how many pictures to optimise at once (objective.channels gives each its own channel).
        width: picture width in pixels.
        height: picture height in pixels.
        default_param: the parameterization when none is wired: fft or pixels.
        frames_at: steps (1..steps) whose picture goes into the frames output.
        frames_every: also record a frame every this many steps.
        fps: frame rate of the frames output.
        tile: side of the tiles the objective's gradient is computed in (see render.deepdream);
            0: automatic, whole pictures up to a megapixel, 512 px tiles above.
        tile_overlap: context each tile sees around it, in pixels.
        preview_every: send a preview picture every this many steps.
        seed: fixes the starting noise and the transforms' draws; null derives it from the recipe's seed.
    """
    device = ctx.device
    param = parameterization or _default_parameterization(default_param)
    stages = split_transforms(list(transforms))
    priors = list(priors)
    gen = ctx.generator()  # the transforms' draws
    params, image_fn = param.make(batch, height, width, device, ctx.generator(salt=1))
    ctx.drew(f"{param.name}: starting noise and transform draws from seed {ctx.seed}")
    if stages["image"] and getattr(image_fn, "assign", None) is None:
        raise NodeError(f"the transforms {', '.join(t.name for t in stages['image'])} change the picture "
                        f"between steps, which {param.name} cannot take back; use param.pixels or "
                        "param.fft, or blur the gradient (target 'gradient')", ctx.node_id)
    record = set(frames_at or ())
    bad = sorted(s for s in record if not 1 <= s <= steps)
    if bad:
        raise NodeError(f"frames_at names steps {bad}, outside 1..{steps}", ctx.node_id)
    if frames_every:
        record |= set(range(frames_every, steps + 1, frames_every))
    opt = torch.optim.Adam(params, lr=step_size)
    model, layers = objective.model, objective.layers
    frames: list[torch.Tensor] = []
    render.refuse_positional_tiles(objective, tile, height, width, ctx.node_id)
    tile_side = render.effective_tile(tile, height, width)
    shift_gen = ctx.generator(salt=0x7117)
    with torch.enable_grad():
        for step in range(1, steps + 1):
            opt.zero_grad(set_to_none=True)
            img = image_fn()  # [N, 3, H, W] in [0, 1]
            grad_ts = [t for t in stages["gradient"] if (step - 1) % t.every == 0]
            if grad_ts:
                img.register_hook(lambda g, ts=grad_ts: _apply(ts, g, gen))
            penalty = sum((p(img) for p in priors), img.new_zeros(img.shape[0]))  # [N]
            if tile_side:
                shift = (render.draw_shift(shift_gen, tile_side), render.draw_shift(shift_gen, tile_side))
                g, score = render.tiled_gradient(img.detach(), model, objective.fn, layers, stages["input"], gen,
                                                 tile_side, tile_overlap, shift, ctx.check_cancelled)
                loss = penalty.sum() - (img * g).sum()  # its gradient w.r.t. img is the tiles' gradient
            else:
                x = _apply(stages["input"], img, gen)
                score = objective(capture(model, x, layers))  # [N]
                loss = (penalty - score).sum()
            if not torch.isfinite(loss):
                raise NodeError(f"the loss became {loss.item()} at step {step}; lower step_size or the "
                                "prior weights", ctx.node_id)
            loss.backward()
            opt.step()
            image_ts = [t for t in stages["image"] if step % t.every == 0]
            if image_ts:
                with torch.no_grad():
                    image_fn.assign(_apply(image_ts, image_fn(), gen).clamp(0, 1))
            ctx.progress(step, steps, f"score {score.mean().item():.3g} prior {penalty.mean().item():.3g}")
            if step in record or step % preview_every == 0 or step == steps:
                with torch.no_grad():
                    now = image_fn().detach().to("cpu", torch.float32)
                if step in record:
                    frames.append(now[0])
                if step % preview_every == 0 or step == steps:
                    ctx.preview(Image(now))
        with torch.no_grad():
            final = image_fn().detach().to("cpu", torch.float32).contiguous()
    if not frames:
        frames = [final[0]]
    return Optimized(Image(final), Frames(torch.stack(frames), fps))




def _apply(ts: list[Transform], x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    for t in ts:
        x = t(x, gen)
    return x
