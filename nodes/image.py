"""Image nodes: load pictures (files, bundled samples, colours, gradients,
noise), save them with their recipe embedded, and lay them out in contact
sheets (`image.grid`: every picture resized to the first one's size, with a
caption strip under each when labels are given).

Every image is an `Image`: float32 [N, 3, H, W] in [0, 1] on the CPU.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F

from dreamnodes import Color, Context, InPath, NodeError, OutPath, Range, node
from dreamnodes.limits import Limits
from dreamnodes.meta import PROVENANCE_KEY, RECIPE_KEY
from dreamnodes.pictures import MAX_SIDE, open_picture, refuse_size
from dreamnodes.types import Image

Fit = Literal["long_side", "cover", "contain", "stretch"]


def _open_picture(path: Path, limits: Limits):
    """The picture at `path` as RGB (alpha on white, EXIF orientation applied), through the one
    opener that checks its format and declared size first."""
    from PIL import Image as PILImage, ImageOps

    with open_picture(path, limits) as (im, _):
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = PILImage.new("RGBA", im.size, (255, 255, 255, 255))
            im = PILImage.alpha_composite(bg, im)
        return im.convert("RGB")


def to_tensor(pil) -> torch.Tensor:
    """PIL RGB picture -> [1, 3, H, W] float32 in [0, 1]."""
    arr = np.asarray(pil, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resample [N, 3, H, W] to height x width (antialiased when shrinking)."""
    if (x.shape[2], x.shape[3]) == (height, width):
        return x
    shrink = height < x.shape[2] or width < x.shape[3]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                         antialias=shrink).clamp_(0, 1)


def fit_size(x: torch.Tensor, size: int | None, width: int | None, height: int | None, fit: str) -> torch.Tensor:
    h, w = x.shape[2], x.shape[3]
    if width is None and height is None:
        if size is None:
            return x
        s = size / max(h, w)
        return resize(x, max(1, round(h * s)), max(1, round(w * s)))
    width = width or round(w * height / h)
    height = height or round(h * width / w)
    if fit == "stretch" or fit == "long_side":
        return resize(x, height, width)
    scale = (max if fit == "cover" else min)(width / w, height / h)
    y = resize(x, max(1, round(h * scale)), max(1, round(w * scale)))
    if fit == "cover":
        top, left = (y.shape[2] - height) // 2, (y.shape[3] - width) // 2
        return y[:, :, top:top + height, left:left + width].contiguous()
    out = torch.ones(x.shape[0], 3, height, width)
    top, left = (height - y.shape[2]) // 2, (width - y.shape[3]) // 2
    out[:, :, top:top + y.shape[2], left:left + y.shape[3]] = y
    return out


def hex_rgb(color: str) -> tuple[float, float, float]:
    return tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


@node("image.load")
def load(ctx: Context, source: InPath = "sample:chelsea",
         size: Optional[Annotated[int, Range(8, MAX_SIDE)]] = 512,
         width: Optional[Annotated[int, Range(8, MAX_SIDE)]] = None,
         height: Optional[Annotated[int, Range(8, MAX_SIDE)]] = None,
         fit: Fit = "cover") -> Image:
    """Load a picture from a file or a bundled sample photo.

    Args:
        source: a PNG, JPEG, WebP, GIF or BMP file (relative to the recipe's folder), or `sample:NAME` for a bundled
            photo (chelsea, astronaut, coffee, rocket, ...; `dreamnodes samples` lists them).
        size: scale so that the longer side has this many pixels (null keeps the file's size).
        width: exact output width (with height and fit; overrides size).
        height: exact output height.
        fit: how to reach an exact width x height: cover (crop), contain (letterbox), stretch.
    """
    path = ctx.input_path(source)
    x = to_tensor(_open_picture(path, ctx.limits))
    return Image(fit_size(x, size, width, height, fit))


