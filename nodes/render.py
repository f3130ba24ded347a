"""Render nodes: the loops that change pictures to maximise objectives.

`render.deepdream` is gradient ascent on a photo, octave by octave, as in
the original DeepDream notebook (Mordvintsev, Olah, Tyka, "Inceptionism",
2015): the picture is dreamed small first, and the detail the dream added
is carried up to each larger octave. Each step's gradient is normalised by
its mean magnitude, so `step_size` is the average change of a pixel per
step, in 8-bit levels.

Big pictures are dreamed in tiles. The gradient of a step is computed tile
by tile: each tile's core plus a margin of context (`tile_overlap`) goes
through the network, and only the core's gradient is written back, weighted
by the tile's share of the picture, so the assembled gradient is the one a
picture-wide mean objective would give, up to the receptive field cut at
the margins. The tile grid moves by a random (seeded) offset every step, so
seams never stay in one place; the gradient is normalised over the whole
picture after assembly. Memory then grows with the tile, not the picture:
besides the network's activations for one tile, a step holds three
full-size float arrays (the octave's base, the picture, the gradient).
Tiles start on multiples of 32 pixels, the network's largest stride, so a
tile sees the pixel grid exactly as the whole picture does.
"""
from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import torch
import torch.nn.functional as F

from dreamnodes import Context, NodeError, Range, node
from dreamnodes.types import Image, Objective, Transform

from .image import resize
from .model import capture

MIN_OCTAVE_SIDE = 32
ALIGN = 32  # tile origins and shifts are multiples of this (the network's largest stride)
AUTO_TILE = 512  # the tile side `tile: 0` picks for octaves larger than AUTO_UNTILED_PIXELS
AUTO_UNTILED_PIXELS = 1024 * 1024  # `tile: 0` dreams octaves up to this many pixels whole
MAX_TILE = 8192  # the largest `tile` a recipe may set


def octave_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes from the smallest octave to the full picture; too-small octaves are dropped."""
    sizes = [(round(height / scale**k), round(width / scale**k)) for k in reversed(range(octaves))]
    kept = [s for s in sizes if min(s) >= MIN_OCTAVE_SIDE]
    return kept or [(height, width)]


def untileable(objective: Objective, guide: Optional[Image] = None) -> bool:
    """Whether the score depends on positions in the whole picture (a neuron at x, y; a class in
    a region). A guided dream scores the guide's features instead, which tiles fine."""
    return guide is None and objective.positional


def refuse_positional_tiles(objective: Objective, tile: int, height: int, width: int,
                            node_id: str | None, guide: Optional[Image] = None) -> None:
    """A tiled render computes the objective on each tile; refuse objectives for which that
    means something else than on the whole picture."""
    if untileable(objective, guide) and effective_tile(tile, height, width):
        side = max(height, width)
        way = (f"set `tile` to {side} or more to render it whole, or make the picture smaller" if side <= MAX_TILE
               else f"make the picture at most {MAX_TILE} px on a side and set `tile` to that")
        raise NodeError(f"the objective {objective.name} depends on positions in the whole picture, so it "
                        f"cannot be computed in tiles, and a {width}x{height} picture is tiled "
                        f"(`tile` {tile}{', automatic above a megapixel' if tile == 0 else ''}); {way}", node_id)


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


