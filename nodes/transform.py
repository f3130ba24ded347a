"""Transform nodes: per-step operations a render node applies.

Input transforms (jitter, pad, scale, rotate) are differentiable and act on
the picture on its way into the network, so gradients flow back through
them; they make results robust instead of adversarial. Blur acts on the
picture or its gradient between steps. Each is a factory: its node returns
a `Transform` whose randomness comes from the generator the render node
passes in, so a run replays exactly.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from dreamnodes import Range, node
from dreamnodes.types import Transform


def roll(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] drawn from gen (on the CPU, so every device replays the same)."""
    return int(torch.randint(lo, hi + 1, (1,), generator=gen).item())


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W], reflecting at the borders."""
    if sigma <= 0:
        return x
    k = gaussian_kernel(sigma).to(x.device, x.dtype)
    r = (k.numel() - 1) // 2
    c = x.shape[1]
    r_h, r_w = min(r, x.shape[2] - 1), min(r, x.shape[3] - 1)
    kh = k[r - r_h:r + r_h + 1] if r_h < r else k
    kw = k[r - r_w:r + r_w + 1] if r_w < r else k
    kh, kw = kh / kh.sum(), kw / kw.sum()
    x = F.pad(x, (0, 0, r_h, r_h), mode="reflect")
    x = F.conv2d(x, kh.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    x = F.pad(x, (r_w, r_w, 0, 0), mode="reflect")
    return F.conv2d(x, kw.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


@node("transform.jitter")
def jitter(pixels: Annotated[int, Range(0, 512)] = 32) -> Transform:
    """Shift the picture by a random offset (wrapping around) before each step.

    Spreads the network's attention so the dream does not lock onto the pixel grid
    (the original DeepDream notebook's jitter).

    Args:
        pixels: the largest shift, in pixels, in each direction.
    """
    def apply(x, gen):
        dy, dx = _randint(gen, -pixels, pixels), _randint(gen, -pixels, pixels)
        return roll(x, dy, dx)

    return Transform(f"jitter({pixels})", "input", apply)


@node("transform.pad")
def pad(pixels: Annotated[int, Range(0, 512)] = 16, mode: Literal["reflect", "constant"] = "reflect") -> Transform:
    """Pad the picture before it enters the network, so borders get as much attention as the middle.

    Args:
        pixels: padding on each side.
        mode: reflect the picture, or pad with mid grey.
    """
    def apply(x, gen):
        if mode == "constant":
            return F.pad(x, (pixels,) * 4, mode="constant", value=0.5)
        p = min(pixels, x.shape[2] - 1, x.shape[3] - 1)
        return F.pad(x, (p,) * 4, mode="reflect")

    return Transform(f"pad({pixels})", "input", apply)


@node("transform.scale")
def scale(low: Annotated[float, Range(0.1, 4)] = 0.9, high: Annotated[float, Range(0.1, 4)] = 1.1) -> Transform:
    """Rescale the picture by a random factor before each step.

    Args:
        low: smallest factor.
        high: largest factor.
    """
    lo, hi = min(low, high), max(low, high)

    def apply(x, gen):
        s = lo + (hi - lo) * float(torch.rand(1, generator=gen).item())
        h, w = max(8, round(x.shape[2] * s)), max(8, round(x.shape[3] * s))
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

    return Transform(f"scale({lo:g}..{hi:g})", "input", apply)


@node("transform.rotate")
def rotate(degrees: Annotated[float, Range(0, 180)] = 5.0) -> Transform:
    """Rotate the picture by a random angle before each step.

    Args:
        degrees: the largest angle either way.
    """
    def apply(x, gen):
        a = math.radians(degrees * (2 * float(torch.rand(1, generator=gen).item()) - 1))
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                             dtype=x.dtype, device=x.device).unsqueeze(0).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    return Transform(f"rotate({degrees:g})", "input", apply)


@node("transform.blur")
def blur(sigma: Annotated[float, Range(0, 20)] = 0.5, target: Literal["gradient", "image"] = "gradient",
         every: Annotated[int, Range(1, 1000)] = 1) -> Transform:
    """Gaussian smoothing of the gradient (or of the picture) between steps.

    Smoothing suppresses the high-frequency patterns a network responds to most, so larger,
    more natural structures grow (Yosinski et al. 2015; blur between steps in seed 001).

    Args:
        sigma: standard deviation of the Gaussian, in pixels.
        target: smooth the gradient before each step, or the picture after it.
        every: apply it every this many steps.
    """
    return Transform(f"blur({sigma:g}, {target})", target, lambda x, gen: gaussian_blur(x, sigma), every)
