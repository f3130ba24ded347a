"""Parameterization nodes: how a picture is represented while it is optimised.

A `Parameterization` is a factory: `make(batch, height, width, device, gen)`
returns `(params, image_fn)`, the tensors the optimiser changes and a
function turning them into pixels [N, 3, H, W] in [0, 1]. The render loop
never knows whether it optimises pixels, a Fourier spectrum or a generator's
latent (`param.latent`, the Deep Generator Network prior): a generator plugs in with

    def make(batch, height, width, device, gen):
        z = torch.randn(batch, nz, generator=gen).to(device).requires_grad_(True)
        return [z], ImageFunction(lambda: resize((G(z) + 1) / 2, height, width))

`image_fn` may be an `ImageFunction` with an `assign(pixels)` method that
moves the parameters so that they represent given pixels; render nodes use
it for transforms applied to the picture between steps (blur every N
steps). Representations that cannot be inverted (latents) leave it out.

The FFT parameterization and the colour decorrelation follow Olah,
Mordvintsev, Schubert, "Feature Visualization" (Distill, 2017) and
Mordvintsev et al., "Differentiable Image Parameterizations" (Distill,
2018): optimising a 1/f-scaled spectrum in a decorrelated colour space
equalises the learning rate across frequencies and colours, so large, smooth
structures grow as fast as fine detail.

This module does not run networks or pick devices: the render node passes
the device and the random generator in.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import torch
import torch.nn.functional as F

from dreamnodes import NodeError, Range, node
from dreamnodes.types import Generator, Image, Latent, Parameterization

from .kernel.hooks import device_of

# Square root of the colour correlation of ImageNet pictures (from Lucid), with columns scaled to
# unit norm at most: decorrelated coordinates -> RGB.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                            [0.27, 0.00, -0.05],
                            [0.27, -0.09, 0.03]])
COLOR_MATRIX = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
EPS = 1e-4  # pixels are kept inside (EPS, 1 - EPS) when they are turned back into parameters


@dataclass(frozen=True)
class ImageFunction:
    """The picture a parameterization currently represents.

    `render()` returns [N, 3, H, W] in [0, 1], differentiable with respect to the parameters.
    `assign(pixels)`, when present, sets the parameters (in place, without gradient) so that
    `render()` gives `pixels` back. `penalty()`, when present, is the penalty [N] the
    parameterization itself applies through its parameters' gradient (a latent's L2 prior), so
    that progress can show it with the priors'.
    """

    render: Callable[[], torch.Tensor]
    assign: Optional[Callable[[torch.Tensor], None]] = None
    penalty: Optional[Callable[[], torch.Tensor]] = None

    def __call__(self) -> torch.Tensor:
        return self.render()


def decorrelate(x: torch.Tensor) -> torch.Tensor:
    """Decorrelated colour coordinates [N, 3, H, W] -> RGB coordinates (before the sigmoid)."""
    return torch.einsum("dc,nchw->ndhw", COLOR_MATRIX.to(x.device, x.dtype), x)


def correlate(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `decorrelate`."""
    return torch.einsum("dc,nchw->ndhw", torch.linalg.inv(COLOR_MATRIX).to(x.device, x.dtype), x)


def logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(EPS, 1 - EPS)
    return torch.log(p) - torch.log1p(-p)


def spectrum_scale(height: int, width: int, decay: float) -> torch.Tensor:
    """1 / f**decay for the frequencies of an rfft2 of height x width -> [H, W//2+1].

    The lowest frequency is clamped to one cycle per picture, so the DC term gets the
    same scale as the slowest wave instead of an infinite one.
    """
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    f = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / f.clamp_min(1.0 / max(height, width)) ** decay


def _initial_pixels(image: Image, batch: int, height: int, width: int, device) -> torch.Tensor:
    p = image.pixels
    if p.shape[2:] != (height, width):
        p = F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False,
                          antialias=True)
    idx = torch.arange(batch) % p.shape[0]
    return p[idx].to(device, torch.float32).clamp(0, 1)  # a new tensor: the input stays untouched


