"""Objective nodes: what a render node maximises, and how objectives combine.

An `Objective` maps the activations {layer path: tensor} of a batch to one
score per picture ([N]); `render.optimize` maximises the sum of scores. This
module adds, to `model.layer`'s layer / channel / neuron / class objectives:

- `objective.class_map`: the classifier applied at every position of the
  last feature map (its dense layers as convolutions), so each class target
  can be aimed at a region of the picture (top half a bee, bottom half a
  spider web: 317070, "Interactive Deep Neural Net Hallucinations", 2015);
- `objective.guide`: matching the features of a guide picture;
- `objective.diversity`: pictures of a batch that differ from each other;
- `objective.sum` and `objective.negate`, the algebra as nodes.

Objectives follow Lucid (Olah, Mordvintsev, Schubert, "Feature
Visualization", Distill 2017). This module computes nothing at import and
picks no device; a guide picture is read on the run's device (ctx.device).
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Callable, Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dreamnodes import Context, NodeError, Range, node
from dreamnodes.types import Image, Model, Objective

from . import _facts
from .kernel.guide import best_match, guide_features
from .kernel.masks import Box, coverage
from .kernel.network import LOGITS, capture, layer_shapes
from .model import _check_path, class_index_of, layer, reduce_fn

# ---------------------------------------------------------------------------------------------
# channels and neurons (thin wrappers over model.layer, for the palette)


@node("objective.channel", check=_facts.layer_channel)
def channel(model: Model, ctx: Context, path: str = "features.12.conv.0",
            channel: Annotated[int, Range(0, None)] = 0,
            reduce: Literal["mean", "l2"] = "mean") -> Objective:
    """Maximise one channel of a layer: its mean activation over the whole feature map.

    Olah et al., "Feature Visualization", Distill 2017 (the channel objective).

    Args:
        model: the classifier.
        path: module path of the layer (`dreamnodes layers ARCH` lists them).
        channel: the channel index.
        reduce: mean activation, or mean squared activation (l2).
    """
    return layer(model, ctx, path=path, channel=channel, reduce=reduce)


@node("objective.neuron", check=_facts.layer_channel)
def neuron(model: Model, ctx: Context, path: str = "features.12.conv.0",
           channel: Annotated[int, Range(0, None)] = 0,
           x: Optional[Annotated[int, Range(0, None)]] = None,
           y: Optional[Annotated[int, Range(0, None)]] = None) -> Objective:
    """Maximise one neuron: one channel at one position of the feature map (default: the centre).

    Olah et al., "Feature Visualization", Distill 2017 (the neuron objective).

    Args:
        model: the classifier.
        path: module path of the layer.
        channel: the channel index.
        x: column in the feature map (null: the centre).
        y: row in the feature map (null: the centre).
    """
    if x is None or y is None:
        _check_path(model, path)

        def fn(acts):
            a = acts[path]
            yy = a.shape[2] // 2 if y is None else min(y, a.shape[2] - 1)
            xx = a.shape[3] // 2 if x is None else min(x, a.shape[3] - 1)
            return a[:, channel, yy, xx]

        if channel >= _channels(model, path):
            raise NodeError(f"layer '{path}' has {_channels(model, path)} channels; {channel} is out of range")
        return Objective(model, (path,), fn, f"{path}[{channel}, centre]", positional=True)
    return layer(model, ctx, path=path, channel=channel, x=x, y=y)


@node("objective.channels", check=_facts.layer_channels)
def channels(model: Model, ctx: Context, path: str = "features.12.conv.0",
             channels: Optional[list[int]] = None,
             first: Annotated[int, Range(0, None)] = 0,
             count: Annotated[int, Range(1, 4096)] = 16,
             reduce: Literal["mean", "l2"] = "mean") -> Objective:
    """One channel per picture of the batch: picture i maximises channel i (an atlas of a layer).

    Render a batch of `count` pictures and lay them out with `image.grid`. Olah et al.,
    "Feature Visualization", Distill 2017.

    Args:
        model: the classifier.
        path: module path of the layer.
        channels: the channels, one per picture (cycled if the batch is larger); overrides first/count.
        first: the first channel, when `channels` is not given.
        count: how many consecutive channels, when `channels` is not given.
        reduce: mean activation, or mean squared activation (l2).
    """
    _check_path(model, path)
    chosen = list(channels) if channels else list(range(first, first + count))
    n_ch = _channels(model, path)
    bad = [c for c in chosen if c < 0 or c >= n_ch]
    if bad:
        raise NodeError(f"layer '{path}' has {n_ch} channels; {bad} are out of range")
    red = reduce_fn(reduce)

    def fn(acts):
        a = acts[path]  # [N, C, h, w]
        idx = torch.tensor([chosen[i % len(chosen)] for i in range(a.shape[0])], device=a.device)
        picked = a[torch.arange(a.shape[0], device=a.device), idx]  # [N, h, w]
        return red(picked)

    return Objective(model, (path,), fn, f"{path}[{','.join(map(str, chosen))}] per picture")


def _channels(model: Model, path: str) -> int:
    return dict((p, s) for p, _, s in layer_shapes(model))[path][1]


# ---------------------------------------------------------------------------------------------
# classes


def _class_indices(model: Model, labels: Optional[list[str]], indices: Optional[list[int]]) -> list[int]:
    if labels and indices:
        raise NodeError("give class targets by labels or by class_indices, not both")
    if labels:
        return [class_index_of(model, lab) for lab in labels]
    if indices:
        return list(indices)
    raise NodeError("give at least one class target: labels (e.g. ['tree frog']) or class_indices")


def _class_name(model: Model, k: int) -> str:
    return model.categories[k] if k < len(model.categories) else str(k)


@node("objective.class_logit", check=_facts.class_logit)
def class_logit(model: Model, ctx: Context, label: Optional[str] = None,
                class_index: Optional[Annotated[int, Range(0, None)]] = None) -> Objective:
    """Maximise a class: its logit, not its softmax probability.

    The logit is the better-behaved target: the softmax can also be raised by pushing the
    other classes down, and its gradient vanishes once the picture is confident (Simonyan et al.,
    "Deep Inside Convolutional Networks", 2014; seed 001 point 4).

    Args:
        model: the classifier.
        label: an ImageNet class name, e.g. 'tree frog' (`dreamnodes classes WORD` searches them).
        class_index: the class by index instead.
    """
    (k,) = _class_indices(model, [label] if label else None,
                          [class_index] if class_index is not None else None)
    return layer(model, ctx, class_index=k)


# regions as (top, bottom, left, right) fractions of the picture
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "all": (0, 1, 0, 1), "top": (0, 0.5, 0, 1), "bottom": (0.5, 1, 0, 1),
    "left": (0, 1, 0, 0.5), "right": (0, 1, 0.5, 1), "center": (0.25, 0.75, 0.25, 0.75),
    "top-left": (0, 0.5, 0, 0.5), "top-right": (0, 0.5, 0.5, 1),
    "bottom-left": (0.5, 1, 0, 0.5), "bottom-right": (0.5, 1, 0.5, 1),
}
_BOX = re.compile(r"^\s*([0-9.]+)\s*,\s*([0-9.]+)\s*,\s*([0-9.]+)\s*,\s*([0-9.]+)\s*$")


def parse_region(text: str) -> tuple[float, float, float, float]:
    """A named region or 'top,bottom,left,right' fractions -> (top, bottom, left, right)."""
    key = text.strip().lower()
    if key in REGIONS:
        return REGIONS[key]
    m = _BOX.match(key)
    if m:
        t, b, l, r = (float(v) for v in m.groups())
        if 0 <= t < b <= 1 and 0 <= l < r <= 1:
            return t, b, l, r
    raise NodeError(f"region {text!r} is not one of {', '.join(REGIONS)} nor 'top,bottom,left,right' "
                    "fractions of the picture such as '0,0.5,0,1'")


def _last(seq: nn.Module) -> nn.Module:
    children = list(seq.children())
    return children[-1] if children else seq


def dense_head(model: Model) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The classifier as a convolution over the last feature map.

    Returns (feature layer path, fn) where fn maps that layer's activation [N, C, h, w] to class
    logit maps [N, K, h', w']. The global average pool is dropped and every dense layer becomes a
    convolution with the same weights: 1x1 when it reads a pooled C-vector (MobileNet, ResNet,
    GoogLeNet, EfficientNet), k x k when it reads a flattened C x k x k map (VGG, AlexNet). For a
    single linear layer after average pooling, the mean of the map is exactly the logits.
    """
    m = model.module
    pre: Callable[[torch.Tensor], torch.Tensor] = lambda a: a
    if hasattr(m, "features") and hasattr(m, "classifier"):
        path, head = "features", m.classifier
        if isinstance(_last(m.features), nn.BatchNorm2d):  # DenseNet applies a ReLU after its features
            pre = F.relu
    elif hasattr(m, "fc"):
        path = next((p for p in ("layer4", "inception5b", "Mixed_7c", "trunk_output") if hasattr(m, p)), None)
        head = m.fc
        if path is None:
            raise NodeError(f"{model.arch}: cannot tell which layer feeds the classifier 'fc'")
    else:
        raise NodeError(f"{model.arch}: a class map needs a classifier after a feature extractor "
                        "('features' + 'classifier', or 'fc'); this architecture has neither")
    modules = list(head.children()) if isinstance(head, nn.Sequential) else [head]
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for mod in modules:
        if isinstance(mod, nn.Linear):
            steps.append(_linear_as_conv(mod))
        elif isinstance(mod, (nn.Dropout, nn.Flatten, nn.Identity)):
            continue  # eval mode: dropout does nothing; the map is never flattened
        elif isinstance(mod, (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid)):
            steps.append(mod)
        else:
            raise NodeError(f"{model.arch}: the classifier holds a {type(mod).__name__}, which cannot be "
                            "applied per position")

    def fn(a):
        a = pre(a)
        for s in steps:
            a = s(a)
        return a

    return path, fn


