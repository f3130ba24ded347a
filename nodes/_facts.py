"""What validation knows of a model before any weights load: the `check` hooks of the model and
objective nodes.

The facts of a torchvision architecture (every layer path with its module type and output
shape [C, H, W] for a 224 x 224 picture, then the logits; the class names of its weights) come
from the architecture alone: the model is built on the meta device (no weights allocated, none
read or downloaded) and a meta tensor is run through it. They are kept with `catalog.memo`, so
after the first time a `validate` reads a JSON file and imports no torch: this module imports
nothing heavy, and the functions that need torch import it when called.

A model from a checkpoint file is not looked into here: what it holds is known only once it is
read (its number of classes, or for TorchScript and whole pickles its very layer tree), so the
layer and class checks of the nodes wired to it wait for the run.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from dreamnodes.catalog import memo
from dreamnodes.spec import Checking

LOGITS = "logits"  # nodes/kernel/network.py's name for a classifier's output
SIZE = 224  # the picture size the shapes are given for (the runtime's own layer checks use it too)
_KEPT: dict[str, Any] = {}  # this process's facts, by memo name (for runs without a catalogue folder)


def _torchvision() -> str:
    try:
        return version("torchvision")
    except PackageNotFoundError:
        return "?"


def _kept(folder, name: str, compute) -> Any:
    if name not in _KEPT:
        _KEPT[name] = memo(folder, name, compute)
    return _KEPT[name]


def classifiers(folder=None) -> dict[str, list[str]]:
    """{torchvision classification architecture: its weights names, 'DEFAULT' last}."""
    def compute():
        import torchvision
        from torchvision.models import get_model_weights, list_models

        return {a: [w.name for w in get_model_weights(a)] + ["DEFAULT"]
                for a in list_models(module=torchvision.models)}

    return _kept(folder, f"torchvision classifiers {_torchvision()}", compute)


def _architecture(arch: str, weights: str, size: int) -> dict:
    """The facts of one architecture (weights 'none': no class names), found on the meta device."""
    import torch
    import torchvision

    from .kernel.hooks import output_shapes
    from .model import build_kwargs
    from .weights import _WeightsOnMeta

    categories: list[str] = []
    if weights.lower() != "none":
        enum = torchvision.models.get_model_weights(arch)
        w = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
        categories = list(w.meta.get("categories") or ())
    with _WeightsOnMeta():
        module = torchvision.models.get_model(arch, weights=None, **build_kwargs(arch, None, weights != "none"))
    module = module.to("meta").eval()
    modules = dict(module.named_modules())
    try:
        rows, out = output_shapes(module, torch.zeros(1, 3, size, size, device="meta"))
        shapes = {p: list(s[1:]) for p, _, s in rows} | {LOGITS: list(out.shape[1:])}
    except Exception:  # an architecture the meta device cannot run: its paths, without shapes
        shapes = {}
    layers = [[p, type(m).__name__, shapes.get(p), not any(True for _ in m.children())]
              for p, m in modules.items() if p]
    return {"arch": arch, "weights": weights, "size": size, "categories": categories,
            "layers": layers + [[LOGITS, "output", shapes.get(LOGITS), False]]}


def architecture_problem(arch: str, weights: str, folder=None) -> tuple[str, str] | None:
    """(field, message) when `arch` is no torchvision classifier or `weights` none of its weights."""
    import difflib

    known = classifiers(folder)
    if arch not in known:
        hint = difflib.get_close_matches(arch, list(known), n=3)
        return "arch", (f"'{arch}' is not a torchvision classification model"
                        + (f"; did you mean {', '.join(hint)}?" if hint else "")
                        + " (or give a checkpoint file with arch set to its architecture)")
    if weights.lower() != "none" and weights not in known[arch]:
        return "weights", (f"'{weights}' is not a weights name of {arch}; choose one of "
                           f"{', '.join(known[arch])}, or 'none' for random weights")
    return None


class UnknownModel(ValueError):
    """`arch` is no torchvision classifier, or `weights` none of its weights: (field, message)."""


def model_facts(arch: str, weights: str = "none", folder=None, size: int = SIZE) -> dict:
    """The facts of a torchvision architecture with the named weights (their class names), from
    `folder`'s memo when it has them (one file read: the names are checked only on a miss, and
    wrong names, raising UnknownModel, are never kept)."""
    key = "none" if weights.lower() == "none" else weights

    def compute() -> dict:
        problem = architecture_problem(arch, key, folder)
        if problem:
            raise UnknownModel(*problem)
        return _architecture(arch, key, size)

    return _kept(folder, f"model facts {arch} {key} {size} torchvision {_torchvision()}", compute)


# ---------------------------------------------------------------------------------------------
# the check hooks

def model_load(c: Checking) -> dict | None:
    """model.load: the architecture and weights names, and the model's facts for the nodes wired to it."""
    if c.params.get("checkpoint"):
        return None  # what a checkpoint holds is known once it is read: its nodes are checked by the run
    try:
        return model_facts(c.params["arch"], c.params["weights"], c.folder)
    except UnknownModel as exc:
        c.problem(*exc.args)
        return None


def _model(c: Checking) -> dict | None:
    facts = c.inputs.get("model")
    return facts if isinstance(facts, dict) and "layers" in facts else None


def _default(c: Checking, name: str) -> str:
    return " (the default)" if name in c.defaulted else ""