def pixel_image(batch: int, height: int, width: int, device: torch.device, gen: torch.Generator, *,
                sd: float = 0.01, decorrelated: bool = True,
                init: Optional[Image] = None) -> tuple[list[torch.Tensor], ImageFunction]:
    """Pixels through a sigmoid (optionally in decorrelated colour): [N, 3, H, W] parameters."""
    to_rgb = decorrelate if decorrelated else (lambda t: t)
    from_rgb = correlate if decorrelated else (lambda t: t)
    raw = sd * torch.randn(batch, 3, height, width, generator=gen)
    raw = raw.to(device)
    if init is not None:
        raw = raw + from_rgb(logit(_initial_pixels(init, batch, height, width, device)))
    raw.requires_grad_(True)

    def render():
        return torch.sigmoid(to_rgb(raw))

    def assign(pixels):
        with torch.no_grad():
            raw.copy_(from_rgb(logit(pixels.to(raw.device, raw.dtype))))

    return [raw], ImageFunction(render, assign)


def fft_image(batch: int, height: int, width: int, device: torch.device, gen: torch.Generator, *,
              sd: float = 0.01, decay: float = 1.0, decorrelated: bool = True,
              init: Optional[Image] = None) -> tuple[list[torch.Tensor], ImageFunction]:
    """A 1/f-scaled Fourier spectrum: parameters [N, 3, H, W//2+1, 2] (real, imaginary)."""
    to_rgb = decorrelate if decorrelated else (lambda t: t)
    from_rgb = correlate if decorrelated else (lambda t: t)
    scale = spectrum_scale(height, width, decay).to(device)[None, None, :, :, None]  # [1, 1, H, W', 1]
    spec = sd * torch.randn(batch, 3, height, width // 2 + 1, 2, generator=gen)
    spec = spec.to(device)
    # Lucid's constant: the spectrum is divided by 4 on its way to pixels, which keeps the
    # sigmoid away from saturation at the start
    magic = 4.0

    def to_spectrum(pixels):
        z = torch.fft.rfft2(from_rgb(logit(pixels)) * magic, norm="ortho")
        return torch.view_as_real(z) / scale

    if init is not None:
        spec = spec + to_spectrum(_initial_pixels(init, batch, height, width, device))
    spec.requires_grad_(True)

    def render():
        z = torch.view_as_complex((scale * spec).contiguous())
        x = torch.fft.irfft2(z, s=(height, width), norm="ortho") / magic  # [N, 3, H, W]
        return torch.sigmoid(to_rgb(x))

    def assign(pixels):
        with torch.no_grad():
            spec.copy_(to_spectrum(pixels.to(spec.device, spec.dtype)))

    return [spec], ImageFunction(render, assign)


@node("param.pixels")
def pixels(init: Optional[Image] = None, sd: Annotated[float, Range(0, 10)] = 0.01,
           decorrelate: bool = True) -> Parameterization:
    """Optimise the pixels themselves (through a sigmoid, so they stay in [0, 1]).

    The plainest representation: each step changes every pixel independently, which favours
    high-frequency patterns; pair it with priors (tv, student_t) or blur. With `init`, the
    optimisation starts from a picture (its pixels plus a little noise) instead of grey.
    Olah et al., "Feature Visualization", Distill 2017.

    Args:
        init: a picture to start from (resized to the render size; a batch is cycled).
        sd: standard deviation of the starting noise, before the sigmoid.
        decorrelate: optimise in ImageNet's decorrelated colour space rather than RGB.
    """
    def make(batch, height, width, device, gen):
        return pixel_image(batch, height, width, device, gen, sd=sd, decorrelated=decorrelate, init=init)

    return Parameterization(f"pixels(sd={sd:g}{', decorrelated' if decorrelate else ''})", make)


@node("param.fft")
def fft(init: Optional[Image] = None, sd: Annotated[float, Range(0, 10)] = 0.01,
        decay: Annotated[float, Range(0, 4)] = 1.0, decorrelate: bool = True) -> Parameterization:
    """Optimise a Fourier spectrum scaled by 1/f, in decorrelated colour (Lucid's default).

    Scaling each frequency by 1/f**decay makes a step change low and high frequencies alike, so
    pictures grow large, coherent shapes rather than pixel noise; decorrelated colour does the
    same for colour. Mordvintsev et al., "Differentiable Image Parameterizations", Distill 2018.

    Args:
        init: a picture to start from (resized to the render size; a batch is cycled).
        sd: standard deviation of the starting spectrum.
        decay: the exponent of the 1/f scaling (0: plain Fourier basis; larger: smoother pictures).
        decorrelate: optimise in ImageNet's decorrelated colour space rather than RGB.
    """
    def make(batch, height, width, device, gen):
        return fft_image(batch, height, width, device, gen, sd=sd, decay=decay, decorrelated=decorrelate,
                         init=init)

    return Parameterization(f"fft(decay={decay:g}{', decorrelated' if decorrelate else ''})", make)


# ---------------------------------------------------------------------------------------------
# DGN: optimising the latent of a generator


def latent_image(generator: Generator, batch: int, height: int, width: int, device: torch.device,
                 gen: torch.Generator, *, init: Optional[Latent] = None, sd: float = 1.0,
                 l2: float = 0.0, clip: Optional[float] = None) -> tuple[list[torch.Tensor], ImageFunction]:
    """The picture as G(z): parameters z [N, nz]; pictures [N, 3, height, width] in [0, 1].

    `l2` adds l2 * |z|^2 per picture to what is minimised (through z's gradient, so any render
    loop applies it); `clip` keeps every entry of z within +-clip (applied before each
    generation: a projected gradient step). Starting points: `init` (cycled to the batch) or
    N(0, sd^2) from `gen`.
    """
    module = generator.module
    if device_of(module) != torch.device(device):
        module = copy.deepcopy(module).to(device)  # never move the (cached, shared) upstream module
    if init is not None:
        idx = torch.arange(batch) % init.z.shape[0]
        z0 = init.z[idx].to(torch.float32).clone()
    else:
        z0 = sd * torch.randn(batch, generator.nz, generator=gen)
    z = z0.to(device).requires_grad_(True)
    if l2 > 0:
        z.register_hook(lambda g: g + 2 * l2 * z.detach())

    def render() -> torch.Tensor:
        if clip is not None:
            with torch.no_grad():
                z.clamp_(-clip, clip)
        x = (module(z) + 1) / 2  # [N, 3, S, S] in [0, 1]
        if x.shape[2:] != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
        return x.clamp(0, 1)

    return [z], ImageFunction(render, penalty=lambda: l2 * z.detach().pow(2).sum(1))


@node("param.latent")
def latent(generator: Generator, init: Optional[Latent] = None,
           l2: Annotated[float, Range(0, 100)] = 0.01,
           clip: Optional[Annotated[float, Range(0.01, 100)]] = 3.0,
           sd: Annotated[float, Range(0, 10)] = 1.0) -> Parameterization:
    """Optimise the latent of a generator instead of pixels: a Deep Generator Network prior.

    Every picture the optimiser tries is one the generator can draw, so maximising a
    classifier's class through this parameterization gives that class as the generator's kind
    of picture (a face wearing sunglasses, for the face generator) rather than an adversarial
    pattern. The latent is kept near the prior: an L2 penalty on z and a clip of every entry to
    +-clip (3 for a normal prior, 1 for a uniform one). The generator's pictures are resized to
    the render size. Nguyen, Dosovitskiy, Yosinski, Brox, Clune, "Synthesizing the preferred
    inputs for neurons in neural networks via deep generator networks", NIPS 2016.

    Args:
        generator: the generator (gan.load, gan.filter_dropout).
        init: latents to start from (cycled to the batch); null draws N(0, sd^2) from the render's seed.
        l2: weight of the penalty l2 * |z|^2 per picture.
        clip: keep every entry of z within +-clip (null: no clip).
        sd: standard deviation of the starting latents, when no init is wired.
    """
    if init is not None and init.z.shape[1] != generator.nz:
        raise NodeError(f"the init latents have size {init.z.shape[1]} but the generator takes {generator.nz}")

    def make(batch, height, width, device, gen):
        return latent_image(generator, batch, height, width, device, gen, init=init, sd=sd, l2=l2, clip=clip)

    return Parameterization(f"latent({generator.weights_id or 'generator'}, l2={l2:g}, clip={clip})", make)
