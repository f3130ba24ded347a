"""Render the class-visualization gallery through the runtime, and check it.

    .venv/bin/python examples/make_class_gallery.py [--steps N] [--classes 'tree frog,volcano']

Each class is examples/class_vis.yaml with `--set`-style overrides (the
target's label, the output file), run by `dreamnodes.runtime.Runner`, so
every PNG in docs/gallery/ carries the recipe that made it
(`dreamnodes show docs/gallery/volcano.png`). Each picture is then checked
with the same MobileNetV2:

- the softmax probability of its class is at least 0.9;
- the class stays top-1 when the picture is shifted by 8 px (each of four
  diagonal directions, wrapping around) and rescaled by 0.9;
- the pixel standard deviation is at least 0.15 (a full tonal range, not a
  grey ghost).

`--judge resnet50:IMAGENET1K_V2` (repeatable) also asks other ImageNet
networks what they see in each picture: the probability and rank they give
the class. Their weights are found as `model.load` finds them (offline
first, then torchvision's download); a network whose weights cannot be had
is reported as unavailable, not counted as a failure.

It writes docs/gallery/<class>.png, the contact sheet docs/gallery/classes.png
and docs/gallery/classes.json (the figures), prints a table, and exits with
status 1 if any check fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dreamnodes import Context
from dreamnodes.errors import DreamError
from dreamnodes.nodes.model import load as load_model
from dreamnodes.graphs import load_recipe
from dreamnodes.nodes.image import encode, grid
from dreamnodes.runtime import Runner
from dreamnodes.runtime.cache import Cache, default_cache_dir
from dreamnodes.runtime.cli import ProgressPrinter, apply_sets
from dreamnodes.types import Image, Model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "gallery"
CLASSES = ["tree frog", "broccoli", "volcano", "cheeseburger", "pizza", "bubble", "spider web", "kit fox",
           "gondola", "analog clock"]
MIN_PROB, MIN_STD, SHIFT, RESCALE = 0.9, 0.15, 8, 0.9


def slug(label: str) -> str:
    return label.replace(" ", "_")


def check(model: Model, pixels: torch.Tensor, k: int) -> dict:
    """Probability of class k, and whether it stays top-1 when shifted and rescaled."""
    with torch.no_grad():
        p = model.module(model.normalize(pixels)).softmax(1)[0]
        robust, worst = True, 1.0
        for dy, dx in ((SHIFT, SHIFT), (-SHIFT, -SHIFT), (SHIFT, -SHIFT), (-SHIFT, SHIFT)):
            moved = torch.roll(pixels, (dy, dx), (2, 3))
            moved = F.interpolate(moved, scale_factor=RESCALE, mode="bilinear", align_corners=False, antialias=True)
            q = model.module(model.normalize(moved)).softmax(1)[0]
            robust &= int(q.argmax()) == k
            worst = min(worst, float(q[k]))
    return {"prob": round(float(p[k]), 4), "top1": int(p.argmax()) == k, "shifted_top1": robust,
            "shifted_prob_min": round(worst, 4), "std": round(float(pixels.std()), 4)}


def load_judges(specs: list[str], device) -> dict[str, Model]:
    """Other classifiers, 'arch' or 'arch:WEIGHTS'; those whose weights cannot be had are skipped."""
    judges = {}
    for spec in specs:
        arch, _, weights = spec.partition(":")
        try:
            judges[spec] = load_model(Context(node_id=f"judge {spec}", device=device), arch=arch,
                                      weights=weights or "DEFAULT")
        except DreamError as exc:
            print(f"judge {spec} unavailable: {exc}", file=sys.stderr)
    return judges


def judge(model: Model, pixels: torch.Tensor, label: str) -> dict:
    """What another network makes of a picture: its probability and rank (1 = top) for the class."""
    k = [c.lower() for c in model.categories].index(label.lower())
    with torch.no_grad():
        p = model.module(model.normalize(pixels)).softmax(1)[0]
    return {"prob": round(float(p[k]), 4), "rank": int((p > p[k]).sum()) + 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", default=",".join(CLASSES), help="comma-separated ImageNet class names")
    ap.add_argument("--steps", type=int, default=None, help="override vis.steps")
    ap.add_argument("--size", type=int, default=None, help="override the picture size")
    ap.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--judge", action="append", default=[], metavar="ARCH[:WEIGHTS]",
                    help="another ImageNet network to ask (repeatable), e.g. resnet50:IMAGENET1K_V2")
    return ap.parse_args(argv)


def render_class(runner: Runner, label: str, args: argparse.Namespace, judges: dict[str, Model]) -> tuple[dict, Image]:
    """Render one class through the runtime and check it: (its row of figures, its picture)."""
    sets = [f"target.label={label}"]
    if args.steps:
        sets.append(f"vis.steps={args.steps}")
    if args.size:
        sets += [f"vis.width={args.size}", f"vis.height={args.size}"]
    print("dreamnodes run examples/class_vis.yaml " + " ".join(f"--set '{s}'" for s in sets),
          file=sys.stderr)
    recipe = load_recipe(ROOT / "examples" / "class_vis.yaml")
    apply_sets(recipe, sets + [f"out.path={slug(label)}.png"])
    t0 = time.perf_counter()
    result = runner.run(recipe, seed=args.seed)
    seconds = time.perf_counter() - t0
    model: Model = result.output("net")
    image: Image = result.output("vis", "image")
    k = [c.lower() for c in model.categories].index(label.lower())
    row = {"class": label, "index": k, **check(model, image.pixels.to(runner.device), k),
           "seconds": round(seconds, 1)}
    row["ok"] = row["prob"] >= MIN_PROB and row["shifted_top1"] and row["std"] >= MIN_STD
    if judges:
        row["judges"] = {name: judge(m, image.pixels.to(runner.device), label) for name, m in judges.items()}
    print(f"  {label:<14} p={row['prob']:.4f} shifted top-1={row['shifted_top1']} "
          f"(min p {row['shifted_prob_min']:.3f}) std={row['std']:.3f} {seconds:.0f}s"
          f"{'' if row['ok'] else '  FAILED'}", file=sys.stderr)
    for name, verdict in row.get("judges", {}).items():
        print(f"    {name}: p={verdict['prob']:.3f}, rank {verdict['rank']}", file=sys.stderr)
    return row, image


def write_gallery(out: Path, rows: list[dict], pictures: list[Image], args: argparse.Namespace,
                  runner: Runner, judges: dict[str, Model]) -> None:
    """The contact sheet classes.png and the figures classes.json."""
    sheet = grid(pictures, Context(), columns=5, padding=6, background="#181818",
                 labels=[f"{r['class']}  p={r['prob']:.2f}" for r in rows], label_color="#eeeeee",
                 label_height=24)
    (out / "classes.png").write_bytes(encode(sheet, 0, "png", Context(), 95))
    (out / "classes.json").write_text(json.dumps({
        "recipe": "examples/class_vis.yaml", "seed": args.seed, "steps": args.steps, "device": str(runner.device),
        "checks": {"min_prob": MIN_PROB, "shift_px": SHIFT, "rescale": RESCALE, "min_std": MIN_STD},
        "judges": {spec: (spec in judges) for spec in args.judge},
        "classes": rows}, indent=2) + "\n")


def print_table(rows: list[dict]) -> None:
    print(f"{'class':<14} {'prob':>7} {'shifted top-1':>14} {'min p':>7} {'std':>6} {'time':>6}")
    for r in rows:
        print(f"{r['class']:<14} {r['prob']:>7.4f} {str(r['shifted_top1']):>14} {r['shifted_prob_min']:>7.3f} "
              f"{r['std']:>6.3f} {r['seconds']:>5.0f}s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # memory cache only: the model loads once, and every picture is really rendered
    runner = Runner(cache=Cache(default_cache_dir(), disk=False), device=args.device, out_dir=out,
                    listeners=[ProgressPrinter(quiet=True)], overwrite=True)  # remakes the gallery
    judges = load_judges(args.judge, runner.device)
    rows, pictures = [], []
    for label in [c.strip() for c in args.classes.split(",") if c.strip()]:
        row, image = render_class(runner, label, args, judges)
        rows.append(row)
        pictures.append(image)
    write_gallery(out, rows, pictures, args, runner, judges)
    print_table(rows)
    failed = [r["class"] for r in rows if not r["ok"]]
    print(f"wrote {out}/classes.png and {len(rows)} pictures; "
          + (f"FAILED: {', '.join(failed)}" if failed else "all checks passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
