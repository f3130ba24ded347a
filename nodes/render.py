"""Render nodes: the loops that change pictures to maximise objectives.

- `render.deepdream`: gradient ascent on a photo, octave by octave (Mordvintsev, Olah, Tyka,
  "Inceptionism", 2015);
- `render.optimize`: feature and class visualization from noise, Adam on a parameterization
  (Olah, Mordvintsev, Schubert, "Feature Visualization", Distill 2017);
- `render.zoom`: the original notebook's infinite zoom, dream - zoom in a little - dream again;
- `render.video_dream`: a video dreamed frame by frame, each started from the new frame
  blended with the last dream.

The loops themselves live in `kernel/` (steps, tiles, memory, frames): these functions wire
a node's inputs and parameters into them. Big pictures are rendered in tiles (`tile`), so
memory is bounded by the tile, not the picture; the runtime checks each render's memory
estimate (`@node(memory=...)`) before it runs.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal, NamedTuple, Optional

import torch

from dreamnodes import Context, Doc, NodeError, Range, node
from dreamnodes.types import Frames, Image, Objective, Parameterization, Prior, Transform

from .kernel.frames import checkpointed_frames
from .kernel.guide import dream_target
from .kernel.memory import deepdream_memory, frames_memory, optimize_memory
from .kernel.motion import Motion, flow_warp, optical_flow, warp, with_in_betweens
from .kernel.steps import DreamSettings, ObjectiveGradient, Pipeline, Progress, Salt, ascend, dream, octave_sizes
from .kernel.tiles import refuse_positional_tiles
from .param import fft_image, pixel_image

# the parameters every dream shares, declared once (range and doc)
Octaves = Annotated[int, Range(1, 12), Doc("how many scales to dream at")]
OctaveScale = Annotated[float, Range(1.0, 4.0), Doc("size ratio between one octave and the next")]
Steps = Annotated[int, Range(1, 1000), Doc("gradient steps per octave")]
StepSize = Annotated[float, Range(0.0, 255.0),
                     Doc("average change per pixel per step, in 8-bit levels (1.5 in the original notebook)")]
Tile = Annotated[int, Range(0, 8192), Doc(
    "side of the square tiles the gradient is computed in, in pixels (rounded up to a multiple of 32). "
    "0: automatic, whole pictures up to one megapixel, 512 px tiles above. A tile as large as the "
    "picture renders it whole.")]
TileOverlap = Annotated[int, Range(0, 1024), Doc(
    "context each tile sees beyond its own square, in pixels, on each side (64 is enough for mid "
    "layers; deeper layers see farther)")]


def _dream_gradient(ctx: Context, objective: Objective, guide: Optional[Image], transforms, tile: int,
                    overlap: int) -> ObjectiveGradient:
    score_fn, layers = dream_target(objective, guide, ctx.device)
    return ObjectiveGradient(objective.model, score_fn, layers, Pipeline(transforms),
                             ctx.generator(salt=Salt.TRANSFORMS), ctx.generator(salt=Salt.TILE_GRID),
                             tile, overlap, tick=ctx.check_cancelled)


def _dream_frame(x: torch.Tensor, base: ObjectiveGradient, ctx: Context, salt: int, settings: DreamSettings,
                 progress: Progress) -> torch.Tensor:
    """Dream one frame of a zoom or video, its draws from the node's seed + `salt`."""
    gradient = replace(base, gen=ctx.generator(salt=Salt.TRANSFORMS + salt),
                       shift_gen=ctx.generator(salt=Salt.TILE_GRID + salt))
    return dream(x, gradient, settings, progress)