# ---------------------------------------------------------------- tiles
def round_up(v: int, k: int = ALIGN) -> int:
    return -(-v // k) * k


def effective_tile(tile: int, height: int, width: int) -> int:
    """The core side a step uses at this octave size: 0 when the octave is dreamed whole.

    `tile` 0 means automatic: whole up to AUTO_UNTILED_PIXELS, else AUTO_TILE. A tile is
    rounded up to a multiple of ALIGN; one that covers the octave means no tiling.
    """
    if tile == 0:
        if height * width <= AUTO_UNTILED_PIXELS:
            return 0
        tile = AUTO_TILE
    tile = round_up(tile)
    return 0 if tile >= height and tile >= width else tile


def tile_spans(length: int, tile: int, overlap: int, shift: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, input start, input end) along one side, for a grid moved by `shift`.

    Cores partition [0, length); inputs add `overlap` pixels of context each side, clipped to
    the picture, so a tile at the border sees the border as the whole picture does.
    """
    shift %= tile
    starts = range(shift - tile if shift > 0 else 0, length, tile)
    spans = []
    for s in starts:
        c0, c1 = max(0, s), min(length, s + tile)
        if c1 > c0:
            spans.append((c0, c1, max(0, c0 - overlap), min(length, c1 + overlap)))
    return spans


def draw_shift(gen: torch.Generator, tile: int) -> int:
    """A random grid offset in [0, tile), a multiple of ALIGN."""
    return ALIGN * int(torch.randint(0, max(1, tile // ALIGN), (1,), generator=gen).item())


ScoreFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def tiled_gradient(x: torch.Tensor, model, score_fn: ScoreFn, layers: tuple[str, ...],
                   input_ts: list[Transform], gen: torch.Generator, tile: int, overlap: int,
                   shift: tuple[int, int], tick: Callable[[], None] = lambda: None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of the objective w.r.t. x [N, 3, H, W], computed tile by tile.

    Every tile replays the same draws of the input transforms (so a tiled step jitters
    like a whole-picture one), and its gradient is weighted by its input's share of the
    picture, as a picture-wide mean objective would weigh it. Returns (gradient, score), the
    score being the tiles' scores weighted by their cores' shares of the picture.
    """
    n, _, h, w = x.shape
    overlap = round_up(overlap)
    grad = torch.empty_like(x)
    score = torch.zeros(n, device=x.device)
    state = gen.get_state()
    after = None
    for (c0, c1, i0, i1) in tile_spans(h, tile, overlap, shift[0]):
        for (d0, d1, j0, j1) in tile_spans(w, tile, overlap, shift[1]):
            gen.set_state(state)
            crop = x[:, :, i0:i1, j0:j1].detach().clone().requires_grad_(True)
            inp = crop
            for t in input_ts:
                inp = t(inp, gen)
            s = score_fn(capture(model, inp, layers))
            if after is None:
                after = gen.get_state()
            (g,) = torch.autograd.grad(s.sum(), crop)
            weight = (i1 - i0) * (j1 - j0) / (h * w)
            grad[:, :, c0:c1, d0:d1] = g[:, :, c0 - i0:c1 - i0, d0 - j0:d1 - j0] * weight
            score += s.detach() * ((c1 - c0) * (d1 - d0) / (h * w))
            del crop, inp, g, s
            tick()
    if after is not None:
        gen.set_state(after)
    return grad, score


@dataclass
class DreamSettings:
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 10
    step_size: float = 1.5
    tile: int = 0
    tile_overlap: int = 64
    move_tiles: bool = True  # a new random grid offset every step (False only to show seams)


def dream(base: torch.Tensor, model, score_fn: ScoreFn, layers: tuple[str, ...], stages: dict,
          gen: torch.Generator, shift_gen: torch.Generator, s: DreamSettings, node_id: str | None = None,
          progress: Callable[[int, int, str, torch.Tensor], None] = lambda *a: None,
          tick: Callable[[], None] = lambda: None) -> torch.Tensor:
    """The DeepDream loop on base [N, 3, H, W] (on the run's device); returns the dreamed pixels.

    `gen` drives the transforms' draws, `shift_gen` the tile grid's offsets (a separate
    stream, so tiling never changes what the transforms draw). Never changes `base`.
    """
    n, _, height, width = base.shape
    sizes = octave_sizes(height, width, s.octaves, s.octave_scale)
    total = len(sizes) * s.steps
    lr = s.step_size / 255.0
    done = 0
    detail = None
    x = base
    with torch.enable_grad():
        for oi, (h, w) in enumerate(sizes):
            octave_base = resize(base, h, w)
            if detail is None:
                x = octave_base.clone()
            else:
                x = F.interpolate(detail, size=(h, w), mode="bilinear", align_corners=False)
                del detail
                x.add_(octave_base).clamp_(0, 1)
            tile = effective_tile(s.tile, h, w)
            for step in range(s.steps):
                if tile:
                    shift = (draw_shift(shift_gen, tile), draw_shift(shift_gen, tile)) if s.move_tiles else (0, 0)
                    grad, score = tiled_gradient(x, model, score_fn, layers, stages["input"], gen, tile,
                                                 s.tile_overlap, shift, tick)
                else:
                    x.requires_grad_(True)
                    inp = x
                    for t in stages["input"]:
                        inp = t(inp, gen)
                    score = score_fn(capture(model, inp, layers))  # [N]
                    (grad,) = torch.autograd.grad(score.sum(), x)
                    x = x.detach()
                    del inp
                if not torch.isfinite(score).all():
                    raise NodeError("the objective became NaN or infinite; lower step_size", node_id)
                for t in stages["gradient"]:
                    if step % t.every == 0:
                        grad = t(grad, gen)
                grad.div_(grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)).mul_(lr)
                x.add_(grad).clamp_(0, 1)
                del grad
                for t in stages["image"]:
                    if (step + 1) % t.every == 0:
                        x = t(x, gen).clamp_(0, 1)
                done += 1
                progress(done, total, f"octave {oi + 1}/{len(sizes)} score {score.mean().item():.3g}", x)
            if oi < len(sizes) - 1:
                detail = x - octave_base
                del x
            del octave_base
    return x.detach()