def _linear_as_conv(lin: nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
    def conv(a):  # a: [N, C, h, w]
        c = a.shape[1]
        k = math.isqrt(max(1, lin.in_features // c))
        if lin.in_features == c:
            return F.conv2d(a, lin.weight[:, :, None, None], lin.bias)
        if c * k * k != lin.in_features:
            raise RuntimeError(f"a dense layer reading {lin.in_features} values cannot be applied to "
                               f"{c}-channel feature maps")
        if a.shape[2] < k or a.shape[3] < k:
            raise RuntimeError(f"the feature map {a.shape[2]}x{a.shape[3]} is smaller than the {k}x{k} "
                               "window the dense layer reads; render a larger picture")
        return F.conv2d(a, lin.weight.view(-1, c, k, k), lin.bias)

    return conv


def class_logit_maps(model: Model, x: torch.Tensor) -> torch.Tensor:
    """Logit maps [N, K, h, w] of pictures x [N, 3, H, W] in [0, 1] (for inspection and tests)."""
    path, head = dense_head(model)
    return head(capture(model, x, (path,))[path])


@node("objective.class_map", check=_facts.class_map)
def class_map(model: Model, ctx: Context, labels: Optional[list[str]] = None,
              class_indices: Optional[list[int]] = None, regions: Optional[list[str]] = None,
              weights: Optional[list[float]] = None, masks: list[Image] = (),
              contrast: Annotated[float, Range(0, 10)] = 0.0) -> Objective:
    """Aim classes at regions: the classifier applied at every position of the last feature map.

    The dense layers become convolutions (a 1x1 convolution with the Linear's weights for
    MobileNetV2), giving a map of class logits over the picture; each target's logit is averaged
    over its own region (or mask), so the top half can be a bee and the bottom half a spider web.
    317070, "Interactive Deep Neural Net Hallucinations", 2015 (seed 001, point 5); Long et al.,
    "Fully Convolutional Networks", 2015.

    Args:
        model: the classifier.
        labels: class names, one per target (e.g. ['bee', 'spider web']).
        class_indices: class indices instead of names.
        regions: one per target: all, top, bottom, left, right, center, top-left, top-right,
            bottom-left, bottom-right, or 'top,bottom,left,right' fractions (default: all).
        weights: one per target (default 1 each).
        masks: one picture per target instead of regions; its brightness weighs the positions.
        contrast: also push the other targets' logits down in each target's region, by this factor.
    """
    targets = _class_indices(model, labels, class_indices)
    n = len(targets)
    if regions and masks:
        raise NodeError("give regions or masks, not both")
    boxes = [parse_region(r) for r in (regions or ["all"] * n)]
    if len(boxes) != n:
        raise NodeError(f"give one region per target: {n} targets but {len(boxes)} regions")
    if masks and len(masks) != n:
        raise NodeError(f"give one mask per target: {n} targets but {len(masks)} masks")
    weights = list(weights) if weights else [1.0] * n
    if len(weights) != n:
        raise NodeError(f"give one weight per target: {n} targets but {len(weights)} weights")
    try:
        path, head = dense_head(model)
    except NodeError as exc:
        raise NodeError(exc.detail) from None
    n_classes = len(model.categories) or None
    if n_classes and any(k >= n_classes for k in targets):
        raise NodeError(f"{model.arch} has {n_classes} classes; {targets} has one out of range")
    mask_pixels = [m.pixels[:1].mean(1, keepdim=True) for m in masks]  # [1, 1, H, W] each, new tensors
    cache: dict[tuple, torch.Tensor] = {}

    def weights_at(h: int, w: int, device) -> torch.Tensor:
        """Per-target position weights [T, h, w], each summing to one."""
        key = (h, w, str(device))
        if key not in cache:
            if mask_pixels:
                ws = torch.cat([F.adaptive_avg_pool2d(mp, (h, w))[0] for mp in mask_pixels])
            else:
                ws = torch.stack([coverage(Box(*b), h, w) for b in boxes])
            ws = ws / ws.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1)
            cache[key] = ws.to(device)
        return cache[key]

    idx = torch.tensor(targets)

    def fn(acts):
        maps = head(acts[path])  # [N, K, h, w]
        ws = weights_at(maps.shape[2], maps.shape[3], maps.device)  # [T, h, w]
        picked = maps[:, idx.to(maps.device)]  # [N, T, h, w]
        # in_region[n, t, u]: the mean logit of target u over target t's region
        in_region = torch.einsum("nuhw,thw->ntu", picked, ws)
        own = torch.diagonal(in_region, dim1=1, dim2=2)  # [N, T]
        score = own
        if contrast and n > 1:
            others = (in_region.sum(2) - own) / (n - 1)
            score = own - contrast * others
        return (score * torch.tensor(weights, device=maps.device)).sum(1)

    desc = ", ".join(f"{_class_name(model, k)}@{(regions or ['all'] * n)[i] if not masks else 'mask'}"
                     for i, k in enumerate(targets))
    return Objective(model, (path,), fn, f"class map({desc})", positional=bool(regions or masks))


# ---------------------------------------------------------------------------------------------
# guides, diversity, algebra


def gram(a: torch.Tensor) -> torch.Tensor:
    """Gram matrices of activations [N, C, h, w] -> [N, C, C], normalised by the number of positions."""
    f = a.flatten(2)
    return f @ f.transpose(1, 2) / f.shape[2]


@node("objective.guide", check=_facts.layer_path)
def guide(model: Model, guide: Image, ctx: Context, path: str = "features.10",
          mode: Literal["dot", "gram", "mean"] = "dot") -> Objective:
    """Grow the features of a guide picture instead of the layer's own.

    'dot' is the original DeepDream notebook's guide: each position of the picture's feature
    map is pulled towards the guide feature it already resembles most (the largest dot product).
    'gram' matches the guide's feature correlations, its style (Gatys, Ecker, Bethge, "A Neural
    Algorithm of Artistic Style", 2015). 'mean' maximises the cosine similarity of the mean
    feature vectors (Lucid's direction objective, Olah et al. 2017).

    Args:
        model: the classifier.
        guide: the guide picture (its first picture is used).
        path: module path of the layer whose features are matched.
        mode: dot, gram or mean.
    """
    _check_path(model, path)
    if path == LOGITS:
        raise NodeError("guide features come from a feature layer, not the logits")
    g = guide_features(model, guide, path, ctx.device)  # [1, C, h, w]
    if mode == "dot":
        fn = best_match(path, g)
    elif mode == "gram":
        g_gram = gram(g)  # [1, C, C]

        def fn(acts):
            return -(gram(acts[path]) - g_gram).pow(2).flatten(1).mean(1)
    else:
        g_mean = F.normalize(g.mean((2, 3)), dim=1)  # [1, C]

        def fn(acts):
            return (F.normalize(acts[path].mean((2, 3)), dim=1) * g_mean).sum(1)

    return Objective(model, (path,), fn, f"guide({path}, {mode})")


@node("objective.diversity", check=_facts.layer_path)
def diversity(model: Model, ctx: Context, path: str = "features.10") -> Objective:
    """Reward pictures of a batch for differing in style from one another.

    For each picture, minus the mean cosine similarity of its Gram matrix at `path` with those
    of the other pictures; add it (with a weight, via objective.sum) to another objective to
    see several facets of a neuron or class. Olah et al., "Feature Visualization", Distill 2017
    (the diversity term). A batch of one scores zero.

    Args:
        model: the classifier.
        path: module path of the layer whose Gram matrices are compared.
    """
    _check_path(model, path)

    def fn(acts):
        a = acts[path]
        n = a.shape[0]
        if n < 2:
            return a.new_zeros(n)
        g = F.normalize(gram(a).flatten(1), dim=1)  # [N, C*C]
        sim = g @ g.t()  # [N, N]
        return -(sim.sum(1) - sim.diagonal()) / (n - 1)

    return Objective(model, (path,), fn, f"diversity({path})")


@node("objective.sum", version="2")
def sum_(objectives: list[Objective], ctx: Context, weights: Optional[list[float]] = None,
         normalize: bool = True) -> Objective:
    """A weighted sum of objectives: maximise several things at once, each as much as the others.

    Objectives form an algebra (Lucid, Olah et al. 2017): `channel + 0.5 * class`, or with a
    negative weight, less of something. A plain sum lets the term that is easiest to raise win
    (two classes: the picture becomes the easier one alone). With `normalize` (the default) the
    terms are balanced: each is measured as s_i / w_i in units of the terms' mean magnitude, and
    every step's push is shared out among them by how far each lags behind the others (a soft
    minimum, temperature BALANCE_TEMPERATURE of that unit), so the terms rise together and the
    weights say how much of each (weight 2: twice as much of that term at the balance point).
    Terms in different units (a channel mean, a logit) weigh alike. The score shown is the plain
    weighted sum.

    Args:
        objectives: the objectives to add (all on the same model).
        weights: one weight per objective (default 1 each; not 0 when normalized).
        normalize: balance the terms (false: the plain sum, whose easiest term may take over).
    """
    objs = list(objectives)
    if not objs:
        raise NodeError("wire at least one objective into 'objectives'")
    ws = list(weights) if weights else [1.0] * len(objs)
    if len(ws) != len(objs):
        raise NodeError(f"give one weight per objective: {len(objs)} objectives but {len(ws)} weights")
    if any(o.model is not objs[0].model for o in objs):
        raise NodeError("objectives on different models cannot be added; wire them all from one model.load")
    if normalize and len(objs) > 1:
        if any(w == 0 for w in ws):
            raise NodeError("a balanced sum needs non-zero weights; leave the term out, or set normalize: false")
        return balanced_sum(objs, ws)
    total = ws[0] * objs[0] if ws[0] != 1 else objs[0]
    for w, o in zip(ws[1:], objs[1:]):
        total = total + (w * o if w != 1 else o)
    return total


#: how far behind (in units of the terms' mean magnitude) a term must lag to take most of a step
BALANCE_TEMPERATURE = 0.05


def balance_shares(scores: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """Each term's share of a step [T, N] (mean 1 over the terms) from scores [T, N], weights [T, 1].

    t_i = s_i / w_i, divided by the mean |t_j| of the picture: a softmax over -t / temperature,
    so the term that lags gets the push, and equal terms equal shares."""
    t = scores.detach() / ws
    unit = t.abs().mean(0, keepdim=True).clamp_min(1e-6)
    return scores.shape[0] * torch.softmax(-t / (unit * BALANCE_TEMPERATURE), dim=0)


def balanced_sum(objs: list[Objective], ws: list[float]) -> Objective:
    """The plain weighted sum in value; in gradient sum_i share_i * sign(w_i) * mean|w| * grad(s_i),
    per picture (see balance_shares): the size of the plain sum's push, shared out to balance."""
    mean_w = sum(abs(w) for w in ws) / len(ws)

    def fn(acts):
        scores = torch.stack([o.fn(acts) for o in objs])  # [T, N]
        w = torch.tensor(ws, dtype=scores.dtype, device=scores.device)[:, None]
        push = balance_shares(scores, w) * w.sign() * mean_w
        return (w * scores.detach()).sum(0) + (push * (scores - scores.detach())).sum(0)

    name = " + ".join(f"{w:g}*{o.name}" for w, o in zip(ws, objs))
    layers = [p for o in objs for p in o.layers]
    return Objective(objs[0].model, layers, fn, f"balanced({name})", any(o.positional for o in objs))


@node("objective.negate")
def negate(objective: Objective) -> Objective:
    """The opposite objective: minimise what the input maximises.

    Lucid's objective algebra (Olah et al., "Feature Visualization", Distill 2017): a negated
    channel shows what suppresses it.

    Args:
        objective: the objective to negate.
    """
    return -objective
