"""The step kernel every optimisation loop shares.

A render step is: the picture goes through the input transforms into the network, the
objective scores the activations, and its gradient with respect to the picture comes back;
the gradient transforms act on that gradient, and the image transforms on the picture
after the step. This module holds each piece once:

- `Salt`: the named offsets of a node's seed, one per independent stream of draws;
- `Pipeline`: a node's transforms split by stage, each scheduled by its `every` (steps count
  from 0 everywhere);
- `ObjectiveGradient`: the objective's gradient with respect to the picture, computed over a
  grid of tiles, of which a picture rendered whole is the grid of one (see `tiles`);
- `dream`: the DeepDream octave loop (Mordvintsev, Olah, Tyka, "Inceptionism", 2015), which
  render.deepdream, render.zoom and render.video_dream run; render.optimize runs its Adam loop
  on the same pieces.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from dreamnodes import NodeError
from dreamnodes.types import Model, Transform

from ..image import resize
from .network import capture
from .tiles import draw_shift, effective_tile, round_up, tile_spans

ScoreFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]
MIN_OCTAVE_SIDE = 32


class Salt(enum.IntEnum):
    """Added to a node's seed for each independent stream of random draws (`ctx.generator(salt)`),
    so that, for instance, tiling never changes what the transforms draw. Frame i of a zoom
    draws from `salt + i`."""

    TRANSFORMS = 0  # the transforms' draws
    START = 1  # a parameterization's starting noise
    TILE_GRID = 0x7117  # the tile grid's offsets


class Pipeline:
    """A render's transforms by stage: 'input' on the way into the network (differentiable),
    'gradient' on the picture's gradient, 'image' on the picture after a step.

    Steps count from 0: a gradient transform with `every` k acts at steps 0, k, 2k, ...; an image
    transform after steps k-1, 2k-1, ... (every k-th finished step).
    """

    def __init__(self, transforms: Iterable[Transform]):
        stages: dict[str, list[Transform]] = {"input": [], "gradient": [], "image": []}
        for t in transforms:
            stages[t.stage].append(t)
        self.input, self.gradient, self.image = stages["input"], stages["gradient"], stages["image"]

    def gradient_due(self, step: int) -> list[Transform]:
        return [t for t in self.gradient if step % t.every == 0]

    def image_due(self, step: int) -> list[Transform]:
        return [t for t in self.image if (step + 1) % t.every == 0]

    @staticmethod
    def apply(ts: list[Transform], x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for t in ts:
            x = t(x, gen)
        return x


@dataclass
class ObjectiveGradient:
    """The gradient of a score with respect to pictures [N, 3, H, W], tile by tile.

    Each tile's core plus `overlap` pixels of context goes through the input transforms (every
    tile replays the same draws, so a tiled step jitters like a whole one) and the network as
    far as `layers`; only the core's gradient is kept, weighted by the tile's input share of the
    picture, as a picture-wide mean objective would weigh it. The grid moves by a random offset
    from `shift_gen` every call (unless `move_tiles` is off); a picture no larger than the tile
    is one tile, the picture itself.
    """

    model: Model
    score_fn: ScoreFn
    layers: tuple[str, ...]
    pipeline: Pipeline
    gen: torch.Generator  # the transforms' draws
    shift_gen: torch.Generator  # the grid's offsets
    tile: int = 0  # as a recipe gives it: 0 automatic (see tiles.effective_tile)
    overlap: int = 64
    move_tiles: bool = True  # False only to show seams
    tick: Callable[[], None] = lambda: None  # called after every tile (cancellation)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gradient [N, 3, H, W], score [N]: the tiles' scores weighted by their cores' shares)."""
        tile = effective_tile(self.tile, x.shape[2], x.shape[3])
        shift = (0, 0)
        if tile and self.move_tiles:
            shift = (draw_shift(self.shift_gen, tile), draw_shift(self.shift_gen, tile))
        return self.at(x, shift)

    def at(self, x: torch.Tensor, shift: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The same, with the tile grid moved by `shift` (rows, columns) pixels."""
        n, _, h, w = x.shape
        tile = effective_tile(self.tile, h, w)
        overlap = round_up(self.overlap)
        tiles = self._tiles(x, tile_spans(h, tile, overlap, shift[0]), tile_spans(w, tile, overlap, shift[1]))
        if not tile:  # the whole picture, one tile: its gradient as laid out by the network's backward
            (_, grad, score), = tiles  # (later ops round by that layout: keep it, for the same pixels)
            return grad, score
        grad = torch.empty_like(x)
        score = torch.zeros(n, device=x.device)
        for (c0, c1, d0, d1), g, s in tiles:
            grad[:, :, c0:c1, d0:d1] = g
            score += s
        return grad, score

    def pixels(self, height: int, width: int) -> int:
        """The pixels one step at this size runs through the network: the picture, or its tiles
        with their overlaps (the unit of work progress counts in: a step's time follows it)."""
        tile = effective_tile(self.tile, height, width)
        overlap = round_up(self.overlap)
        rows, cols = tile_spans(height, tile, overlap, 0), tile_spans(width, tile, overlap, 0)
        return sum(i1 - i0 for _, _, i0, i1 in rows) * sum(j1 - j0 for _, _, j0, j1 in cols)

    def _tiles(self, x: torch.Tensor, rows: list, cols: list):
        """For each tile: (core box, the core's weighted gradient, its weighted score)."""
        h, w = x.shape[2], x.shape[3]
        state, after = self.gen.get_state(), None
        for (c0, c1, i0, i1) in rows:
            for (d0, d1, j0, j1) in cols:
                self.gen.set_state(state)
                crop = x[:, :, i0:i1, j0:j1].detach().clone().requires_grad_(True)
                inp = self.pipeline.apply(self.pipeline.input, crop, self.gen)
                s = self.score_fn(capture(self.model, inp, self.layers))
                if after is None:
                    after = self.gen.get_state()
                (g,) = torch.autograd.grad(s.sum(), crop)
                del crop, inp
                yield ((c0, c1, d0, d1), g[:, :, c0 - i0:c1 - i0, d0 - j0:d1 - j0] * ((i1 - i0) * (j1 - j0) / (h * w)),
                       s.detach() * ((c1 - c0) * (d1 - d0) / (h * w)))
                self.tick()
        self.gen.set_state(after)


def octave_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes from the smallest octave to the full picture; too-small octaves are dropped."""
    sizes = [(round(height / scale**k), round(width / scale**k)) for k in reversed(range(octaves))]
    kept = [s for s in sizes if min(s) >= MIN_OCTAVE_SIDE]
    return kept or [(height, width)]


@dataclass
class DreamSettings:
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 10
    step_size: float = 1.5


#: progress(steps done, steps in all, label, picture, work=share of the work done, 0 to 1)
Progress = Callable[..., None]


def dream(base: torch.Tensor, gradient: ObjectiveGradient, s: DreamSettings,
          progress: Progress = lambda *a, **k: None) -> torch.Tensor:
    """The DeepDream loop on base [N, 3, H, W] (on the run's device); returns the dreamed pixels.

    The picture is dreamed small first, and the detail the dream added is carried up to each
    larger octave. Each step's gradient is normalised by its mean magnitude, so `step_size` is
    the average change of a pixel per step, in 8-bit levels. Never changes `base`.
    """
    sizes = octave_sizes(base.shape[2], base.shape[3], s.octaves, s.octave_scale)
    total, done, detail, x = len(sizes) * s.steps, 0, None, base
    step_work = octave_work(sizes, gradient)
    with torch.enable_grad():
        for oi, (h, w) in enumerate(sizes):
            octave_base = resize(base, h, w)
            if detail is None:
                x = octave_base.clone()
            else:
                x = F.interpolate(detail, size=(h, w), mode="bilinear", align_corners=False)
                del detail
                x.add_(octave_base).clamp_(0, 1)
            for step in range(s.steps):
                x, score = _dream_step(x, gradient, step, s.step_size / 255.0)
                done += 1
                progress(done, total, f"octave {oi + 1}/{len(sizes)} score {score.mean().item():.3g}", x,
                         work=(sum(step_work[:oi]) * s.steps + step_work[oi] * (step + 1)) / (sum(step_work) * s.steps))
            if oi < len(sizes) - 1:
                detail = x - octave_base
                del x
            del octave_base
    return x.detach()


def octave_work(sizes: list[tuple[int, int]], gradient: ObjectiveGradient) -> list[float]:
    """Each octave's share of one step's work, from the pixels it runs through the network (an
    octave of twice the side takes about four times as long per step)."""
    pixels = [gradient.pixels(h, w) for h, w in sizes]
    return [p / sum(pixels) for p in pixels]


def _dream_step(x: torch.Tensor, gradient: ObjectiveGradient, step: int, lr: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One normalised gradient-ascent step of x in place (image transforms may replace it)."""
    grad, score = gradient(x)
    if not torch.isfinite(score).all():
        raise NodeError("the objective became NaN or infinite; lower step_size")
    pipe, gen = gradient.pipeline, gradient.gen
    grad = pipe.apply(pipe.gradient_due(step), grad, gen)
    grad.div_(grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)).mul_(lr)
    x.add_(grad).clamp_(0, 1)
    for t in pipe.image_due(step):
        x = t(x, gen).clamp_(0, 1)
    return x, score


OnStep = Callable[[int, torch.Tensor, torch.Tensor], None]


def ascend(params: list[torch.Tensor], image_fn, gradient: ObjectiveGradient, priors: list,
           steps: int, lr: float, on_step: OnStep = lambda *a: None) -> None:
    """Adam on a parameterization's `params` to raise score minus priors, as Lucid's render loop
    (Olah, Mordvintsev, Schubert, "Feature Visualization", Distill 2017).

    Each step renders the picture (image_fn), takes the objective's gradient with respect to it
    (tiled or whole) and pushes it back into the parameters together with the priors' gradient;
    image transforms act between steps through `image_fn.assign`. `on_step(step, score, penalty)`
    is called after each step, counting from 1.
    """
    opt = torch.optim.Adam(params, lr=lr)
    pipe, gen = gradient.pipeline, gradient.gen
    with torch.enable_grad():
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            img = image_fn()  # [N, 3, H, W] in [0, 1]
            due = pipe.gradient_due(step)
            if due:
                img.register_hook(lambda g, ts=due: pipe.apply(ts, g, gen))
            penalty = sum((p(img) for p in priors), img.new_zeros(img.shape[0]))  # [N]
            g, score = gradient(img.detach())
            # per picture, a stand-in for the score whose gradient w.r.t. img is the objective's
            loss = (penalty - (img * g).flatten(1).sum(1)).sum()
            if not torch.isfinite(loss):
                raise NodeError(f"the loss became {loss.item()} at step {step + 1}; lower step_size or the "
                                "prior weights")
            loss.backward()
            opt.step()
            due = pipe.image_due(step)
            if due:
                with torch.no_grad():
                    image_fn.assign(pipe.apply(due, image_fn(), gen).clamp(0, 1))
            on_step(step + 1, score, penalty)
