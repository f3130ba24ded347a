"""Regions of a picture as masks over a grid of cells (a feature map, a generator's layer).

One box type, `Box(top, bottom, left, right)` in fractions of the picture, whatever order a
recipe writes its corners in, and one rule for how much of each cell it covers: the exact
overlap, so a box edge that falls inside a cell covers that cell in part.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class Box(NamedTuple):
    """A rectangle in fractions of the picture: rows top..bottom, columns left..right."""

    top: float
    bottom: float
    left: float
    right: float

    @classmethod
    def from_corners(cls, x0: float, y0: float, x1: float, y1: float) -> "Box":
        """From (x0, y0, x1, y1), the order gan.find_filters' `box` takes."""
        return cls(y0, y1, x0, x1)


def coverage(box: Box, h: int, w: int) -> torch.Tensor:
    """How much of each cell of an h x w grid over the picture lies inside the box: [h, w] in [0, 1]."""

    def overlap(lo: float, hi: float, n: int) -> torch.Tensor:  # in units of cells, so cell edges are exact
        cells = torch.arange(n, dtype=torch.float64)
        return (torch.clamp(cells + 1, max=hi * n) - torch.clamp(cells, min=lo * n)).clamp(0, 1).float()

    return overlap(box.top, box.bottom, h).view(-1, 1) * overlap(box.left, box.right, w).view(1, -1)
