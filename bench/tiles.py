#!/usr/bin/env python
"""Tiled DeepDream at growing sizes: time per megapixel and peak memory (`make bench-tiles`).

Each size runs in its own process (so its peak RSS is its own), with one
thread (the machine is shared; one thread keeps timings steadier), and
dreams a photo upscaled to the size with `render.deepdream` in tiles: one
octave, a few steps, a shallow-ish layer of the real MobileNetV2 (cheap,
so the whole bench takes minutes on a CPU), after one untimed warm-up step. Reported per size: seconds,
seconds per megapixel and its ratio to the smallest size (target: flat
within 20%; judged on the CPU time of the one thread, steadier than
wall-clock time on a shared machine; both are printed), peak RSS of the process (target: at most 4 GB everywhere) and
the runtime's memory estimate for the same dream. `--quick` stops at 4 MP.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SIZES = [("1 MP", 1024, 1024), ("4 MP", 2048, 2048), ("16 MP", 4096, 4096), ("5400x5400", 5400, 5400)]
TARGET_RATIO, TARGET_RSS = 1.2, 4 * 1024**3


def child(width: int, height: int, args) -> None:
    import torch

    torch.set_num_threads(1)
    from dreamnodes.runtime.device import keep_cpu_memory

    keep_cpu_memory()  # what a Runner on the CPU does (the nodes are called directly here)
    from dreamnodes import Context
    from dreamnodes.nodes import image as image_nodes, model as model_nodes, render, transform

    net = model_nodes.load(Context(node_id="net"), arch="mobilenet_v2", weights="IMAGENET1K_V1")
    objective = model_nodes.layer(net, Context(node_id="layer"), path=args.layer)
    img = image_nodes.load(Context(node_id="photo"), source="sample:chelsea", width=width, height=height)
    ctx = Context(node_id="dream", seed=1)
    estimate = render.check_dream_memory("bench", ctx.device, 1, height, width, args.tile, args.overlap,
                                         net, objective.layers, "dream")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # one untimed step first: the process's first touch of its memory and oneDNN's kernel set-up are
    # one-off costs (0.5 s or so, a sixth of the 1 MP dream) that the time per megapixel should not carry
    render.deepdream(img, objective, Context(node_id="warm-up", seed=2), octaves=1, steps=1, step_size=2.0,
                     tile=args.tile, tile_overlap=args.overlap, preview_every=1000)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = render.deepdream(img, objective, ctx, transforms=[transform.jitter(pixels=16)], octaves=1,
                           steps=args.steps, step_size=2.0, tile=args.tile, tile_overlap=args.overlap,
                           preview_every=1000)
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    assert out.pixels.shape == img.pixels.shape
    print(json.dumps({"seconds": seconds, "cpu": cpu, "estimate": estimate, "rss_before": base_rss,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only 1 and 4 MP")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--layer", default="features.4")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child, args)
        return 0
    sizes = SIZES[:2] if args.quick else SIZES
    print(f"tiled DeepDream, MobileNetV2 {args.layer}, 1 octave, {args.steps} steps, tile {args.tile}, "
          f"overlap {args.overlap}, 1 thread, each size in its own process (load average "
          f"{os.getloadavg()[0]:.1f} at the start)")
    rows = []
    for label, w, h in sizes:
        cmd = [sys.executable, __file__, "--child", str(w), str(h), "--tile", str(args.tile),
               "--overlap", str(args.overlap), "--steps", str(args.steps), "--layer", args.layer]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        mp = w * h / 1e6
        r.update(label=label, mp=mp, per_mp=r["seconds"] / mp, cpu_per_mp=r["cpu"] / mp,
                 load=os.getloadavg()[0])
        rows.append(r)
        print(f"  {label:>10}: {r['seconds']:7.1f} s  {r['per_mp']:6.2f} s/MP ({r['cpu_per_mp']:.2f} CPU s/MP)  "
              f"peak RSS {r['rss'] / 1024**3:5.2f} GB  (estimate {r['estimate'] / 1024**3:5.2f} GB)", flush=True)
    first, first_cpu = rows[0]["per_mp"], rows[0]["cpu_per_mp"]
    print("\n  size         MP    s/MP   ratio  CPU s/MP   ratio   peak RSS   estimate   load")
    for r in rows:
        print(f"  {r['label']:<10} {r['mp']:5.1f} {r['per_mp']:7.2f} {r['per_mp'] / first:7.2f}"
              f" {r['cpu_per_mp']:9.2f} {r['cpu_per_mp'] / first_cpu:7.2f}"
              f" {r['rss'] / 1024**3:8.2f} GB {r['estimate'] / 1024**3:7.2f} GB {r['load']:6.1f}")
    # wall time on a shared machine measures the neighbours too; CPU time of the one thread is steadier
    ratios = [r["cpu_per_mp"] / first_cpu for r in rows]
    wall = [r["per_mp"] / first for r in rows]
    print(f"\n  wall-clock s/MP max/min {max(wall) / min(wall):.2f}")
    flat = max(ratios) / min(ratios) <= TARGET_RATIO
    small = all(r["rss"] <= TARGET_RSS for r in rows)
    print(f"  CPU time per MP {'flat' if flat else 'NOT flat'} within 20%: max/min {max(ratios) / min(ratios):.2f}; "
          f"peak RSS {'under' if small else 'OVER'} 4 GB at every size: largest {max(r['rss'] for r in rows) / 1024**3:.2f} GB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if flat and small else 1


if __name__ == "__main__":
    sys.exit(main())
