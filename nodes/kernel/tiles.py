"""The tile grid of big renders, and which objectives it may cut.

A big picture's gradient is computed tile by tile: each tile's core plus a margin of
context (`overlap`) goes through the network, and only the core's gradient is kept (see
`steps.objective_gradient`). Tiles start on multiples of ALIGN pixels, the network's largest
stride, so a tile sees the pixel grid exactly as the whole picture does; the grid moves by a
random offset every step, so no seam stays in one place. A picture rendered whole is the
grid of one tile.
"""
from __future__ import annotations

import torch

from dreamnodes import NodeError
from dreamnodes.types import Image, Objective

ALIGN = 32  # tile origins and shifts are multiples of this (the network's largest stride)
AUTO_TILE = 512  # the tile side `tile: 0` picks for pictures larger than AUTO_UNTILED_PIXELS
AUTO_UNTILED_PIXELS = 1024 * 1024  # `tile: 0` renders pictures up to this many pixels whole
MAX_TILE = 8192  # the largest `tile` a recipe may set

Span = tuple[int, int, int, int]  # core start, core end, input start, input end


def round_up(v: int, k: int = ALIGN) -> int:
    return -(-v // k) * k


def effective_tile(tile: int, height: int, width: int) -> int:
    """The core side a step uses at this size: 0 when the picture is rendered whole.

    `tile` 0 means automatic: whole up to AUTO_UNTILED_PIXELS, else AUTO_TILE. A tile is
    rounded up to a multiple of ALIGN; one that covers the picture means no tiling.
    """
    if tile == 0:
        if height * width <= AUTO_UNTILED_PIXELS:
            return 0
        tile = AUTO_TILE
    tile = round_up(tile)
    return 0 if tile >= height and tile >= width else tile


def tile_spans(length: int, tile: int, overlap: int, shift: int) -> list[Span]:
    """The spans along one side, for a grid moved by `shift`; tile 0: the whole side, one span.

    Cores partition [0, length); inputs add `overlap` pixels of context each side, clipped to
    the picture, so a tile at the border sees the border as the whole picture does.
    """
    if not tile:
        return [(0, length, 0, length)]
    shift %= tile
    spans = []
    for s in range(shift - tile if shift > 0 else 0, length, tile):
        c0, c1 = max(0, s), min(length, s + tile)
        if c1 > c0:
            spans.append((c0, c1, max(0, c0 - overlap), min(length, c1 + overlap)))
    return spans


def draw_shift(gen: torch.Generator, tile: int) -> int:
    """A random grid offset in [0, tile), a multiple of ALIGN."""
    return ALIGN * int(torch.randint(0, max(1, tile // ALIGN), (1,), generator=gen).item())


def untileable(objective: Objective, guide: Image | None = None) -> bool:
    """Whether the score depends on positions in the whole picture (a neuron at x, y; a class in
    a region). A guided dream scores the guide's features instead, which tiles fine."""
    return guide is None and objective.positional


def refuse_positional_tiles(objective: Objective, tile: int, height: int, width: int,
                            guide: Image | None = None) -> None:
    """A tiled render computes the objective on each tile; refuse objectives for which that
    means something else than on the whole picture."""
    if untileable(objective, guide) and effective_tile(tile, height, width):
        side = max(height, width)
        way = (f"set `tile` to {side} or more to render it whole, or make the picture smaller" if side <= MAX_TILE
               else f"make the picture at most {MAX_TILE} px on a side and set `tile` to that")
        raise NodeError(f"the objective {objective.name} depends on positions in the whole picture, so it "
                        f"cannot be computed in tiles, and a {width}x{height} picture is tiled "
                        f"(`tile` {tile}{', automatic above a megapixel' if tile == 0 else ''}); {way}")
