"""Looking inside a module as it runs: every layer's output shape, one layer's activations.

Forward hooks, always removed again (even when the pass fails), so a cached, shared module
is never left changed. Used for `dreamnodes layers`, the validator's layer checks, the
generator's layer table and gan.find_filters.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def output_shapes(module: nn.Module, probe: torch.Tensor) -> tuple[list[tuple[str, str, tuple]], torch.Tensor]:
    """Run `probe` once: ([(path, module type, output shape)] of every module that put out a
    tensor, in definition order; the module's output)."""
    shapes: dict[str, tuple] = {}
    modules = dict(module.named_modules())
    handles = [m.register_forward_hook(lambda _m, _i, out, p=p: shapes.__setitem__(p, tuple(out.shape))
                                       if isinstance(out, torch.Tensor) else None)
               for p, m in modules.items() if p]
    try:
        with torch.no_grad():
            out = module(probe)
    finally:
        for h in handles:
            h.remove()
    return [(p, type(modules[p]).__name__, shapes[p]) for p in modules if p in shapes], out


def layer_outputs(module: nn.Module, inputs: torch.Tensor, layer: str, batch_size: int = 64) -> torch.Tensor:
    """The output of module path `layer` for `inputs`, run in batches: [N, ...] float32 on the CPU."""
    target = dict(module.named_modules())[layer]
    dev = device_of(module)
    got: list[torch.Tensor] = []
    handle = target.register_forward_hook(lambda _m, _i, out: got.append(out.detach().to("cpu", torch.float32)))
    try:
        with torch.no_grad():
            for i in range(0, inputs.shape[0], batch_size):
                module(inputs[i:i + batch_size].to(dev, torch.float32))
    finally:
        handle.remove()
    return torch.cat(got)