# ---------------------------------------------------------------- memory
_ACTS: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
PROBE_SIDE = 128
BACKWARD_FACTOR = 2.5  # saved activations + their gradients alive at the peak of a backward pass
PROCESS_BYTES = 1000 * 1024**2  # torch, the model and its fast copy, before any picture (and the heap
#                                 the CPU allocator keeps for reuse: runtime/device.py)
FULL_COPIES = 5  # full-size float arrays alive at a tiled step's peak (base, picture, gradient, spares)


def activation_bytes_per_pixel(model, layers: tuple[str, ...]) -> float:
    """Bytes of activations the forward pass as far as `layers` makes, per input pixel (measured)."""
    per = _ACTS.setdefault(model.module, {})
    if layers not in per:
        total, seen = [0], set()

        def count(m, _i, out):  # every leaf module's new output, in whichever copy of the model capture runs
            if isinstance(out, torch.Tensor) and not any(True for _ in m.children()) and out.data_ptr() not in seen:
                seen.add(out.data_ptr())
                total[0] += out.numel() * out.element_size()

        dev = next(model.module.parameters()).device
        with torch.no_grad():  # once first: capture may prepare a faster copy of the model
            capture(model, torch.zeros(1, 3, ALIGN, ALIGN, device=dev), layers)
        hook = torch.nn.modules.module.register_module_forward_hook(count)
        try:
            with torch.no_grad():
                capture(model, torch.zeros(1, 3, PROBE_SIDE, PROBE_SIDE, device=dev), layers)
        finally:
            hook.remove()
        per[layers] = total[0] / PROBE_SIDE**2
    return per[layers]


def dream_peak_bytes(batch: int, height: int, width: int, tile: int, overlap: int, act_per_px: float) -> int:
    """Estimated peak bytes of dreaming a [batch, 3, height, width] picture (largest octave)."""
    t = effective_tile(tile, height, width)
    side_h = min(height, t + 2 * round_up(overlap)) if t else height
    side_w = min(width, t + 2 * round_up(overlap)) if t else width
    network = batch * side_h * side_w * act_per_px * BACKWARD_FACTOR
    pictures = batch * 3 * height * width * 4 * FULL_COPIES
    return int(network + pictures + PROCESS_BYTES)


