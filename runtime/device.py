"""Device policy: the only place that decides where tensors run, and how.

CUDA when present, else Apple's MPS, else the CPU; `--device` (or the
`device` argument of the API) overrides. Nodes receive the choice through
their Context and never pick a device themselves.

On the CPU the runtime also tunes the C allocator (`keep_cpu_memory`): a
dream step allocates and frees the same hundreds of megabytes of
activations every step, and by default glibc gives large blocks their own
mmap and hands freed heap memory back as soon as a few megabytes of it are
free, so the kernel maps (and zeroes) fresh pages on every step. That
page-faulting was more than half of a MobileNetV2 DeepDream step on a
1-megapixel picture. With blocks up to 32 MB kept in the heap and up to
1 GB of freed memory kept for reuse, it mostly goes away; blocks larger
than that (whole big pictures) are still mapped and returned one by one, so
the peak memory of a big tiled print hardly grows.
"""
from __future__ import annotations

import ctypes
import platform
import re
import sys

import torch

from dreamnodes.errors import UsageError, printable
from dreamnodes.settings import setting


#: the devices `--device` names: cpu, cuda, cuda:N, mps, auto
DEVICE_NAMES = re.compile(r"cpu|cuda(:[0-9]{1,4})?|mps|auto")


def check_device_name(name: str | None) -> str:
    """`name` (None: auto) if it is one of the devices dreamnodes runs on, else a UsageError. Checked
    by name, before torch sees it: torch also accepts 'meta', 'xla', 'cpu:3' and more, none of which
    a run can use."""
    if name is None:
        return "auto"
    if not isinstance(name, str) or not DEVICE_NAMES.fullmatch(name):
        raise UsageError(f"unknown device {printable(repr(name))}; use cpu, cuda, cuda:N, mps or auto")
    return name


def choose_device(name: str | None = None) -> torch.device:
    name = check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps was asked for, but MPS is not available here; use --device cpu")
    return dev


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # blocks up to this size come from the heap (glibc's largest allowed value)
_TRIM_THRESHOLD = 1 << 30  # free memory kept at the top of the heap before it goes back to the system
_tuned: bool | None = None


def keep_cpu_memory() -> bool:
    """Make glibc reuse freed tensor memory instead of mapping fresh pages for each allocation.

    Idempotent and process-wide; a no-op (False) outside glibc, or when DREAMNODES_CPU_ALLOCATOR
    is set to `system`. Returns whether the tuning is in effect.
    """
    global _tuned
    if _tuned is None:
        _tuned = False
        if setting("DREAMNODES_CPU_ALLOCATOR") == "system":
            return False
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                _tuned = (bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
                          and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)))
            except (OSError, AttributeError):
                _tuned = False
    return _tuned


def deterministic_mode(on: bool):
    """Put torch in deterministic mode (`--deterministic`) for one run; returns the function that puts
    back what was there before (nothing to do when `on` is False).

    Deterministic mode is: one thread (a sum split over N threads adds in another order, so thread
    counts change the last bits, and DeepDream's feedback amplifies them into visible differences);
    torch's deterministic algorithms (an error, not a silently different picture, from an operation
    that has none); on CUDA, cuDNN's deterministic algorithms without autotuning. oneDNN stays on:
    turning it off (ATen's reference convolutions) made the default dream 6-8x slower and no
    more reproducible in bench/deterministic.py (one thread gives the same bits with oneDNN capped
    at AVX2 as at AVX-512, with it on or off; both differ without SIMD). What is and is not
    reproducible is in the README (Reproducible pictures).
    """
    if not on:
        return lambda: None
    import os

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False

    def restore() -> None:
        threads, det, warn_only, cudnn_det, bench = before
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_det, bench

    return restore
