"""Moving pictures: the infinite zoom and dreaming a video, frame by frame.

`render.zoom` is the original notebook's feedback loop: dream a picture,
zoom into it a little (optionally rotating and moving it), dream the zoomed
picture again, and so on; the zoom's resampling blurs a little each time,
which is what keeps the dream from turning to noise. Dreamed frames are
slow (seconds each), so `between` in-between frames are made by a
zoom-consistent crossfade: frame i is zoomed part of the way towards frame
i+1's scale, frame i+1 zoomed back by the rest of the way, and the two are
blended, so the motion is continuous and only the new detail fades in.

`render.video_dream` dreams the frames of a video, each starting from the
new frame blended with the previous dreamed frame, so the hallucination
stays in place from frame to frame instead of flickering.

Both save every finished frame as a checkpoint (`ctx.checkpoint`): an
interrupted render resumes from the last finished frame, and gives the same
pixels as an uninterrupted one.
"""
from __future__ import annotations

import math
from typing import Annotated, Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

from dreamnodes import Context, NodeError, Range, node
from dreamnodes.types import Frames, Image, Objective, Transform

from . import render


# ---------------------------------------------------------------- geometry
class Motion(NamedTuple):
    """The per-frame camera move: zoom factor, rotation (degrees, clockwise) and shift (pixels)."""

    zoom: float = 1.05
    rotate: float = 0.0
    dx: float = 0.0
    dy: float = 0.0

    def power(self, s: float) -> tuple[float, float, float, float, float, float]:
        """The move applied s times (s may be fractional or negative), as the 2x3 matrix
        (a, b, c, d, tx, ty) mapping a point's position, relative to the centre, in pixels,
        from the old frame to the new one: (a*x + b*y + tx, c*x + d*y + ty)."""
        z, ang = self.zoom ** s, math.radians(self.rotate) * s
        a, b, c, d = z * math.cos(ang), -z * math.sin(ang), z * math.sin(ang), z * math.cos(ang)
        # the translation of M^s: (I - A)^-1 (I - A^s) t, or s * t when A is the identity
        z1, ang1 = self.zoom, math.radians(self.rotate)
        a1, b1, c1, d1 = z1 * math.cos(ang1), -z1 * math.sin(ang1), z1 * math.sin(ang1), z1 * math.cos(ang1)
        det = (1 - a1) * (1 - d1) - b1 * c1
        if abs(det) < 1e-9:
            tx, ty = s * self.dx, s * self.dy
        else:
            ux, uy = (1 - a) * self.dx - b * self.dy, -c * self.dx + (1 - d) * self.dy  # (I - A^s) t
            tx = ((1 - d1) * ux + b1 * uy) / det
            ty = (c1 * ux + (1 - a1) * uy) / det
        return a, b, c, d, tx, ty


