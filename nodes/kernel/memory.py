"""What a render will need, estimated before it runs, and the refusal of what cannot fit.

A dream's peak is the network's activations for one tile (measured once per model and layer
set, per input pixel, on a small probe, times the share alive at the peak of a backward pass)
plus a few full-size copies of the picture, plus what the process holds before any picture.
The render nodes declare their estimate in `@node(memory=...)`; the runtime calls it before
the node runs, and a refusal names the `tile` that would fit, or what else to lower.
"""
from __future__ import annotations

import os
import weakref

import torch

from dreamnodes import Context, NodeError
from dreamnodes.errors import UsageError
from dreamnodes.settings import setting
from dreamnodes.types import Image, Objective

from .network import capture
from .tiles import ALIGN, effective_tile, round_up, untileable

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
    try:  # the command line checked it when it started; an API caller meets a bad value here
        limit = setting("DREAMNODES_MEMORY_LIMIT_MB")
    except UsageError as exc:
        raise NodeError(str(exc)) from None
    if limit is not None:
        return limit, "DREAMNODES_MEMORY_LIMIT_MB"
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
                       overlap: int, model, layers: tuple[str, ...],
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
                        "smaller ones. Set DREAMNODES_MEMORY_LIMIT_MB to change the limit.")
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
                    "change the limit.")


def deepdream_memory(ctx: Context, image: Image, objective: Objective, tile: int = 0,
                     tile_overlap: int = 64, guide: Image | None = None, **_) -> int:
    return check_dream_memory("render.deepdream", ctx.device, image.batch, image.height, image.width,
                              tile, tile_overlap, objective.model, objective.layers,
                              positional=untileable(objective, guide))


def optimize_memory(ctx: Context, objective: Objective, width: int = 224, height: int = 224, batch: int = 1,
                    tile: int = 0, tile_overlap: int = 64, **_) -> int:
    return check_dream_memory("render.optimize", ctx.device, batch, height, width, tile, tile_overlap,
                              objective.model, objective.layers, positional=untileable(objective))


def frames_memory(what: str):
    """The estimate of a node that dreams frame after frame and keeps them all."""

    def estimate(ctx: Context, objective: Objective, image: Image | None = None, frames=None, tile: int = 0,
                 tile_overlap: int = 64, between: int = 0, guide: Image | None = None, **_) -> int:
        if isinstance(image, Image):  # render.zoom: `frames` dreamed frames and the in-betweens
            p, kept = image.pixels, frames + (frames - 1) * between
        else:  # render.video_dream: one dreamed frame per input frame
            p, kept = frames.pixels, frames.pixels.shape[0]
        return check_dream_memory(what, ctx.device, 1, p.shape[2], p.shape[3], tile, tile_overlap,
                                  objective.model, objective.layers, kept_frames=kept,
                                  positional=untileable(objective, guide))

    return estimate