@node("image.solid")
def solid(color: Color = "#808080", width: Annotated[int, Range(8, MAX_SIDE)] = 512,
          height: Annotated[int, Range(8, MAX_SIDE)] = 512) -> Image:
    """A picture of one colour: a blank canvas to dream on.

    Args:
        color: the colour, as #rrggbb.
        width: width in pixels.
        height: height in pixels.
    """
    rgb = torch.tensor(hex_rgb(color)).view(1, 3, 1, 1)
    return Image(rgb.expand(1, 3, height, width).contiguous())


@node("image.gradient")
def gradient(start: Color = "#ff3a00", end: Color = "#0040ff", angle: Annotated[float, Range(-360, 360)] = 45.0,
             width: Annotated[int, Range(8, MAX_SIDE)] = 512,
             height: Annotated[int, Range(8, MAX_SIDE)] = 512) -> Image:
    """A chromatic gradient between two colours: a guide canvas for dreams.

    Args:
        start: colour at the start of the gradient.
        end: colour at the end.
        angle: direction in degrees (0: left to right, 90: top to bottom).
        width: width in pixels.
        height: height in pixels.
    """
    a = math.radians(angle)
    ys = torch.linspace(-1, 1, height).view(-1, 1)
    xs = torch.linspace(-1, 1, width).view(1, -1)
    t = (xs * math.cos(a) + ys * math.sin(a))
    t = (t - t.min()) / (t.max() - t.min()).clamp_min(1e-8)  # [H, W] in [0, 1]
    s, e = torch.tensor(hex_rgb(start)).view(3, 1, 1), torch.tensor(hex_rgb(end)).view(3, 1, 1)
    return Image((s * (1 - t) + e * t).unsqueeze(0).contiguous())


@node("image.noise", random=True)
def noise(ctx: Context, width: Annotated[int, Range(8, MAX_SIDE)] = 512,
          height: Annotated[int, Range(8, MAX_SIDE)] = 512, amount: Annotated[float, Range(0, 1)] = 0.1,
          mean: Color = "#808080", seed: Optional[int] = None) -> Image:
    """Gaussian noise around a colour (seeded): the classic start of a visualization.

    Args:
        width: width in pixels.
        height: height in pixels.
        amount: standard deviation of the noise.
        mean: the colour the noise is centred on.
        seed: fixes the draw; null derives it from the recipe's seed.
    """
    g = ctx.generator()
    base = torch.tensor(hex_rgb(mean)).view(1, 3, 1, 1)
    ctx.drew(f"noise seed {ctx.seed}")
    return Image((base + amount * torch.randn(1, 3, height, width, generator=g)).clamp(0, 1))


def encode(image: Image, index: int, fmt: str, ctx: Context, quality: int) -> bytes:
    from PIL import Image as PILImage
    from PIL.PngImagePlugin import PngInfo

    pil = PILImage.fromarray(image.to_uint8(index))
    buf = io.BytesIO()
    if fmt == "png":
        info = PngInfo()
        info.add_itxt(RECIPE_KEY, ctx.recipe_text)
        info.add_itxt(PROVENANCE_KEY, json.dumps(ctx.provenance, sort_keys=True))
        info.add_text("Software", f"dreamnodes {ctx.provenance.get('dreamnodes', '')}".strip())
        pil.save(buf, format="PNG", pnginfo=info, optimize=False, compress_level=6)
    elif fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=quality)
    else:
        pil.save(buf, format="WEBP", quality=quality)
    return buf.getvalue()


@node("image.save", writes=True)
def save(image: Image, ctx: Context, path: OutPath = "dream.png",
         quality: Annotated[int, Range(1, 100)] = 95) -> None:
    """Save the picture into the output folder, with its recipe embedded (PNG).

    A batch of N pictures is saved as NAME_0.png ... NAME_{N-1}.png. PNGs carry
    the recipe and provenance: `dreamnodes show` prints them and
    `dreamnodes run PICTURE.png` makes the picture again.

    Args:
        image: the picture(s) to save.
        path: file name inside the output folder (.png, .jpg or .webp).
        quality: JPEG/WebP quality.
    """
    suffix = Path(path).suffix.lower()
    fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(suffix)
    if fmt is None:
        raise NodeError(f"cannot save {path!r}: the name must end in .png, .jpg or .webp")
    names = [path] if image.batch == 1 else [
        str(Path(path).with_name(f"{Path(path).stem}_{i}{suffix}")) for i in range(image.batch)]
    for i, name in enumerate(names):
        ctx.write_file(name, encode(image, i, fmt, ctx, quality))


