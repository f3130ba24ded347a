"""Recipes inside pictures: the PNG text chunks dreamnodes writes and reads.

Every PNG a run saves carries its recipe (YAML) and provenance (JSON) as
iTXt chunks, so any output can be opened, inspected and re-run. Reading is
plain data: the text is size-bounded and handed to the safe recipe loader.
"""
from __future__ import annotations

from pathlib import Path

RECIPE_KEY = "dreamnodes:recipe"
PROVENANCE_KEY = "dreamnodes:provenance"
MAX_CHUNK = 2_000_000


class NoRecipeInImage(ValueError):
    pass


def read_png_text(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG (bounded in size); ValueError if it is not one."""
    from PIL import Image, ImageFile, PngImagePlugin

    path = Path(path)
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"{path} is not a PNG file")
    old = PngImagePlugin.MAX_TEXT_CHUNK
    PngImagePlugin.MAX_TEXT_CHUNK = MAX_CHUNK
    try:
        with Image.open(path) as im:
            im.load()  # text chunks after the image data are read by load()
            text = dict(getattr(im, "text", {}) or {})
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path} could not be read as a PNG: {exc}") from None
    finally:
        PngImagePlugin.MAX_TEXT_CHUNK = old
    return {str(k): str(v) for k, v in text.items()}


def recipe_from_png(path: str | Path) -> str:
    text = read_png_text(path)
    if RECIPE_KEY not in text:
        raise NoRecipeInImage(f"{path} holds no dreamnodes recipe (it was not saved by dreamnodes, or its "
                              "metadata was stripped)")
    return text[RECIPE_KEY]
