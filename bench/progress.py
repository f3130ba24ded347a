#!/usr/bin/env python
"""How honest the progress of an octave render is (`python bench/progress.py`).

Runs render.deepdream (the real MobileNetV2, the classic 4 octaves x 1.4) once, recording at every
step the wall-clock time and the two fractions a progress display could show: steps done / steps
(what the bar showed before issue 14) and the pixel-weighted work the kernel now reports. The truth
is the share of the render's time gone; printed: each fraction's worst and mean error against it,
their ratio, and the ETA each would give at 25/32 of the steps (the issue's example) against the
time that was really left. Baseline and measurement come from the same run.
"""
from __future__ import annotations

import argparse
import time


def record(size: int, steps: int) -> list[tuple[float, float, float]]:
    """[(seconds since the first step ended, steps fraction, work fraction)] after each step."""
    from dreamnodes import Context
    from dreamnodes.nodes import image as image_nodes
    from dreamnodes.nodes import model as model_nodes
    from dreamnodes.nodes import render

    net = model_nodes.load(Context(node_id="net"), arch="mobilenet_v2", weights="IMAGENET1K_V1")
    layer = model_nodes.layer(net, Context(), path="features.10")
    photo = image_nodes.load(Context(), source="sample:chelsea", width=size, height=size)
    rows: list[tuple[float, float, float]] = []

    def listen(e):
        if type(e).__name__ == "Progress":
            rows.append((time.perf_counter(), e.step / e.total, e.fraction))

    render.deepdream(photo, layer, Context(node_id="dream", seed=1, emit=listen), octaves=4, octave_scale=1.4,
                     steps=steps, preview_every=10_000)
    t0, end = rows[0][0], rows[-1][0]
    return [((t - t0) / (end - t0), s, w) for t, s, w in rows]


def eta_at(rows, k: int, which: int) -> float:
    """The share of the time left that a linear ETA from row 0 to row k predicts (which: 1 steps, 2 work)."""
    t, f0, f = rows[k][0], rows[0][which], rows[k][which]
    return (1 - f) * t / (f - f0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--steps", type=int, default=8, help="steps per octave (8: 32 in all, as in the issue)")
    args = ap.parse_args()
    rows = record(args.size, args.steps)
    # the truth at each step, measured from the first step's end (the set-up left out, as the CLI does)
    err = {name: [abs(r[i] - (rows[0][i] + r[0] * (1 - rows[0][i]))) for r in rows] for name, i in (("steps", 1), ("work", 2))}
    print(f"render.deepdream {args.size}px, 4 octaves x 1.4, {len(rows)} steps")
    for name in ("steps", "work"):
        print(f"  {name:5} fraction vs time: worst error {max(err[name]):.3f}, mean {sum(err[name]) / len(err[name]):.3f}")
    print(f"  worst error ratio work / steps: {max(err['work']) / max(err['steps']):.2f}")
    k = round(len(rows) * 25 / 32) - 1
    left = 1 - rows[k][0]
    print(f"  at step {k + 1}/{len(rows)}: time really left {left:.2f} of the render; ETA by steps "
          f"{eta_at(rows, k, 1):.2f}, by work {eta_at(rows, k, 2):.2f}")


if __name__ == "__main__":
    main()
