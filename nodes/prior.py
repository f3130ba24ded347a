"""Prior nodes: penalties that keep an optimised picture looking like a picture.

A `Prior` maps pixels [N, 3, H, W] in [0, 1] to one penalty per picture
([N]); a render node adds `weight * penalty` to the loss it minimises, next
to the negated objective. Without priors, maximising a class logit yields
high-frequency patterns that fool the network but show nothing to a person
(Mahendran & Vedaldi, "Understanding Deep Image Representations by
Inverting Them", CVPR 2015; Yosinski et al., "Understanding Neural Networks
Through Deep Visualization", 2015).

Blurring between steps, the other classic regulariser, is a transform
(`transform.blur` with target 'image' and `every`), not a penalty.
"""
from __future__ import annotations

from typing import Annotated, Optional

import torch
import torch.nn.functional as F

from dreamnodes import Context, NodeError, Range, node
from dreamnodes.types import Prior


def l2_penalty(x: torch.Tensor, center: float) -> torch.Tensor:
    """Mean squared distance of the pixels from `center`: [N, 3, H, W] -> [N]."""
    return (x - center).pow(2).flatten(1).mean(1)


def tv_penalty(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean of (dx^2 + dy^2)^(beta/2) over the picture: [N, 3, H, W] -> [N].

    Isotropic total variation for beta = 1; beta = 2 is the squared-gradient (Sobolev) norm.
    """
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]  # [N, 3, H-1, W-1]
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    g2 = dx.pow(2) + dy.pow(2)
    if beta == 2:
        return g2.flatten(1).mean(1)
    return (g2 + 1e-8).pow(beta / 2).flatten(1).mean(1)


def patch_deviation(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Squared distance of every patch x patch x 3 patch from its own per-channel mean.

    [N, 3, H, W] -> [N, H-patch+1, W-patch+1], one value per patch position (stride 1). Uses box
    sums (sum of squares minus square of sum), so no patch is ever copied out.
    """
    n = patch * patch
    s1 = F.avg_pool2d(x, patch, stride=1) * n  # [N, 3, H', W']: per-channel sums
    s2 = F.avg_pool2d(x * x, patch, stride=1) * n
    return (s2 - s1 * s1 / n).clamp_min(0).sum(1)


def student_t_penalty(x: torch.Tensor, dof: float, scale: float, patch: int) -> torch.Tensor:
    """Student-t negative log-likelihood of all patches, per patch dimension: [N, 3, H, W] -> [N].

    Each patch p (d = 3 * patch^2 values, centred on its per-channel mean) costs
    (dof + d) / 2 * log(1 + |p - mean(p)|^2 / (dof * scale^2)), the multivariate Student-t's
    negative log density up to a constant; the penalty is its mean over all patch positions,
    divided by d.
    """
    d = 3 * patch * patch
    if x.shape[2] < patch or x.shape[3] < patch:
        return x.new_zeros(x.shape[0])
    r2 = patch_deviation(x, patch)  # [N, H', W']
    nll = 0.5 * (dof + d) * torch.log1p(r2 / (dof * scale * scale))
    return nll.flatten(1).mean(1) / d


@node("prior.l2")
def l2(weight: Annotated[float, Range(0, None)] = 1.0,
       center: Annotated[float, Range(0, 1)] = 0.5) -> Prior:
    """Penalise pixels far from mid grey (an L2 / Gaussian prior on pixel values).

    Keeps the picture from drifting into saturated extremes. Simonyan, Vedaldi, Zisserman,
    "Deep Inside Convolutional Networks", 2014.

    Args:
        weight: how strongly the penalty counts against the objective.
        center: the pixel value that costs nothing.
    """
    return Prior(f"l2({center:g})", lambda x: l2_penalty(x, center), weight)


@node("prior.tv")
def tv(weight: Annotated[float, Range(0, None)] = 1.0,
       beta: Annotated[float, Range(0.5, 4)] = 1.0) -> Prior:
    """Total variation: penalise differences between neighbouring pixels.

    Favours piecewise-smooth pictures over pixel noise. Mahendran & Vedaldi, "Understanding
    Deep Image Representations by Inverting Them", CVPR 2015 (the TV^beta regulariser).

    Args:
        weight: how strongly the penalty counts against the objective.
        beta: exponent on the gradient magnitude (1: total variation; 2: squared gradients).
    """
    return Prior(f"tv({beta:g})", lambda x: tv_penalty(x, beta), weight)


@node("prior.student_t")
def student_t(weight: Annotated[float, Range(0, None)] = 1.0,
              dof: Annotated[float, Range(0.01, 1000)] = 3.0,
              scale: Annotated[float, Range(1e-4, 10)] = 0.05,
              patch: Annotated[int, Range(2, 64)] = 8) -> Prior:
    """A Student-t prior on all patch x patch x 3 patches of the picture.

    Natural images are heavy-tailed: most patches are smooth, a few hold strong edges. A
    Student-t density on the patches (centred on each patch's own mean colour) penalises faint
    noise everywhere but lets strong edges through almost for free, as a Gaussian would not.
    The prior of 317070's "Interactive Deep Neural Net Hallucinations" (2015) (seed 001).

    Args:
        weight: how strongly the penalty counts against the objective.
        dof: degrees of freedom (small: heavier tails, more tolerant of edges).
        scale: the scale of a pixel's deviation from its patch mean that counts as typical.
        patch: side of the square patches, in pixels.
    """
    return Prior(f"student_t(dof={dof:g}, scale={scale:g}, {patch}px)",
                 lambda x: student_t_penalty(x, dof, scale, patch), weight)


def downscale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Antialiased bilinear resize of [N, 3, H, W] by `factor` (<= 1), differentiable."""
    if factor == 1.0:
        return x
    h, w = max(1, round(x.shape[2] * factor)), max(1, round(x.shape[3] * factor))
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


@node("prior.multiscale")
def multiscale(prior: Prior, ctx: Context, scales: Optional[list[float]] = None,
               weights: Optional[list[float]] = None,
               weight: Annotated[float, Range(0, None)] = 1.0) -> Prior:
    """The same prior applied to the picture at several scales (a pyramid).

    A patch prior at full size only sees detail; on the downscaled picture the same patches
    cover large regions, so big objects stay whole instead of breaking into many small ones
    (317070, "Interactive Deep Neural Net Hallucinations", 2015, seed 001).

    Args:
        prior: the prior to apply at every scale (its own weight still counts).
        scales: the picture sizes to apply it at, as fractions of the full size (default 1, 1/2, 1/4).
        weights: a weight per scale (default 1 each).
        weight: how strongly the sum counts against the objective.
    """
    scales = list(scales) if scales else [1.0, 0.5, 0.25]
    if any(not 0 < s <= 1 for s in scales):
        raise NodeError(f"scales must be fractions in (0, 1] of the picture size; got {scales}")
    weights = list(weights) if weights else [1.0] * len(scales)
    if len(weights) != len(scales):
        raise NodeError(f"give one weight per scale: {len(scales)} scales but {len(weights)} weights")

    def fn(x):
        return sum(w * prior(downscale(x, s)) for s, w in zip(scales, weights))

    name = f"multiscale({prior.name}, {'/'.join(f'{s:g}' for s in scales)})"
    return Prior(name, fn, weight)
