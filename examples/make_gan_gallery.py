"""Make the GAN pictures the README shows, through the runtime, and measure them.

    .venv/bin/python examples/make_gan_gallery.py [walk] [arithmetic] [dropout] [dgn]

Runs examples/latent_walk.yaml, face_arithmetic.yaml, filter_dropout.yaml and
dgn_sunglasses.yaml (all of them when no name is given) with docs/gan/ as
the output folder, composes PNG strips of what they made, and prints the
figures the README quotes: the walk's smoothness (mean absolute pixel change
from one frame to the next: its mean and its max/min ratio), the dropout's
change inside the region over the change outside it, and the real
MobileNetV2's 'sunglasses' probabilities before and after DGN. The figures
are also written to docs/gan/figures.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image as PILImage, ImageDraw, ImageFont

from dreamnodes.graphs import load_recipe
from dreamnodes.nodes.kernel.masks import Box, coverage
from dreamnodes.runtime import Runner
from dreamnodes.runtime.cli import ProgressPrinter, apply_sets

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "gan"


def run(runner: Runner, recipe: str, sets: list[str] = ()):
    print(f"dreamnodes run examples/{recipe} --out docs/gan " + " ".join(f"--set {s}" for s in sets),
          file=sys.stderr)
    r = load_recipe(ROOT / "examples" / recipe)
    apply_sets(r, list(sets))
    return runner.run(r)


def to_pil(pixels: torch.Tensor, scale: int = 1) -> PILImage.Image:
    """[3, H, W] in [0, 1] -> a PIL picture, enlarged smoothly."""
    x = pixels[None].float()
    if scale != 1:
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    arr = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return PILImage.fromarray(arr)


def strip(rows: list[list[PILImage.Image]], labels: list[str], out: Path) -> None:
    """Rows of equally sized pictures on a dark sheet, a caption left of each row."""
    font = ImageFont.load_default(size=15)
    w, h = rows[0][0].size
    pad, cap = 4, max(ImageDraw.Draw(PILImage.new("RGB", (1, 1))).textlength(s, font=font) for s in labels) + 12
    cols = max(len(r) for r in rows)
    sheet = PILImage.new("RGB", (int(cap) + cols * (w + pad) + pad, len(rows) * (h + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (row, label) in enumerate(zip(rows, labels)):
        y = pad + i * (h + pad)
        draw.text((6, y + h / 2), label, fill=(235, 235, 235), font=font, anchor="lm")
        for j, im in enumerate(row):
            sheet.paste(im, (int(cap) + pad + j * (w + pad), y))
    sheet.save(out)


def frame_changes(frames: torch.Tensor, loop: bool) -> torch.Tensor:
    """Mean absolute pixel change (0-255 scale) between consecutive frames [T, 3, H, W] -> [T or T-1]."""
    nxt = frames.roll(-1, 0) if loop else frames[1:]
    cur = frames if loop else frames[:-1]
    return (nxt - cur).abs().mean((1, 2, 3)) * 255


def walk(runner: Runner, figures: dict) -> None:
    res = run(runner, "latent_walk.yaml")
    run(runner, "latent_walk.yaml", ["out.path=latent_walk.gif", "out.scale=2"])
    faces = res.output("faces").pixels  # [T, 3, 64, 64]
    d = frame_changes(faces, loop=True)
    figures["walk"] = {"frames": faces.shape[0], "mean_change": round(float(d.mean()), 2),
                       "min_change": round(float(d.min()), 2), "max_change": round(float(d.max()), 2),
                       "max_over_min": round(float(d.max() / d.min()), 2),
                       "cv": round(float(d.std() / d.mean()), 3)}
    # the same walk at a constant speed in the latent space, for comparison
    lres = run(runner, "latent_walk.yaml", ["walk.pace=latent", "out.path=latent_walk_latent_pace.gif",
                                            "out.scale=2"])
    ld = frame_changes(lres.output("faces").pixels, loop=True)
    figures["walk_latent_pace"] = {"mean_change": round(float(ld.mean()), 2),
                                   "min_change": round(float(ld.min()), 2), "max_change": round(float(ld.max()), 2),
                                   "max_over_min": round(float(ld.max() / ld.min()), 2),
                                   "cv": round(float(ld.std() / ld.mean()), 3)}
    n = faces.shape[0]
    rows = [list(range(r * n // 3, (r + 1) * n // 3, n // 24)) for r in range(3)]  # 8 frames a row, evenly
    strip([[to_pil(faces[i], 2) for i in row] for row in rows], [f"frames {row[0]}-{row[-1]}" for row in rows],
          OUT / "latent_walk_strip.png")


def arithmetic(runner: Runner, figures: dict) -> None:
    res = run(runner, "face_arithmetic.yaml")
    # the exact results (no noise) next to their exemplars, enlarged, for the README
    rows = []
    for ex, result in ((["ex_glasses", "ex_men", "ex_women"], "res_glasses"),
                       (["ex_smiling", "ex_neutral", "ex_men"], "res_smiling")):
        exemplars = [p for n in ex for p in res.output(n).pixels]  # a, a, a, b, b, b, c, c, c
        rows.append([to_pil(p, 2) for p in exemplars] + [to_pil(res.output(result).pixels[0], 2)])
    strip(rows, ["glasses - man + woman =", "smile - woman + man ="], OUT / "face_arithmetic_strip.png")
    figures["arithmetic"] = {"picked_from": "latent.sample count 96 seed 0", "pictures": "face_arithmetic.png"}


def change_ratio(before: torch.Tensor, after: torch.Tensor, box) -> tuple[float, float]:
    m = coverage(Box.from_corners(*box), before.shape[2], before.shape[3])
    d = (after - before).abs().mean(1)  # [N, H, W]
    inside = (d * m).sum() / (m.sum() * d.shape[0])
    outside = (d * (1 - m)).sum() / ((1 - m).sum() * d.shape[0])
    return float(inside / outside), float(inside * 255)


def dropout(runner: Runner, figures: dict) -> None:
    out = {}
    for tag, sets in (("main.8", []), ("main.5", ["find.layer=main.5", "find.top=32",
                                                   "out.path=filter_dropout_main5.png"])):
        res = run(runner, "filter_dropout.yaml", sets)
        box = tuple(load_recipe(ROOT / "examples" / "filter_dropout.yaml").nodes["find"].params["box"])
        before, after = res.output("before").pixels, res.output("after").pixels
        found = res.output("find")
        r_found, c_found = change_ratio(before[:6], after[:6], box)
        r_held, c_held = change_ratio(before[6:], after[6:], box)
        out[tag] = {"filters": list(found.channels), "ratio_found_on": round(r_found, 2),
                    "ratio_held_out": round(r_held, 2), "inside_change_found_on": round(c_found, 1),
                    "inside_change_held_out": round(c_held, 1)}
        name = "filter_dropout" if tag == "main.8" else "filter_dropout_main5"
        strip([[to_pil(p, 2) for p in before], [to_pil(p, 2) for p in after]],
              ["generator", f"without {len(found.channels)} filters of {tag}"], OUT / f"{name}_strip.png")
    figures["dropout"] = out


def dgn(runner: Runner, figures: dict) -> None:
    res = run(runner, "dgn_sunglasses.yaml")
    net = res.output("net")
    k = net.categories.index("sunglasses")
    before = F.interpolate(res.output("start").pixels, size=(224, 224), mode="bilinear", align_corners=False)
    after = res.output("dgn", "image").pixels
    with torch.no_grad():
        dev = next(net.module.parameters()).device
        p0 = torch.softmax(net.module(net.normalize(before.to(dev))), 1)[:, k].cpu()
        p1 = torch.softmax(net.module(net.normalize(after.to(dev))), 1)[:, k].cpu()
    figures["dgn"] = {"before": [round(float(p), 4) for p in p0], "after": [round(float(p), 3) for p in p1],
                      "before_mean": round(float(p0.mean()), 4), "after_mean": round(float(p1.mean()), 3),
                      "after_best": round(float(p1.max()), 3), "after_worst": round(float(p1.min()), 3)}
    small = F.interpolate(after, size=(128, 128), mode="bilinear", antialias=True, align_corners=False)
    strip([[to_pil(p, 2) for p in res.output("start").pixels],
           [to_pil(p) for p in small]],
          ["start", "DGN"], OUT / "dgn_sunglasses_strip.png")


def main(argv: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    runner = Runner(out_dir=OUT, listeners=[ProgressPrinter(quiet=True)], overwrite=True)  # remakes the pictures
    steps = {"walk": walk, "arithmetic": arithmetic, "dropout": dropout, "dgn": dgn}
    chosen = argv or list(steps)
    figures_path = OUT / "figures.json"
    figures = json.loads(figures_path.read_text()) if figures_path.exists() else {}
    for name in chosen:
        steps[name](runner, figures)
        figures_path.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
