#!/usr/bin/env python
"""The cost of `--deterministic`, and what it makes reproducible; not a timed test.

    .venv/bin/python bench/deterministic.py [--size 192] [--repeats 3] [--no-check]

Timing: the default recipe (examples/deepdream.yaml: 4 octaves x 1.4, 10 steps, features.10) at
`--size` pixels runs through `Runner` with caching off, in the default mode with torch's threads
(every core) and on one thread, in deterministic mode, and in deterministic mode with oneDNN off
(ATen's reference convolutions: the variant deterministic mode does not use, measured to show why). Variants are interleaved and the best of
`--repeats` is kept; printed as seconds and ratios against the default mode measured in the same run.

Reproducibility (unless --no-check): the same dream (smaller) in fresh processes under
OMP_NUM_THREADS 1 and 2 and under other CPU instruction sets forced on this machine
(ATEN_CPU_CAPABILITY for ATen's kernels, MKL_ENABLE_INSTRUCTIONS and ONEDNN_MAX_CPU_ISA for the
libraries: what another CPU would dispatch to), each compared with the first, in both modes:
"identical" or the mean and largest difference in levels (of 255).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dreamnodes.graphs.sources import open_recipe
from dreamnodes.runtime import Runner

#: (name, environment) of the reproducibility check's processes
SETTINGS = (
    ("1 thread", {"OMP_NUM_THREADS": "1"}),
    ("2 threads", {"OMP_NUM_THREADS": "2"}),
    ("2 threads, AVX2 forced", {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                         "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    ("1 thread, no SIMD forced", {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default",
                                     "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}),
)


def dream_seconds(size: int, deterministic: bool, threads: int | None, onednn: bool = True) -> tuple[float, float]:
    """(wall seconds of the dream node, CPU seconds of the whole run)."""
    recipe = open_recipe(None)
    recipe.nodes["photo"].params["size"] = size
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    cpu = time.process_time()
    torch.backends.mkldnn.enabled = onednn
    try:
        result = Runner(use_cache=False, deterministic=deterministic).run(recipe, only=["dream"])
    finally:
        torch.set_num_threads(before)
        torch.backends.mkldnn.enabled = True
    return result.seconds["dream"], time.process_time() - cpu


def timing(size: int, repeats: int) -> None:
    n = torch.get_num_threads()
    variants = {f"default ({n} threads)": (False, None), "default (1 thread)": (False, 1),
                "--deterministic": (True, None), "--deterministic, no oneDNN": (True, None, False)}
    dream_seconds(64, False, None)  # load the weights, warm the allocator
    best = {k: (float("inf"), float("inf")) for k in variants}
    for _ in range(repeats):
        for name, how in variants.items():
            wall, cpu = dream_seconds(size, *how)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    base, base1 = best[f"default ({n} threads)"], best["default (1 thread)"]
    print(f"default recipe at {size} px, best of {repeats}, {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}; wall: the dream node, CPU: the whole run")
    print(f"{'mode':<26} {'wall s':>7} {'ratio':>6} {'vs 1 thread':>11} {'CPU s':>7} {'ratio':>6}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<26} {wall:7.2f} {wall / base[0]:6.2f} {wall / base1[0]:11.2f} {cpu:7.2f} {cpu / base[1]:6.2f}")


_CHILD = """
import sys, numpy as np
from dreamnodes.graphs.sources import open_recipe
from dreamnodes.runtime import Runner
r = open_recipe(None)
r.nodes["photo"].params["size"] = int(sys.argv[1])
res = Runner(use_cache=False, deterministic=sys.argv[2] == "1").run(r, only=["dream"])
np.save(sys.argv[3], (res.output("dream").pixels.clamp(0, 1) * 255).round().byte().numpy())
"""


def check(size: int, folder: Path) -> None:
    print(f"\nreproducibility, the default recipe at {size} px, each setting a fresh process:")
    for det in (False, True):
        first = None
        for i, (name, env) in enumerate(SETTINGS):
            out = folder / f"{int(det)}_{i}.npy"
            subprocess.run([sys.executable, "-c", _CHILD, str(size), str(int(det)), str(out)], check=True,
                           env={**os.environ, "DREAMNODES_OFFLINE": "1", **env})
            px = np.load(out).astype(np.int16)
            if first is None:
                first, how = px, "(the reference)"
            else:
                d = np.abs(px - first)
                how = "identical" if not d.any() else f"mean difference {d.mean():.2f} levels (max {d.max()})"
            print(f"  {'deterministic' if det else 'default':<13} {name:<28} {how}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check-size", type=int, default=128)
    ap.add_argument("--no-check", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("DREAMNODES_OFFLINE", "1")
    timing(args.size, args.repeats)
    if not args.no_check:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            check(args.check_size, Path(d))


if __name__ == "__main__":
    main()
