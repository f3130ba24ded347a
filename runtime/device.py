"""Device policy: the only place that decides where tensors run.

CUDA when present, else Apple's MPS, else the CPU; `--device` (or the
`device` argument of the API) overrides. Nodes receive the choice through
their Context and never pick a device themselves.
"""
from __future__ import annotations

import torch

from dreamnodes.errors import UsageError


def choose_device(name: str | None = None) -> torch.device:
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps was asked for, but MPS is not available here; use --device cpu")
    return dev