def _shape(c: Checking, facts: dict, path: str, name: str = "path") -> list | None:
    """The layer's output shape (or [] when unknown); None (a problem reported) when there is no such layer."""
    shapes = {p: s for p, _, s, _ in facts["layers"]}
    if path in shapes:
        return shapes[path] or []
    c.problem(name, f"{facts['arch']} has no layer '{path}'{_default(c, name)}.{c.hint(path, list(shapes))} "
                    f"('dreamnodes layers {facts['arch']}' lists them)")
    return None


def _width(c: Checking, facts: dict, path: str, channels: list[int], name: str) -> None:
    """Report channels past the width of layer `path` (a known one)."""
    shape = next((s for p, _, s, _ in facts["layers"] if p == path), None)
    if not shape:  # no such layer (reported), or its shape is unknown
        return
    bad = [k for k in channels if not 0 <= k < shape[0]]
    if bad:
        what = "classes" if path == LOGITS else "channels"
        c.problem(name, f"layer '{path}' of {facts['arch']} has {shape[0]} {what} (0 to {shape[0] - 1}); "
                        f"{', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''} "
                        f"{'is' if len(bad) == 1 else 'are'} out of range")


def _class_index(c: Checking, facts: dict, label: str, name: str, by_index: str = "class_index") -> int | None:
    """The class `label` names, or None (a problem reported)."""
    names = [k.lower() for k in facts["categories"]]
    if not names:
        c.problem(name, f"{facts['arch']} with weights '{facts['weights']}' has no class names; "
                        f"give {by_index} instead")
        return None
    key = label.strip().lower()
    if key in names:
        return names.index(key)
    c.problem(name, f"'{label}' is not a class of {facts['arch']}.{c.hint(key, names)} "
                    "('dreamnodes classes WORD' searches them)")
    return None


def _classes(c: Checking, facts: dict, labels, indices, label_field: str, index_field: str) -> None:
    """Check class targets by name and by index against the model's classes."""
    for label in labels or ():
        _class_index(c, facts, label, label_field, index_field)
    _width(c, facts, LOGITS, list(indices or ()), index_field)


def model_layer(c: Checking) -> None:
    """model.layer: its layer, channel and class target against the model (as the node checks them)."""
    facts, p = _model(c), c.params
    if (p.get("x") is None) != (p.get("y") is None):
        c.problem("x" if p.get("x") is None else "y", "give both x and y to pick a neuron, or neither")
    if facts is None:
        return
    index = p.get("class_index")
    if p.get("label") is not None:
        if index is not None:
            c.problem("label", "give class_index or label, not both")
            return
        index = _class_index(c, facts, p["label"], "label")
        if index is None:
            return
    path = p["path"]
    if index is not None or p.get("class_index") is not None:
        if path not in (LOGITS, "features.10"):  # model.layer's default path gives way to a class target
            c.problem("path", f"a class target reads the logits; remove path '{path}' or set it to 'logits'")
            return
        _width(c, facts, LOGITS, [index], "class_index" if p.get("class_index") is not None else "label")
        return
    if _shape(c, facts, path) is not None and p.get("channel") is not None:
        _width(c, facts, path, [p["channel"]], "channel")


def layer_channel(c: Checking) -> None:
    """objective.channel, objective.neuron: the layer, and the channel within its width."""
    facts = _model(c)
    if facts is not None and _shape(c, facts, c.params["path"]) is not None:
        _width(c, facts, c.params["path"], [c.params["channel"]], "channel")


def layer_channels(c: Checking) -> None:
    """objective.channels: the layer, and every channel (listed, or first + count) within its width."""
    facts, p = _model(c), c.params
    if facts is None or _shape(c, facts, p["path"]) is None:
        return
    if p.get("channels"):
        _width(c, facts, p["path"], list(p["channels"]), "channels")
    else:
        _width(c, facts, p["path"], list(range(p["first"], p["first"] + p["count"])),
               "first" if "count" in c.defaulted else "count")


def layer_path(c: Checking) -> None:
    """objective.guide, objective.diversity: the layer, a feature layer (not the logits)."""
    facts, path = _model(c), c.params["path"]
    if facts is None:
        return
    if path == LOGITS and c.type_name == "objective.guide":
        c.problem("path", "guide features come from a feature layer, not the logits; name one "
                          f"('dreamnodes layers {facts['arch']}' lists them)")
        return
    _shape(c, facts, path)


def class_logit(c: Checking) -> None:
    """objective.class_logit: its class, by name or index, is one of the model's."""
    facts, p = _model(c), c.params
    if p.get("label") and p.get("class_index") is not None:
        c.problem("label", "give class targets by label or by class_index, not both")
    elif not p.get("label") and p.get("class_index") is None:
        c.problem(None, "give a class target: label (e.g. 'tree frog') or class_index")
    elif facts is not None:
        _classes(c, facts, [p["label"]] if p.get("label") else [], [p["class_index"]]
                 if p.get("class_index") is not None else [], "label", "class_index")


def class_map(c: Checking) -> None:
    """objective.class_map: its classes, by name or index, are the model's."""
    facts, p = _model(c), c.params
    if facts is not None and not (p.get("labels") and p.get("class_indices")):
        _classes(c, facts, p.get("labels"), p.get("class_indices"), "labels", "class_indices")
