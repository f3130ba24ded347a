"""Make the DeepDream pictures the README shows, through the runtime.

    .venv/bin/python examples/make_gallery.py        (or: make examples)

Every picture is made by running a recipe of examples/ (with the parameter
overrides printed next to it), so each PNG in docs/ carries the recipe that
made it: `dreamnodes show docs/deepdream.png`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image as PILImage, ImageDraw, ImageFont

from dreamnodes.graphs import Ref, load_recipe
from dreamnodes.runtime import Runner
from dreamnodes.runtime.cli import ProgressPrinter, apply_sets

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LAYERS = ["features.2", "features.4", "features.7", "features.10", "features.14", "features.17"]


def run(runner: Runner, recipe: str, sets: list[str], out: str) -> Path:
    print(f"dreamnodes run examples/{recipe} " + " ".join(f"--set {s}" for s in sets), file=sys.stderr)
    r = load_recipe(ROOT / "examples" / recipe)
    apply_sets(r, sets + [f"out.path={out}"])
    runner.run(r)
    return DOCS / out


def strip(paths: list[Path], labels: list[str], out: Path, height: int = 256) -> None:
    """Pictures side by side at one height, each with a caption under it."""
    ims = [PILImage.open(p).convert("RGB") for p in paths]
    ims = [im.resize((round(im.width * height / im.height), height), PILImage.LANCZOS) for im in ims]
    pad, cap = 6, 26
    sheet = PILImage.new("RGB", (sum(im.width for im in ims) + pad * (len(ims) + 1), height + cap + 2 * pad),
                         (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    x = pad
    for im, label in zip(ims, labels):
        sheet.paste(im, (x, pad))
        draw.text((x + im.width / 2, pad + height + 4), label, fill=(235, 235, 235), font=font, anchor="ma")
        x += im.width + pad
    sheet.save(out)


def save_input(runner: Runner, recipe: str, node: str, out: str) -> Path:
    """Save what one node of a recipe makes (e.g. the photo before the dream)."""
    r = load_recipe(ROOT / "examples" / recipe)
    r.nodes["out"].inputs["image"] = Ref(node)
    r.nodes["out"].params["path"] = out
    runner.run(r)
    return DOCS / out


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    runner = Runner(out_dir=DOCS, listeners=[ProgressPrinter(quiet=True)], overwrite=True)  # remakes the gallery
    photo = save_input(runner, "deepdream.yaml", "photo", "chelsea.png")
    dream = run(runner, "deepdream.yaml", [], "deepdream.png")
    strip([photo, dream], ["sample:chelsea", "render.deepdream, features.10"], DOCS / "deepdream_pair.png", 340)
    layer_pics = [run(runner, "deepdream.yaml", [f"layer.path={p}"], f"layer_{p.replace('.', '_')}.png")
                  for p in LAYERS]
    strip(layer_pics, LAYERS, DOCS / "layers.png", 200)
    guide = save_input(runner, "guided.yaml", "guide", "guide.png")
    guided = run(runner, "guided.yaml", [], "guided.png")
    strip([photo, guide, guided], ["photo", "guide: sample:retina", "guided dream, features.13"],
          DOCS / "guided_strip.png", 300)
    print("wrote", ", ".join(sorted(p.name for p in DOCS.glob("*.png"))), file=sys.stderr)


if __name__ == "__main__":
    main()
