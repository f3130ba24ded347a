"""Growing a guide picture's features: the original DeepDream notebook's guided objective.

For each position of the dreamed picture's feature map, the score is its largest dot
product with any position of the guide's feature map at the same layer; its gradient pulls
each position towards the guide feature it already resembles most. render.deepdream (its
`guide` input) and objective.guide (mode 'dot') both score this way, here.
"""
from __future__ import annotations

from typing import Callable

import torch

from dreamnodes.types import Image, Model, Objective

from .network import capture

ScoreFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def guide_features(model: Model, guide: Image, layer: str, device: torch.device) -> torch.Tensor:
    """The guide's (first picture's) activation at `layer`: [1, C, h, w], no gradient."""
    with torch.no_grad():
        return capture(model, guide.pixels[:1].to(device), (layer,))[layer]


def best_match(layer: str, features: torch.Tensor) -> ScoreFn:
    """Score each picture by the mean, over its positions, of the best dot product with any of
    the guide's positions (`features` [1, C, h, w])."""
    g = features[0].flatten(1)  # [C, M]

    def score(acts: dict[str, torch.Tensor]) -> torch.Tensor:
        a = acts[layer].flatten(2)  # [N, C, P]
        return torch.einsum("ncp,cm->npm", a, g).max(dim=2).values.mean(1)  # [N]

    return score


def dream_target(objective: Objective, guide: Image | None, device: torch.device) -> tuple[ScoreFn, tuple[str, ...]]:
    """(score function, layers) a dream maximises: the objective's own, or, with a guide, the
    guide's features at the objective's first layer."""
    if guide is None:
        return objective.fn, objective.layers
    layer = objective.layers[0]
    return best_match(layer, guide_features(objective.model, guide, layer, device)), (layer,)