# ---------------------------------------------------------------- contact sheets
def _fit_text(draw, text: str, font, room: int) -> tuple[str, tuple]:
    """`text`, or its longest prefix + "…" that is at most `room` px wide, and its box.

    A bounded number of measurements whatever the text's length: a glyph is at least a pixel
    wide, so more characters than pixels never fit; the prefix is found by bisection."""
    def box(t: str) -> tuple:
        return draw.textbbox((0, 0), t, font=font)

    if len(text) <= room + 4:
        b = box(text)
        if b[2] - b[0] <= room or len(text) <= 2:
            return text, b
    lo, hi = 1, min(len(text), room + 4) - 1  # the longest prefix that fits lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        b = box(text[:mid] + "…")
        lo, hi = (mid, hi) if b[2] - b[0] <= room else (lo, mid - 1)
    return text[:lo] + "…", box(text[:lo] + "…")


def _caption(text: str, width: int, height: int, fg: tuple, bg: tuple) -> torch.Tensor:
    """A [3, height, width] strip with `text` centred in it."""
    from PIL import Image as PILImage, ImageDraw, ImageFont

    strip = PILImage.new("RGB", (width, height), tuple(round(255 * c) for c in bg))
    draw = ImageDraw.Draw(strip)
    size = max(8, int(height * 0.6))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        font = ImageFont.load_default()
    text, (left, top, right, bottom) = _fit_text(draw, text, font, width - 4)
    draw.text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text,
              fill=tuple(round(255 * c) for c in fg), font=font)
    arr = np.asarray(strip, dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


@node("image.grid")
def grid(images: list[Image], ctx: Context, columns: Optional[Annotated[int, Range(1, 256)]] = None,
         padding: Annotated[int, Range(0, 256)] = 4, background: Color = "#ffffff",
         labels: Optional[list[str]] = None, label_color: Color = "#202020",
         label_height: Annotated[int, Range(8, 256)] = 20) -> Image:
    """A contact sheet: every picture of the wired batches in a grid, with optional labels.

    Args:
        images: one or more pictures or batches, laid out in order (resized to the first's size).
        columns: pictures per row (default: a square-ish grid).
        padding: space between and around the pictures, in pixels.
        background: colour of the space.
        labels: a caption per picture, in order (missing ones are left blank).
        label_color: colour of the captions.
        label_height: height of the caption strip, in pixels.
    """
    tiles = [p for img in images for p in img.pixels]  # each [3, h, w]
    if not tiles:
        raise NodeError("wire at least one picture into 'images'")
    h, w = tiles[0].shape[1:]
    n = len(tiles)
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cap = label_height if labels else 0
    cell_h = h + cap
    sheet_h, sheet_w = padding + rows * (cell_h + padding), padding + cols * (w + padding)
    refuse_size(f"the contact sheet would be {sheet_w} x {sheet_h}", sheet_w, sheet_h, ctx.limits,
                advice="wire fewer or smaller pictures, or lower `columns` or `padding`")
    tiles = [t if t.shape[1:] == (h, w) else resize(t[None], h, w)[0] for t in tiles]
    bg, fg = hex_rgb(background), hex_rgb(label_color)
    sheet = torch.tensor(bg).view(3, 1, 1).repeat(1, sheet_h, sheet_w)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = padding + r * (cell_h + padding), padding + c * (w + padding)
        sheet[:, top:top + h, left:left + w] = t.clamp(0, 1)
        if labels and i < len(labels) and labels[i]:
            sheet[:, top + h:top + cell_h, left:left + w] = _caption(labels[i], w, cap, fg, bg)
    return Image(sheet.unsqueeze(0))
