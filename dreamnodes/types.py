"""The socket vocabulary: the real Python types that flow along edges.

A node input annotated with one of these classes is a socket (wired from
another node); anything else is a parameter. A socket accepts an output whose
type is the same class or a subclass. Value types (Image, Latent, Frames) can
turn themselves into plain tensors and back, which is what lets the runtime
keep them in its disk cache; spec types (Objective, Transform, Prior,
Parameterization) are per-step callables a render node applies.

Conventions: images are float32 tensors shaped [N, 3, H, W] with values in
[0, 1], kept on the CPU between nodes (render nodes move them to the run's
device and back), so a cached image is the same wherever it was made.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

from .lazy import torch


class Socket:
    """Base of every socket type. `color` is the editor's socket colour."""

    color: ClassVar[str] = "#999999"
    #: True when `to_state`/`from_state` exist and results may be cached on disk.
    disk_cacheable: ClassVar[bool] = False

    @classmethod
    def socket_name(cls) -> str:
        return cls.__name__


@dataclass(frozen=True, eq=False)
class Image(Socket):
    """A batch of RGB pictures: `pixels` is [N, 3, H, W] float32 in [0, 1]."""

    pixels: torch.Tensor
    color: ClassVar[str] = "#e0a030"
    disk_cacheable: ClassVar[bool] = True

    def __post_init__(self):
        p = self.pixels
        if p.dim() != 4 or p.shape[1] != 3:
            raise ValueError(f"Image pixels must be [N, 3, H, W], got {tuple(p.shape)}")

    @property
    def batch(self) -> int:
        return self.pixels.shape[0]

    @property
    def height(self) -> int:
        return self.pixels.shape[2]

    @property
    def width(self) -> int:
        return self.pixels.shape[3]

    def to_state(self) -> dict[str, Any]:
        return {"pixels": self.pixels}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Image":
        return cls(state["pixels"])

    def to_uint8(self, index: int = 0):
        """One picture as an H x W x 3 uint8 numpy array (rounded, not truncated)."""
        p = self.pixels[index].detach().to("cpu", torch.float32).clamp(0, 1)
        return (p * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


@dataclass(frozen=True, eq=False)
class Frames(Socket):
    """A sequence of pictures for a video: `pixels` is [T, 3, H, W] in [0, 1]."""

    pixels: torch.Tensor
    fps: float = 12.0
    color: ClassVar[str] = "#d06090"
    disk_cacheable: ClassVar[bool] = True

    def to_state(self) -> dict[str, Any]:
        return {"pixels": self.pixels, "fps": torch.tensor(float(self.fps))}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Frames":
        return cls(state["pixels"], float(state["fps"]))


@dataclass(frozen=True, eq=False)
class Latent(Socket):
    """Points in a generator's latent space: `z` is [N, nz]."""

    z: torch.Tensor
    color: ClassVar[str] = "#60c0c0"
    disk_cacheable: ClassVar[bool] = True

    def to_state(self) -> dict[str, Any]:
        return {"z": self.z}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Latent":
        return cls(state["z"])


@dataclass(frozen=True, eq=False)
class Model(Socket):
    """A frozen classifier in eval mode, with what is needed to feed it.

    `mean`/`std` are the input normalization its weights expect; `categories`
    the class names of its logits when known; `weights_id` names the weights
    (a hash for files) for provenance.
    """

    module: torch.nn.Module
    arch: str
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    categories: tuple[str, ...] = ()
    weights_id: str = ""
    color: ClassVar[str] = "#7080e0"

    def layer_paths(self) -> list[str]:
        return [name for name, _ in self.module.named_modules() if name]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclass(frozen=True, eq=False)
class Generator(Socket):
    """An image generator: `module` maps latents [N, nz] to images in [-1, 1]."""

    module: torch.nn.Module
    nz: int
    size: int
    weights_id: str = ""
    color: ClassVar[str] = "#50b070"


class Objective(Socket):
    """Something to maximise, computed from the activations of `layers`.

    `fn` receives {layer path: activation} and returns one score per batch
    item ([N]). Objectives form an algebra: `a + b`, `a - b`, `2 * a`, `-a`.
    `positional`: the score depends on where things are in the whole picture
    (a neuron at x, y; a class in a region), so it cannot be computed tile by tile.
    """

    color: ClassVar[str] = "#e06060"

    def __init__(self, model: Model, layers: Iterable[str],
                 fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], name: str, positional: bool = False):
        self.model = model
        self.layers = tuple(dict.fromkeys(layers))
        self.fn = fn
        self.name = name
        self.positional = positional

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def _combine(self, other: "Objective", op, sym: str) -> "Objective":
        if other.model is not self.model:
            raise ValueError("objectives over different models cannot be combined")
        return Objective(self.model, self.layers + other.layers,
                         lambda acts: op(self.fn(acts), other.fn(acts)),
                         f"({self.name} {sym} {other.name})", self.positional or other.positional)

    def __add__(self, other: "Objective") -> "Objective":
        return self._combine(other, lambda a, b: a + b, "+")

    def __sub__(self, other: "Objective") -> "Objective":
        return self._combine(other, lambda a, b: a - b, "-")

    def __mul__(self, k: float) -> "Objective":
        k = float(k)
        return Objective(self.model, self.layers, lambda acts: k * self.fn(acts), f"{k:g}*{self.name}",
                         self.positional)

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return self * -1.0


@dataclass(frozen=True, eq=False)
class Transform(Socket):
    """A per-step operation a render node applies.

    `stage` says where: "input" transforms are differentiable and applied to
    the picture on its way into the network (jitter, scale, rotate: gradients
    flow back through them); "image" and "gradient" transforms are applied to
    the picture or its gradient after a step (blur), every `every` steps.
    `fn(x, gen)` draws its randomness from `gen` only, so runs replay.
    """

    name: str
    stage: str
    fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    every: int = 1
    color: ClassVar[str] = "#b080d0"

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.fn(x, gen)


@dataclass(frozen=True, eq=False)
class Prior(Socket):
    """A penalty on the picture: `fn(x)` returns one value per batch item."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    weight: float = 1.0
    color: ClassVar[str] = "#c0c060"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * self.fn(x)


@dataclass(frozen=True, eq=False)
class Parameterization(Socket):
    """How a picture is represented while it is optimised.

    `make(batch, height, width, device, gen)` returns `(params, image_fn)`:
    the tensors to optimise and a function that turns them into pixels in
    [0, 1]; the render loop never knows if it is optimising pixels, a
    spectrum or a generator's latent.
    """

    name: str
    make: Callable[..., tuple[list[torch.Tensor], Callable[[], torch.Tensor]]]
    color: ClassVar[str] = "#80a0a0"


SOCKET_TYPES: tuple[type[Socket], ...] = (
    Image, Frames, Latent, Model, Generator, Objective, Transform, Prior, Parameterization,
)
