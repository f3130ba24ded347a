"""`image.grid`: a contact sheet of pictures, optionally labelled.

Lays out every picture of one or more batches in rows, resized to the first
picture's size, with a caption strip under each when labels are given (an
atlas of a layer's channels, a gallery of classes). Pure layout: no network.
"""
from __future__ import annotations

import math
from typing import Annotated, Optional

import numpy as np
import torch

from dreamnodes import Color, Context, NodeError, Range, node
from dreamnodes.types import Image

from .image import hex_rgb, resize


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
    while True:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= width - 4 or len(text) <= 2:
            break
        text = text[:-2] + "…"
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
        raise NodeError("wire at least one picture into 'images'", ctx.node_id)
    h, w = tiles[0].shape[1:]
    tiles = [t if t.shape[1:] == (h, w) else resize(t[None], h, w)[0] for t in tiles]
    n = len(tiles)
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cap = label_height if labels else 0
    bg, fg = hex_rgb(background), hex_rgb(label_color)
    cell_h = h + cap
    sheet = torch.tensor(bg).view(3, 1, 1).repeat(1, padding + rows * (cell_h + padding),
                                                  padding + cols * (w + padding))
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = padding + r * (cell_h + padding), padding + c * (w + padding)
        sheet[:, top:top + h, left:left + w] = t.clamp(0, 1)
        if labels and i < len(labels) and labels[i]:
            sheet[:, top + h:top + cell_h, left:left + w] = _caption(labels[i], w, cap, fg, bg)
    return Image(sheet.unsqueeze(0))
