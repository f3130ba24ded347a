"""Resource limits: what a recipe may ask of the machine before anything is allocated.

A node's int parameter that spends a resource (a picture's side, its pixels, steps,
frames, a batch) is bounded by the kind's limit, and so are the sizes nodes derive from their
inputs (a model's weights declared by a checkpoint: `parameters`); `--limit KIND=N` raises or lowers the
bound for one run (a `Limits`). Validation checks every such parameter against them, and
each message names the flag that raises the bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LimitKind:
    """A resource a recipe can ask too much of; `default` bounds parameters whose Range has no upper end."""

    name: str
    unit: str
    default: int


#: the resources validation bounds before anything is allocated
LIMITS: dict[str, LimitKind] = {k.name: k for k in (
    LimitKind("side", "px on a side of a picture", 16384),
    LimitKind("pixels", "pixels at once (width x height x batch or frames)", 8192 * 8192),
    LimitKind("steps", "optimization steps", 100_000),
    LimitKind("frames", "frames", 10_000),
    LimitKind("batch", "pictures in a batch", 1024),
    # the weights of a model a checkpoint declares (classes, a latent's width, layers), counted on
    # the meta device before it is built: 10**9 (4 GB as float32) fits every torchvision classifier
    # (the largest, regnet_y_128gf, has 645M; VGG-16 138M) and the DCGAN generators
    LimitKind("parameters", "numbers in a model's weights (parameters and buffers)", 1_000_000_000),
)}
#: int parameters spend a resource by their name unless their Range says otherwise
LIMIT_BY_NAME = {"width": "side", "height": "side", "size": "side", "steps": "steps", "frames": "frames",
                  "batch": "batch", "batch_size": "batch"}


@dataclass(frozen=True)
class Limits:
    """Resource bounds for one run. `Limits({"side": 30000})` raises (or lowers) the bound on every
    parameter of that kind; kinds not given keep each parameter's own upper bound."""

    overrides: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        for kind, value in self.overrides.items():
            if kind not in LIMITS:
                raise ValueError(f"unknown limit '{kind}'; limits are {', '.join(LIMITS)}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {kind} must be a whole number >= 1, got {value!r}")

    def bound(self, kind: str, own: float | None) -> int:
        """The upper bound of a parameter of `kind` whose Range ends at `own`."""
        if kind in self.overrides:
            return self.overrides[kind]
        return int(own) if own is not None else LIMITS[kind].default

    def over(self, kind: str, value: int, own: float | None) -> str | None:
        """A problem in words if `value` exceeds the bound, naming the limit and the flag that raises it."""
        bound = self.bound(kind, own)
        if value <= bound:
            return None
        return (f"{value} is over the limit of {bound:,} {LIMITS[kind].unit}; make it smaller, or if this "
                f"machine can take it, run with --limit {kind}={value}")


DEFAULT_LIMITS = Limits()


