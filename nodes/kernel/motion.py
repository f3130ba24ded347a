"""Camera motion between frames: zoom, turn and shift, any fraction of a frame's move.

The infinite zoom moves its last dreamed frame by `Motion` before dreaming it again; its
in-between frames are zoom-consistent crossfades (`in_between`): frame i moved part of the
way towards frame i+1, frame i+1 moved back by the rest of the way, blended, so the motion
is continuous and only the new detail fades in.

A dreamed video follows the motion of its own frames: `optical_flow` (Farnebäck's dense
flow, from OpenCV, the `video` extra) says where each pixel of a frame was in the frame
before, and `flow_warp` moves the previous dreamed frame along it, so the dream it carries
lands where the picture moved instead of doubling its edges.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from dreamnodes import NodeError


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


def with_in_betweens(dreamed: list[torch.Tensor], motion: Motion, between: int) -> list[torch.Tensor]:
    """The dreamed frames [3, H, W] with `between` zoom-consistent crossfades after each but the last."""
    out = []
    for i, a in enumerate(dreamed):
        out.append(a)
        if i + 1 < len(dreamed):
            for k in range(1, between + 1):
                out.append(in_between(a[None], dreamed[i + 1][None], motion, k / (between + 1))[0])
    return out


def optical_flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dense optical flow [2, H, W] (dx, dy, in pixels) from picture a [3, H, W] back to picture b:
    a(y, x) ~ b(y + dy, x + dx), where each pixel of a was in b.

    Farnebäck, "Two-Frame Motion Estimation Based on Polynomial Expansion", 2003 (OpenCV's
    calcOpticalFlowFarneback, on the pictures' grey levels), as the DeepDream video tools use it.
    """
    try:
        import cv2
    except ImportError:
        raise NodeError("motion compensation needs OpenCV: pip install 'dreamnodes[video]' "
                        "(or opencv-python-headless), or set motion: none") from None
    import numpy as np

    def grey(x: torch.Tensor) -> "np.ndarray":
        g = (x.detach().to("cpu", torch.float32) * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0)
        return np.ascontiguousarray((g.clamp(0, 1) * 255).round().to(torch.uint8).numpy())

    side = max(a.shape[1:])
    levels = max(1, min(5, int(math.log2(max(side, 16) / 16))))
    flow = cv2.calcOpticalFlowFarneback(grey(a), grey(b), None, pyr_scale=0.5, levels=levels, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    return torch.from_numpy(flow).permute(2, 0, 1).contiguous()


def flow_warp(x: torch.Tensor, flow: torch.Tensor, padding: str = "border"
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pictures x [N, C, H, W] sampled along `flow` [2, H, W] (see optical_flow): out(y, x) =
    x(y + dy, x + dx), bilinear. Returns (moved pictures, mask of the pixels that came from inside)."""
    n, _, h, w = x.shape
    flow = flow.to(x.device, x.dtype)
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gx = (xs + flow[0]) * 2 / max(w - 1, 1) - 1
    gy = (ys + flow[1]) * 2 / max(h - 1, 1) - 1
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0).expand(n, h, w, 2)
    inside = (grid.abs() <= 1 + 1e-6).all(dim=-1).unsqueeze(1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True), inside
