"""Tiny node types for the validation tests (registered on import).

They exist only to give the validator shapes the built-in nodes lack (a
required parameter, a plain Image -> Image node, a two-input node); their
bodies are trivial because validation never runs a node.
"""
from __future__ import annotations

from typing import Annotated

import torch

from dreamnodes import Range, node
from dreamnodes.types import Image

#: set by `mark_executed`; a recipe that manages to call it has run code.
EXECUTED: list[str] = []


def mark_executed(note: str = "") -> str:
    """What `!!python/object/apply:tinynodes.mark_executed` would call under an unsafe loader."""
    EXECUTED.append(note)
    return note


@node("test.required")
def required(count: Annotated[int, Range(1, 10)], scale: float = 1.0) -> Image:
    """A flat picture; `count` has no default, so a recipe must set it.

    Args:
        count: a required whole number between 1 and 10.
        scale: an optional factor.
    """
    return Image(torch.full((1, 3, 8, 8), 0.1 * count * scale).clamp(0, 1))


@node("test.passthrough")
def passthrough(image: Image) -> Image:
    """Give the picture back unchanged (one Image input, one Image output)."""
    return image


@node("test.mix")
def mix(a: Image, b: Image) -> Image:
    """Average two pictures (two Image inputs)."""
    return Image((a.pixels + b.pixels) / 2)


@node("test.deep")
def deep(levels: Annotated[int, Range(1, 1_000_000)] = 10) -> Image:
    """A flat picture, made after recursing `levels` deep (a stand-in for a parser of nested input).

    Args:
        levels: how deep the recursion goes.
    """
    def down(n: int) -> int:
        return 0 if n == 0 else 1 + down(n - 1)

    return Image(torch.full((1, 3, 8, 8), 0.5 + 0 * down(levels)))