# ---------------------------------------------------------------- DeepDream
@node("render.deepdream", random=True, version="2", memory=deepdream_memory)
def deepdream(image: Image, objective: Objective, ctx: Context,
              transforms: list[Transform] = (), guide: Optional[Image] = None,
              octaves: Octaves = 4, octave_scale: OctaveScale = 1.4, steps: Steps = 10, step_size: StepSize = 1.5,
              tile: Tile = 0, tile_overlap: TileOverlap = 64,
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
        preview_every: send a preview picture every this many steps.
        seed: fixes the jitter draws; null derives it from the recipe's seed.
    """
    refuse_positional_tiles(objective, tile, image.height, image.width, guide)
    gradient = _dream_gradient(ctx, objective, guide, transforms, tile, tile_overlap)

    def progress(done, total, label, x, work=None):
        ctx.progress(done, total, label, work)
        if done % preview_every == 0 or done == total:
            ctx.preview(Image(x.detach().to("cpu", torch.float32, copy=True)))

    x = dream(image.pixels.to(ctx.device), gradient, DreamSettings(octaves, octave_scale, steps, step_size), progress)
    return Image(x.to("cpu", torch.float32).contiguous())


# ---------------------------------------------------------------- feature visualization
class Optimized(NamedTuple):
    image: Image
    frames: Frames


def _default_parameterization(kind: str) -> Parameterization:
    make = fft_image if kind == "fft" else pixel_image
    return Parameterization(f"{kind} (default)", make)


def _recorded_steps(frames_at: Optional[list[int]], frames_every: Optional[int], steps: int) -> set[int]:
    record = set(frames_at or ())
    bad = sorted(s for s in record if not 1 <= s <= steps)
    if bad:
        raise NodeError(f"frames_at names steps {bad}, outside 1..{steps}")
    if frames_every:
        record |= set(range(frames_every, steps + 1, frames_every))
    return record


@node("render.optimize", random=True, version="2", memory=optimize_memory)
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
             tile: Tile = 0, tile_overlap: TileOverlap = 64,
             preview_every: Annotated[int, Range(1, 100000)] = 16,
             seed: Optional[int] = None) -> Optimized:
    """Optimise pictures from noise to maximise an objective (feature / class visualization).

    Each step: make the picture from the parameterization, apply the input transforms, run the
    network as far as the objective needs, and take an Adam step on score minus priors.
    Olah, Mordvintsev, Schubert, "Feature Visualization", Distill 2017; Mordvintsev et al.,
    "Differentiable Image Parameterizations", Distill 2018. The `frames` output holds the first
    picture of the batch at the chosen steps (the final picture when none are chosen). Large
    pictures are optimised in tiles whatever the parameterization: the picture is rendered
    whole, and the objective's gradient, computed tile by tile, is pushed back into it.

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
        preview_every: send a preview picture every this many steps.
        seed: fixes the starting noise and the transforms' draws; null derives it from the recipe's seed.
    """
    param = parameterization or _default_parameterization(default_param)
    pipeline = Pipeline(transforms)
    gen = ctx.generator(salt=Salt.TRANSFORMS)
    params, image_fn = param.make(batch, height, width, ctx.device, ctx.generator(salt=Salt.START))
    ctx.drew(f"{param.name}: starting noise and transform draws from seed {ctx.seed}")
    if pipeline.image and getattr(image_fn, "assign", None) is None:
        raise NodeError(f"the transforms {', '.join(t.name for t in pipeline.image)} change the picture "
                        f"between steps, which {param.name} cannot take back; use param.pixels or "
                        "param.fft, or blur the gradient (target 'gradient')")
    record = _recorded_steps(frames_at, frames_every, steps)
    refuse_positional_tiles(objective, tile, height, width)
    gradient = ObjectiveGradient(objective.model, objective.fn, objective.layers, pipeline, gen,
                                 ctx.generator(salt=Salt.TILE_GRID), tile, tile_overlap, tick=ctx.check_cancelled)
    frames: list[torch.Tensor] = []
    image_fn_penalty = getattr(image_fn, "penalty", None)

    def on_step(step, score, penalty):
        if image_fn_penalty is not None:  # a latent's L2 prior acts through z's gradient, not the priors
            penalty = penalty + image_fn_penalty().to(penalty.device)
        ctx.progress(step, steps, f"score {score.mean().item():.3g} prior {penalty.mean().item():.3g}")
        preview = step % preview_every == 0 or step == steps
        if step in record or preview:
            with torch.no_grad():
                now = image_fn().detach().to("cpu", torch.float32)
            if step in record:
                frames.append(now[0])
            if preview:
                ctx.preview(Image(now))

    ascend(params, image_fn, gradient, list(priors), steps, step_size, on_step)
    with torch.no_grad():
        final = image_fn().detach().to("cpu", torch.float32).contiguous()
    return Optimized(Image(final), Frames(torch.stack(frames or [final[0]]), fps))


# ---------------------------------------------------------------- moving pictures
class Zoomed(NamedTuple):
    frames: Frames
    image: Image


@node("render.zoom", random=True, memory=frames_memory("render.zoom"))
def zoom(image: Image, objective: Objective, ctx: Context, transforms: list[Transform] = (),
         guide: Optional[Image] = None,
         frames: Annotated[int, Range(1, 100000)] = 48,
         zoom: Annotated[float, Range(0.5, 2.0)] = 1.05,
         rotate: Annotated[float, Range(-45.0, 45.0)] = 0.0,
         translate_x: Annotated[float, Range(-512.0, 512.0)] = 0.0,
         translate_y: Annotated[float, Range(-512.0, 512.0)] = 0.0,
         octaves: Octaves = 2, octave_scale: OctaveScale = 1.4, steps: Steps = 5, step_size: StepSize = 1.5,
         between: Annotated[int, Range(0, 120)] = 3,
         fps: Annotated[float, Range(0.1, 120.0)] = 24.0,
         tile: Tile = 0, tile_overlap: TileOverlap = 64,
         seed: Optional[int] = None) -> Zoomed:
    """Infinite zoom: dream, zoom in (and turn, and move) a little, dream again, for many frames.

    Every dreamed frame is saved as it is finished, so an interrupted render resumes from the
    last finished frame. `between` in-between frames per dreamed frame come from a zoom-consistent
    crossfade (the zoom continues smoothly while the new detail fades in), for a smooth frame
    rate from few dreams. The `image` output is the last dreamed frame (to continue from).

    Args:
        image: the first picture.
        objective: what to maximise (model.layer ...).
        transforms: per-step transforms of each frame's dream (jitter, blur, ...).
        guide: a guide picture for every frame's dream.
        frames: how many frames to dream.
        zoom: scale factor per dreamed frame (above 1 zooms in, below 1 out).
        rotate: degrees to turn per dreamed frame, clockwise.
        translate_x: pixels to move the picture right per dreamed frame.
        translate_y: pixels to move the picture down per dreamed frame.
        octaves: octaves of each frame's dream (few: the previous frame already carries the dream).
        between: in-between frames after each dreamed frame (0: dreamed frames only).
        fps: frame rate of the frames output (dreamed and in-between frames together).
        seed: fixes the transforms' draws (frame i draws from seed + i); null derives it from the recipe's.
    """
    refuse_positional_tiles(objective, tile, image.height, image.width, guide)
    base = _dream_gradient(ctx, objective, guide, transforms, tile, tile_overlap)
    settings = DreamSettings(octaves, octave_scale, steps, step_size)
    motion = Motion(zoom, rotate, translate_x, translate_y)

    def make(i, previous, progress):
        x = (image.pixels[:1].to(ctx.device) if previous is None
             else warp(previous.pixels.to(ctx.device), motion.power(1))[0])
        return _dream_frame(x, base, ctx, i, settings, progress)

    per = len(octave_sizes(image.height, image.width, octaves, octave_scale)) * steps
    dreamed = [f.pixels[0] for f in checkpointed_frames(ctx, frames, per, make)]
    ctx.drew(f"render.zoom: frame i's transforms drew from seed {ctx.seed} + i")
    out = with_in_betweens(dreamed, motion, between)
    return Zoomed(Frames(torch.stack(out).contiguous(), fps), Image(dreamed[-1][None].contiguous()))


@node("render.video_dream", random=True, version="2", memory=frames_memory("render.video_dream"))
def video_dream(frames: Frames, objective: Objective, ctx: Context, transforms: list[Transform] = (),
                guide: Optional[Image] = None,
                blend: Annotated[float, Range(0.0, 0.95)] = 0.5,
                motion: Literal["flow", "none"] = "flow",
                octaves: Octaves = 2, octave_scale: OctaveScale = 1.4, steps: Steps = 5, step_size: StepSize = 1.5,
                tile: Tile = 0, tile_overlap: TileOverlap = 64,
                seed: Optional[int] = None) -> Frames:
    """Dream a video frame by frame, each frame started from the new frame blended with the
    previous dreamed one, so the dream stays put instead of flickering (temporal coherence).

    The previous dream is first moved along the optical flow from the new frame back to the
    one before (Farnebäck's dense flow, OpenCV), as the DeepDream video tools do, so what it
    carries lands where the picture moved instead of doubling its edges on a pan. Every dreamed
    frame is saved as it is finished; an interrupted render resumes.

    Args:
        frames: the video (video.load).
        objective: what to maximise (model.layer ...).
        transforms: per-step transforms of each frame's dream (jitter, blur, ...).
        guide: a guide picture for every frame's dream.
        blend: how much of the previous dreamed frame each frame starts from (0: every frame
            dreamed on its own, which flickers; higher: steadier, but slower to follow motion).
        motion: flow: move the previous dream along the optical flow between the input frames
            before blending it in; none: blend it where it is (edges double on moving frames).
        seed: fixes the transforms' draws (the same draws for every frame, which steadies the dream).
    """
    p = frames.pixels
    if p.dim() != 4 or p.shape[0] == 0:
        raise NodeError(f"the frames are {tuple(p.shape)}, not [T, 3, H, W] with at least one frame")
    refuse_positional_tiles(objective, tile, p.shape[2], p.shape[3], guide)
    base = _dream_gradient(ctx, objective, guide, transforms, tile, tile_overlap)
    settings = DreamSettings(octaves, octave_scale, steps, step_size)

    def make(i, previous, progress):
        x = p[i:i + 1].to(ctx.device)
        if previous is not None and blend > 0:
            x = (x * (1 - blend) + carried(p, i, previous.pixels, motion).to(ctx.device) * blend).clamp_(0, 1)
        return _dream_frame(x, base, ctx, 0, settings, progress)

    per = len(octave_sizes(p.shape[2], p.shape[3], octaves, octave_scale)) * steps
    done = checkpointed_frames(ctx, p.shape[0], per, make)
    return Frames(torch.stack([f.pixels[0] for f in done]).contiguous(), frames.fps)


def carried(p: torch.Tensor, i: int, previous: torch.Tensor, motion: str = "flow") -> torch.Tensor:
    """The previous dreamed frame [1, 3, H, W] as frame i of the video p [T, 3, H, W] sees it: moved
    along the optical flow from input frame i back to frame i - 1 (motion 'flow'), or as it is."""
    if motion == "none":
        return previous
    moved, _ = flow_warp(previous, optical_flow(p[i], p[i - 1]))
    return moved