def available_bytes(device: torch.device) -> tuple[int, str]:
    """(bytes the run may use, where the figure comes from); DREAMNODES_MEMORY_LIMIT_MB overrides."""
    env = os.environ.get("DREAMNODES_MEMORY_LIMIT_MB", "").strip()
    if env:
        try:
            mb = float(env)
        except ValueError:
            mb = -1.0
        if not (mb > 0 and math.isfinite(mb)):
            raise NodeError(f"DREAMNODES_MEMORY_LIMIT_MB must be a number of megabytes above 0, got {env!r}; "
                            "set it to, say, 8000, or unset it to use the memory the machine has free")
        return int(mb * 1024**2), "DREAMNODES_MEMORY_LIMIT_MB"
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {device}"
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if ":" in line}
        return info["MemAvailable"], "MemAvailable in /proc/meminfo"
    except (OSError, KeyError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "free physical memory"
    except (AttributeError, OSError, ValueError):  # no such figure here (macOS, Windows): no check
        return 2**62, "no figure of free memory on this system"


def gb(b: float) -> str:
    return f"{b / 1024**3:.1f} GB" if b >= 1024**3 else f"{b / 1024**2:.0f} MB"


def check_dream_memory(what: str, device: torch.device, batch: int, height: int, width: int, tile: int,
                       overlap: int, model, layers: tuple[str, ...], node_id: str | None,
                       kept_frames: int = 0, positional: bool = False) -> int:
    """Refuse, before anything runs, a dream that would not fit; returns the estimate in bytes.

    `kept_frames`: pictures of this size the node keeps until it returns (a zoom's or a video's
    frames), counted twice: the list of frames and the stacked result exist together at the end.
    `positional`: the objective cannot be tiled, so tiles are not offered as the way out.
    """
    act = activation_bytes_per_pixel(model, layers)
    frames_bytes = 2 * kept_frames * 3 * height * width * 4
    need = dream_peak_bytes(batch, height, width, tile, overlap, act) + frames_bytes
    limit, source = available_bytes(device)
    if need <= limit:
        return need
    if frames_bytes > 0.5 * limit:
        fewer = "`frames` or `between`" if what == "render.zoom" else "the frames of the input video"
        raise NodeError(f"{what} would keep {kept_frames} frames of {width}x{height}, about {gb(frames_bytes)} of "
                        f"memory, but only {gb(limit)} is available ({source}); make fewer frames ({fewer}) or "
                        "smaller ones. Set DREAMNODES_MEMORY_LIMIT_MB to change the limit.", node_id)
    t = effective_tile(tile, height, width)
    now = f"in tiles of {t} px" if t else "whole (untiled)"
    fits = [] if positional else [
        c for c in (1024, 768, 512, 384, 256, 192, 128, 96, 64)
        if dream_peak_bytes(batch, height, width, c, overlap, act) + frames_bytes <= 0.9 * limit
        and c < (t or max(height, width))]
    if positional:
        advice = "its objective depends on positions in the whole picture and cannot be tiled: lower the picture's size"
    elif fits:
        est = dream_peak_bytes(batch, height, width, fits[0], overlap, act) + frames_bytes
        advice = f"set `tile` to {fits[0]} (about {gb(est)}){'' if overlap <= 64 else ' and lower `tile_overlap`'}"
    else:
        advice = ("even small tiles do not fit, since the picture itself must be held several times: "
                  "lower the picture's size or `batch`")
    raise NodeError(f"{what} of a {width}x{height} picture {now} needs about {gb(need)} of memory, but only "
                    f"{gb(limit)} is available ({source}); {advice}. Set DREAMNODES_MEMORY_LIMIT_MB to "
                    "change the limit.", node_id)


def _deepdream_memory(ctx: Context, image: Image, objective: Objective, tile: int = 0,
                      tile_overlap: int = 64, guide: Optional[Image] = None, **_) -> int:
    return check_dream_memory("render.deepdream", ctx.device, image.batch, image.height, image.width,
                              tile, tile_overlap, objective.model, objective.layers, ctx.node_id,
                              positional=untileable(objective, guide))


# ---------------------------------------------------------------- the node
@node("render.deepdream", random=True, version="2", memory=_deepdream_memory)
def deepdream(image: Image, objective: Objective, ctx: Context,
              transforms: list[Transform] = (), guide: Optional[Image] = None,
              octaves: Annotated[int, Range(1, 12)] = 4,
              octave_scale: Annotated[float, Range(1.0, 4.0)] = 1.4,
              steps: Annotated[int, Range(1, 1000)] = 10,
              step_size: Annotated[float, Range(0.0, 255.0)] = 1.5,
              tile: Annotated[int, Range(0, 8192)] = 0,
              tile_overlap: Annotated[int, Range(0, 1024)] = 64,
              preview_every: Annotated[int, Range(1, 1000)] = 5,
              seed: Optional[int] = None) -> Image:
    """DeepDream: amplify what a layer sees in a picture, octave by octave.

    Pictures larger than a megapixel are dreamed in tiles (`tile`), so memory is bounded by the
    tile, not the picture; the tile grid moves every step, so no seam stays in one place. The
    runtime refuses, before running, a dream that would not fit in memory, and suggests a tile.

    Args:
        image: the picture to dream on.
        objective: what to maximise (a layer, channel, neuron or class, from model.layer).
        transforms: per-step transforms (jitter, blur, ...), applied in order.
        guide: a guide picture; the dream then grows the guide's features instead of the layer's own.
        octaves: how many scales to dream at.
        octave_scale: size ratio between one octave and the next.
        steps: gradient steps per octave.
        step_size: average change per pixel per step, in 8-bit levels (1.5 in the original notebook).
        tile: side of the square tiles the gradient is computed in, in pixels (rounded up to a
            multiple of 32). 0: automatic, whole octaves up to one megapixel, 512 px tiles above.
            A tile as large as the picture dreams it whole.
        tile_overlap: context each tile sees beyond its own square, in pixels, on each side (64 is
            enough for mid layers; deeper layers see farther).
        preview_every: send a preview picture every this many steps.
        seed: fixes the jitter draws; null derives it from the recipe's seed.
    """
    device = ctx.device
    stages = split_transforms(list(transforms))
    if guide is not None:
        score_fn, layers = guide_objective(objective, guide, device)
    else:
        score_fn, layers = objective.fn, objective.layers
    refuse_positional_tiles(objective, tile, image.height, image.width, ctx.node_id, guide)
    settings = DreamSettings(octaves, octave_scale, steps, step_size, tile, tile_overlap)

    def progress(done, total, label, x):
        ctx.progress(done, total, label)
        if done % preview_every == 0 or done == total:
            ctx.preview(Image(x.detach().to("cpu", torch.float32, copy=True)))

    x = dream(image.pixels.to(device), objective.model, score_fn, layers, stages, ctx.generator(),
              ctx.generator(salt=0x7117), settings, ctx.node_id, progress, ctx.check_cancelled)
    return Image(x.to("cpu", torch.float32).contiguous())