def warp(x: torch.Tensor, matrix: tuple[float, ...], padding: str = "reflection"
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the picture x [N, 3, H, W] by the point map `matrix` (see Motion.power).

    Returns (moved picture, mask of the pixels that came from inside x). Bilinear.
    """
    a, b, c, d, tx, ty = matrix
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det  # each output pixel samples the inverse map
    itx, ity = -(ia * tx + ib * ty), -(ic * tx + id_ * ty)
    n, _, h, w = x.shape
    theta = torch.tensor([[ia, ib * h / w, itx * 2 / w], [ic * w / h, id_, ity * 2 / h]],
                         dtype=x.dtype, device=x.device).unsqueeze(0).expand(n, 2, 3)
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    inside = (grid.abs() <= 1 + 1e-6).all(dim=-1).unsqueeze(1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False), inside


def in_between(a: torch.Tensor, b: torch.Tensor, motion: Motion, t: float) -> torch.Tensor:
    """The frame at time t in (0, 1) between dreamed frames a and b = dream(move(a)).

    a moved by the fraction t of the frame's move, b moved back by the remaining 1 - t, crossfaded
    by t; where b moved back does not cover the frame (zooming out of it), a alone.
    """
    wa, _ = warp(a, motion.power(t))
    wb, inside = warp(b, motion.power(t - 1))
    weight = t * inside
    return (wa * (1 - weight) + wb * weight).clamp_(0, 1)


# ---------------------------------------------------------------- shared
def _dream_frame(x: torch.Tensor, objective: Objective, score_fn, layers, stages, ctx: Context, salt: int,
                 settings: render.DreamSettings, progress: Callable) -> torch.Tensor:
    """Dream one frame (the hook tests count calls through)."""
    return render.dream(x, objective.model, score_fn, layers, stages, ctx.generator(salt=salt),
                        ctx.generator(salt=0x7117 + salt), settings, ctx.node_id, progress, ctx.check_cancelled)


def _objective(objective: Objective, guide: Optional[Image], device):
    if guide is not None:
        return render.guide_objective(objective, guide, device)
    return objective.fn, objective.layers


def _frame_memory(what: str):
    def estimate(ctx: Context, objective: Objective, image: Image | None = None, frames=None, tile: int = 0,
                 tile_overlap: int = 64, between: int = 0, guide: Optional[Image] = None, **_) -> int:
        if isinstance(image, Image):  # render.zoom: `frames` dreamed frames and the in-betweens
            p, kept = image.pixels, frames + (frames - 1) * between
        else:  # render.video_dream: one dreamed frame per input frame
            p, kept = frames.pixels, frames.pixels.shape[0]
        return render.check_dream_memory(what, ctx.device, 1, p.shape[2], p.shape[3], tile, tile_overlap,
                                         objective.model, objective.layers, ctx.node_id, kept_frames=kept,
                                         positional=render.untileable(objective, guide))

    return estimate


# ---------------------------------------------------------------- zoom
class Zoomed(NamedTuple):
    frames: Frames
    image: Image


@node("render.zoom", random=True, memory=_frame_memory("render.zoom"))
def zoom(image: Image, objective: Objective, ctx: Context, transforms: list[Transform] = (),
         guide: Optional[Image] = None,
         frames: Annotated[int, Range(1, 100000)] = 48,
         zoom: Annotated[float, Range(0.5, 2.0)] = 1.05,
         rotate: Annotated[float, Range(-45.0, 45.0)] = 0.0,
         translate_x: Annotated[float, Range(-512.0, 512.0)] = 0.0,
         translate_y: Annotated[float, Range(-512.0, 512.0)] = 0.0,
         octaves: Annotated[int, Range(1, 12)] = 2,
         octave_scale: Annotated[float, Range(1.0, 4.0)] = 1.4,
         steps: Annotated[int, Range(1, 1000)] = 5,
         step_size: Annotated[float, Range(0.0, 255.0)] = 1.5,
         between: Annotated[int, Range(0, 120)] = 3,
         fps: Annotated[float, Range(0.1, 120.0)] = 24.0,
         tile: Annotated[int, Range(0, 8192)] = 0,
         tile_overlap: Annotated[int, Range(0, 1024)] = 64,
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
        octave_scale: size ratio between octaves.
        steps: gradient steps per octave of each frame.
        step_size: average change per pixel per step, in 8-bit levels.
        between: in-between frames after each dreamed frame (0: dreamed frames only).
        fps: frame rate of the frames output (dreamed and in-between frames together).
        tile: tile side for each frame's dream (see render.deepdream; 0 automatic).
        tile_overlap: context around each tile, in pixels.
        seed: fixes the transforms' draws (frame i draws from seed + i); null derives it from the recipe's.
    """
    device = ctx.device
    stages = render.split_transforms(list(transforms))
    score_fn, layers = _objective(objective, guide, device)
    render.refuse_positional_tiles(objective, tile, image.height, image.width, ctx.node_id, guide)
    settings = render.DreamSettings(octaves, octave_scale, steps, step_size, tile, tile_overlap)
    motion = Motion(zoom, rotate, translate_x, translate_y)
    step_of = [0]
    total = frames * len(render.octave_sizes(image.height, image.width, octaves, octave_scale)) * steps
    dreamed: list[torch.Tensor] = []
    x = image.pixels[:1].to(device)
    for i in range(frames):
        done = ctx.restore(f"frame/{i}")
        if done is None:
            def progress(k, n, label, _x, i=i):
                ctx.progress(step_of[0] + k, total, f"frame {i + 1}/{frames} {label}")

            y = _dream_frame(x, objective, score_fn, layers, stages, ctx, i, settings, progress)
            done = Image(y.to("cpu", torch.float32).contiguous())
            ctx.checkpoint(f"frame/{i}", done)
            ctx.preview(done)
        else:
            ctx.progress(step_of[0] + total // frames, total, f"frame {i + 1}/{frames} (saved earlier)")
        step_of[0] += total // frames
        dreamed.append(done.pixels[0])
        if i + 1 < frames:
            x, _ = warp(done.pixels.to(device), motion.power(1))
    out = []
    for i, a in enumerate(dreamed):
        out.append(a)
        if i + 1 < len(dreamed):
            for k in range(1, between + 1):
                out.append(in_between(a[None], dreamed[i + 1][None], motion, k / (between + 1))[0])
    ctx.drew(f"render.zoom: frame i's transforms drew from seed {ctx.seed} + i")
    return Zoomed(Frames(torch.stack(out).contiguous(), fps), Image(dreamed[-1][None].contiguous()))



# ---------------------------------------------------------------- video
@node("render.video_dream", random=True, memory=_frame_memory("render.video_dream"))
def video_dream(frames: Frames, objective: Objective, ctx: Context, transforms: list[Transform] = (),
                guide: Optional[Image] = None,
                blend: Annotated[float, Range(0.0, 0.95)] = 0.5,
                octaves: Annotated[int, Range(1, 12)] = 2,
                octave_scale: Annotated[float, Range(1.0, 4.0)] = 1.4,
                steps: Annotated[int, Range(1, 1000)] = 5,
                step_size: Annotated[float, Range(0.0, 255.0)] = 1.5,
                tile: Annotated[int, Range(0, 8192)] = 0,
                tile_overlap: Annotated[int, Range(0, 1024)] = 64,
                seed: Optional[int] = None) -> Frames:
    """Dream a video frame by frame, each frame started from the new frame blended with the
    previous dreamed one, so the dream stays put instead of flickering (temporal coherence).

    Every dreamed frame is saved as it is finished; an interrupted render resumes.

    Args:
        frames: the video (video.load).
        objective: what to maximise (model.layer ...).
        transforms: per-step transforms of each frame's dream (jitter, blur, ...).
        guide: a guide picture for every frame's dream.
        blend: how much of the previous dreamed frame each frame starts from (0: every frame
            dreamed on its own, which flickers; higher: steadier, but slower to follow motion).
        octaves: octaves of each frame's dream.
        octave_scale: size ratio between octaves.
        steps: gradient steps per octave of each frame.
        step_size: average change per pixel per step, in 8-bit levels.
        tile: tile side for each frame's dream (see render.deepdream; 0 automatic).
        tile_overlap: context around each tile, in pixels.
        seed: fixes the transforms' draws (the same draws for every frame, which steadies the dream).
    """
    device = ctx.device
    p = frames.pixels
    if p.dim() != 4 or p.shape[0] == 0:
        raise NodeError(f"the frames are {tuple(p.shape)}, not [T, 3, H, W] with at least one frame", ctx.node_id)
    stages = render.split_transforms(list(transforms))
    score_fn, layers = _objective(objective, guide, device)
    render.refuse_positional_tiles(objective, tile, p.shape[2], p.shape[3], ctx.node_id, guide)
    settings = render.DreamSettings(octaves, octave_scale, steps, step_size, tile, tile_overlap)
    n = p.shape[0]
    per = len(render.octave_sizes(p.shape[2], p.shape[3], octaves, octave_scale)) * steps
    out: list[torch.Tensor] = []
    prev = None
    for i in range(n):
        done = ctx.restore(f"frame/{i}")
        if done is None:
            x = p[i:i + 1].to(device)
            if prev is not None and blend > 0:
                x = (x * (1 - blend) + prev.to(device) * blend).clamp_(0, 1)

            def progress(k, total, label, _x, i=i):
                ctx.progress(i * per + k, n * per, f"frame {i + 1}/{n} {label}")

            y = _dream_frame(x, objective, score_fn, layers, stages, ctx, 0, settings, progress)
            done = Image(y.to("cpu", torch.float32).contiguous())
            ctx.checkpoint(f"frame/{i}", done)
            ctx.preview(done)
        else:
            ctx.progress((i + 1) * per, n * per, f"frame {i + 1}/{n} (saved earlier)")
        prev = done.pixels
        out.append(done.pixels[0])
    return Frames(torch.stack(out).contiguous(), frames.fps)

