"""Make the moving pictures the README shows, through the runtime.

    .venv/bin/python examples/make_zoom.py        (or: make zoom)

Runs examples/infinite_zoom.yaml and examples/video_dream.yaml (their MP4s go
to out/zoom/), checks that each MP4 decodes with all its frames, and makes
docs/zoom/: an animated GIF of the zoom (every third frame, smaller, to stay
under 3 MB), a strip of its dreamed frames, and a strip of the video's frames
above their dreams. With --big-print it also runs examples/big_print.yaml
(about 10 minutes on two CPU cores) and makes docs/zoom/big_print.jpg: the
whole print scaled down beside a crop at full resolution.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from PIL import Image as PILImage

from dreamnodes.graphs import load_recipe
from dreamnodes.nodes.video import encode_animation, to_uint8
from dreamnodes.runtime import Runner
from dreamnodes.runtime.cli import ProgressPrinter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_gallery import strip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "zoom"
OUT = ROOT / "out" / "zoom"


def decoded_frames(path: Path) -> int:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    return sum(1 for _ in reader)


def save_png(pixels: torch.Tensor, path: Path) -> Path:
    PILImage.fromarray(to_uint8(pixels[None], 1)[0]).save(path)
    return path


def stack(top: Path, bottom: Path, out: Path) -> None:
    a, b = PILImage.open(top), PILImage.open(bottom)
    sheet = PILImage.new("RGB", (max(a.width, b.width), a.height + b.height), (24, 24, 24))
    sheet.paste(a, (0, 0))
    sheet.paste(b, (0, a.height))
    sheet.save(out)


def big_print(runner: Runner) -> None:
    print("dreamnodes run examples/big_print.yaml", file=sys.stderr)
    result = runner.run(load_recipe(ROOT / "examples" / "big_print.yaml"))
    pixels = result.output("dream").pixels
    side = 640
    whole = torch.nn.functional.interpolate(pixels, size=(side, side), mode="bilinear", antialias=True,
                                            align_corners=False)
    top, left = 1200, 2000  # the smile, at 300 dpi: about 2 x 2 inches of the print
    crop = pixels[:, :, top:top + side, left:left + side]
    sheet = torch.cat([whole, torch.full((1, 3, side, 8), 0.1), crop], dim=3)
    PILImage.fromarray(to_uint8(sheet, 1)[0]).save(DOCS / "big_print.jpg", quality=88)


def main() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    runner = Runner(out_dir=OUT, listeners=[ProgressPrinter(quiet=True)], overwrite=True)  # remakes the pictures
    if "--big-print" in sys.argv[1:]:
        big_print(runner)
    tmp = DOCS / ".frames"
    tmp.mkdir(exist_ok=True)

    print("dreamnodes run examples/infinite_zoom.yaml", file=sys.stderr)
    recipe = load_recipe(ROOT / "examples" / "infinite_zoom.yaml")
    result = runner.run(recipe)
    frames = result.output("zoom", "frames")
    every = recipe.nodes["zoom"].params.get("between", 3) + 1
    n_mp4 = decoded_frames(OUT / "infinite_zoom.mp4")
    print(f"infinite_zoom.mp4: {n_mp4} frames decoded of {frames.pixels.shape[0]}", file=sys.stderr)
    assert n_mp4 == frames.pixels.shape[0]
    small = torch.nn.functional.interpolate(frames.pixels[::3], scale_factor=0.625, mode="bilinear",
                                            antialias=True, align_corners=False)
    gif = encode_animation(to_uint8(small, 1), "gif", frames.fps / 3, True, 80)
    (DOCS / "infinite_zoom.gif").write_bytes(gif)
    print(f"infinite_zoom.gif: {len(gif) / 1e6:.1f} MB", file=sys.stderr)
    dreamed = frames.pixels[::every]
    picks = list(range(0, dreamed.shape[0], 8))[:6] + [dreamed.shape[0] - 1]
    paths = [save_png(dreamed[i], tmp / f"zoom_{i}.png") for i in picks]
    strip(paths, [f"frame {i}" for i in picks], DOCS / "infinite_zoom_strip.png", 180)

    print("dreamnodes run examples/video_dream.yaml", file=sys.stderr)
    result = runner.run(load_recipe(ROOT / "examples" / "video_dream.yaml"))
    clip, dream = result.output("clip"), result.output("dream")
    for name, f in (("clip.mp4", clip), ("video_dream.mp4", dream)):
        n = decoded_frames(OUT / name)
        print(f"{name}: {n} frames decoded of {f.pixels.shape[0]}", file=sys.stderr)
        assert n == f.pixels.shape[0]
    picks = [0, 12, 24, 36, clip.pixels.shape[0] - 1]
    top = [save_png(clip.pixels[i], tmp / f"clip_{i}.png") for i in picks]
    bottom = [save_png(dream.pixels[i], tmp / f"dream_{i}.png") for i in picks]
    strip(top, [f"video frame {i}" for i in picks], tmp / "top.png", 180)
    strip(bottom, [f"dreamed frame {i}" for i in picks], tmp / "bottom.png", 180)
    stack(tmp / "top.png", tmp / "bottom.png", DOCS / "video_dream_strip.png")
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    print("wrote", ", ".join(sorted(p.name for p in DOCS.iterdir())), file=sys.stderr)


if __name__ == "__main__":
    main()
