"""Running a frozen classifier as far as an objective needs, on a faster copy of it.

`capture(model, x, paths)` returns the activations at `paths`, stopping the forward pass
as soon as the deepest of them has run, so a mid-layer objective never pays for the deeper
half of the network. The pass runs on a checked copy of the model with every BatchNorm that
follows a convolution folded into it, and its tensors channels-last (`_Fast`). This module
loads nothing and picks no device.
"""
from __future__ import annotations

import copy
import weakref

import torch

from dreamnodes.types import Model

from .hooks import output_shapes

LOGITS = "logits"  # the layer path of a classifier's output


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the needed layers ran."""


class _Fast:
    """A frozen model made faster to run, with the same layer paths and outputs.

    Every convolution whose output only feeds a BatchNorm has the (frozen, affine) BatchNorm
    folded into its weights and bias in a copy, and the BatchNorm becomes an identity: one pass
    over each activation instead of two, forward and backward. The folded convolutions' own
    outputs are no longer the raw convolution, so a capture that asks for one of them uses the
    original module. Without BatchNorms there is no copy (`module` is None: the model runs as
    it is; holding it here would keep it alive forever, as it is this cache's key).
    """

    def __init__(self, module: torch.nn.Module):
        fast, self.folded = _folded_copy(module)
        self.module = None if fast is module else fast


_FAST: "weakref.WeakKeyDictionary[torch.nn.Module, _Fast]" = weakref.WeakKeyDictionary()


def _fast(module: torch.nn.Module) -> _Fast:
    fast = _FAST.get(module)
    if fast is None:
        fast = _FAST[module] = _Fast(module)
    return fast


def _conv_bn_pairs(module: torch.nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """(conv path, batchnorm path) pairs where the BatchNorm's input is exactly the conv's output.

    Found by running the probe and comparing tensors, so it follows the real data flow of any
    architecture rather than guessing from attribute names.
    """
    outputs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    handles = []
    for path, m in module.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(
                lambda _m, _i, out, path=path: outputs.__setitem__(id(out), path)))
        elif isinstance(m, torch.nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(
                lambda _m, inp, path=path: pairs.append((outputs[id(inp[0])], path))
                if id(inp[0]) in outputs else None))
    keep = []  # hold the outputs so that ids are not reused during the pass
    handles.append(torch.nn.modules.module.register_module_forward_hook(lambda _m, _i, out: keep.append(out)))
    try:
        with torch.no_grad():
            module(probe)
    finally:
        for h in handles:
            h.remove()
    seen: dict[str, int] = {}
    for conv, _bn in pairs:
        seen[conv] = seen.get(conv, 0) + 1
    return [(c, b) for c, b in pairs if seen[c] == 1]  # a conv read by one BatchNorm only


def _folded_copy(module: torch.nn.Module) -> tuple[torch.nn.Module, frozenset[str]]:
    """A deep copy of a frozen module with conv+BatchNorm pairs folded; checked against the original."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    dev = next(module.parameters(), torch.zeros(())).device
    # small enough to be quick, large enough for every torchvision classifier (inception_v3: 75 px)
    probe = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)).to(dev)
    try:
        pairs = _conv_bn_pairs(module, probe)
    except Exception:  # an architecture that cannot run the probe: leave it as it is
        return module, frozenset()
    if not pairs:
        return module, frozenset()
    fast = copy.deepcopy(module)
    for conv_path, bn_path in pairs:
        conv, bn = fast.get_submodule(conv_path), fast.get_submodule(bn_path)
        _set_submodule(fast, conv_path, fuse_conv_bn_eval(conv, bn).requires_grad_(False))
        _set_submodule(fast, bn_path, _FoldedBatchNorm())
    with torch.no_grad():
        want, got = module(probe), fast(probe)
    if not torch.allclose(want, got, rtol=1e-3, atol=1e-3 * float(want.abs().max())):
        return module, frozenset()  # the data flow was not what the probe showed
    return fast, frozenset(c for c, _ in pairs)


class _FoldedBatchNorm(torch.nn.Identity):
    """Where a BatchNorm was; its affine map now lives in the convolution before it."""


def _set_submodule(root: torch.nn.Module, path: str, new: torch.nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def module_for(model: Model, paths: tuple[str, ...]) -> torch.nn.Module:
    """The module `capture` runs for these layer paths: the fast copy when it can, else the model's."""
    fast = _fast(model.module)
    return fast.module if fast.module is not None and fast.folded.isdisjoint(paths) else model.module


def capture(model: Model, x: torch.Tensor, paths: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Run the (normalized) picture x through the model only as far as needed.

    Returns {path: activation}. The forward pass stops as soon as every
    requested layer has produced its output, so a mid-layer objective never
    pays for the deeper half of the network. `logits` is the model's output.
    The pass runs on the model's fast copy (see `_Fast`) unless a requested
    layer is a convolution whose BatchNorm was folded into it.
    """
    acts: dict[str, torch.Tensor] = {}
    wanted = [p for p in paths if p != LOGITS]
    module = module_for(model, paths)
    modules = dict(module.named_modules())
    x = x.contiguous(memory_format=torch.channels_last)
    handles = []

    def hook_for(path):
        def hook(_m, _inp, out):
            acts[path] = out
            if LOGITS not in paths and len(acts) == len(wanted):
                raise _Stop

        return hook

    for p in wanted:
        handles.append(modules[p].register_forward_hook(hook_for(p)))
    try:
        out = module(model.normalize(x))
        if LOGITS in paths:
            acts[LOGITS] = out
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return acts


def layer_shapes(model: Model, size: int = 224, device: torch.device | None = None) -> list[tuple[str, str, tuple]]:
    """(path, module type, output shape) of every module, for a size x size input."""
    dev = device or next(model.module.parameters()).device
    rows, out = output_shapes(model.module, torch.zeros(1, 3, size, size, device=dev))
    return rows + [(LOGITS, "output", tuple(out.shape))]
