#!/usr/bin/env python
"""How long the command line takes for the commands that need no network (`make bench-cli`).

Each command runs as a user runs it (a new process, the installed `dreamnodes` script) several
times, interleaved; the median wall time and the peak memory are printed, next to two
baselines measured in the same run: an empty Python (`python -c pass`) and `import torch`
alone, which is what each of these commands cost before specs were read from the catalogue.
The first call of each command fills the catalogue (not timed): later calls are what a user
meets every day. Target: `--help`, `nodes`, `validate` and `classes` under 0.5 s.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = Path(sys.executable).with_name("dreamnodes")
TARGET_S = 0.5

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "dreamnodes --help": [str(SCRIPT), "--help"],
    "dreamnodes nodes": [str(SCRIPT), "nodes"],
    "dreamnodes nodes render.deepdream": [str(SCRIPT), "nodes", "render.deepdream"],
    "dreamnodes validate examples/deepdream.yaml": [str(SCRIPT), "validate", str(ROOT / "examples/deepdream.yaml")],
    "dreamnodes classes flamingo": [str(SCRIPT), "classes", "flamingo"],
}
BASELINES = ("python -c pass", "python -c 'import torch'")


def once(argv: list[str], env: dict) -> tuple[float, int]:
    """(wall seconds, peak resident KB) of one run of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return wall, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def peak_kb(argv: list[str], env: dict) -> int:
    """Peak resident memory of one run, measured alone through /usr/bin/time when it is there."""
    timer = Path("/usr/bin/time")
    if not timer.exists():
        return 0
    proc = subprocess.run([str(timer), "-f", "%M", *argv], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    return int(proc.stderr.strip().splitlines()[-1])


def after_last_line(env: dict, folder: Path, k: int) -> float:
    """Seconds a tiny `dreamnodes run` takes after printing its last line (the interpreter's exit)."""
    recipe = folder / "tiny.yaml"
    recipe.write_text("dreamnodes: 1\nnodes:\n  pic: {type: image.solid, params: {width: 8, height: 8}}\n"
                      "  out: {type: image.save, inputs: {image: pic}, params: {path: t.png}}\n")
    proc = subprocess.Popen([str(SCRIPT), "run", str(recipe), "--out", str(folder / f"out{k}"), "--no-cache"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = time.perf_counter()
    for _ in proc.stdout:
        last = time.perf_counter()
    proc.wait()
    return time.perf_counter() - last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, DREAMNODES_CACHE_DIR=cache, DREAMNODES_OFFLINE="1")
        for name, argv in COMMANDS.items():  # fill the catalogue and the model facts
            if name not in BASELINES:
                once(argv, env)
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.repeat):
            for name, argv in COMMANDS.items():
                times[name].append(once(argv, env)[0])
        peaks = {name: peak_kb(argv, env) for name, argv in COMMANDS.items()}
        exits = [after_last_line(env, Path(cache), k) for k in range(args.repeat)]
    base, torch_s = (statistics.median(times[b]) for b in BASELINES)
    print(f"median of {args.repeat} runs; peak memory of one run; ratios against the two baselines\n")
    print(f"{'command':46s} {'seconds':>8s} {'peak MB':>8s} {'/ python':>9s} {'/ torch':>8s}")
    results = {}
    for name in COMMANDS:
        med = statistics.median(times[name])
        results[name] = {"seconds": round(med, 3), "peak_mb": round(peaks[name] / 1024),
                         "vs_python": round(med / base, 2), "vs_import_torch": round(med / torch_s, 3)}
        mark = "" if name in BASELINES else ("  ok" if med < TARGET_S else f"  over {TARGET_S} s")
        print(f"{name:46s} {med:8.3f} {peaks[name] / 1024:8.0f} {med / base:9.2f} {med / torch_s:8.3f}{mark}")
    exit_s = statistics.median(exits)
    results["dreamnodes run: after the last line"] = {"seconds": round(exit_s, 3)}
    print(f"\n`dreamnodes run` of a tiny recipe, after its last line: {exit_s:.3f} s (median of {len(exits)})")
    out = HERE / "results_cli.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0 if all(r["seconds"] < TARGET_S for n, r in results.items() if n not in BASELINES) else 1


if __name__ == "__main__":
    sys.exit(main())
