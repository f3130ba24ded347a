"""The checkpointed frame loop of renders that dream frame after frame (a zoom, a video).

Every finished frame is saved as a checkpoint (`ctx.checkpoint`), so an interrupted render
(Ctrl+C, Stop in the editor, a killed process) resumes after the last finished frame and
gives the same pixels as an uninterrupted one. Progress counts every frame's steps in one
bar over the whole render.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from dreamnodes import Context
from dreamnodes.types import Image

from .steps import Progress

#: make(i, previous finished frame or None, progress) -> frame i's pixels [1, 3, H, W]
MakeFrame = Callable[[int, Optional[Image], Progress], torch.Tensor]


def checkpointed_frames(ctx: Context, count: int, steps_per_frame: int, make: MakeFrame) -> list[Image]:
    """Frames 0..count-1, each made by `make` unless an earlier run of this node saved it."""
    total = count * steps_per_frame
    out: list[Image] = []
    for i in range(count):
        done = ctx.restore(f"frame/{i}")
        if done is None:
            def progress(k, n, label, _x, work=None, i=i):
                share = k / n if work is None else work  # of this frame's work; the frames cost the same
                ctx.progress(i * steps_per_frame + k, total, f"frame {i + 1}/{count} {label}", (i + share) / count)

            done = Image(make(i, out[-1] if out else None, progress).to("cpu", torch.float32).contiguous())
            ctx.checkpoint(f"frame/{i}", done)
            ctx.preview(done)
        else:
            ctx.progress((i + 1) * steps_per_frame, total, f"frame {i + 1}/{count} (saved earlier)", (i + 1) / count)
        out.append(done)
    return out
