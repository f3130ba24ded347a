"""The node registry: `@node` registers a function; families and packs are found, not listed.

`@node("family.operation")` turns a function into a `NodeSpec` (see `spec.py`) and
records it in `REGISTRY`. `load_all()` imports every module of `dreamnodes.nodes` (a new
family is one new file there: nothing to edit) and every installed pack: a distribution
that declares an entry point in the group `dreamnodes.nodes`, whose loading (a module, or a
function to call) registers its nodes. A broken pack is reported, not fatal: the rest of the
registry still works.
"""
from __future__ import annotations

import importlib
import pkgutil
import warnings
from importlib.metadata import entry_points
from typing import Callable

from .spec import NodeSpec, SpecError, build_spec

ENTRY_POINT_GROUP = "dreamnodes.nodes"
BUILTIN_PACKAGE = "dreamnodes.nodes"
REGISTRY: dict[str, NodeSpec] = {}
pack_errors: dict[str, str] = {}
_loaded = False


def node(type_name: str, *, version: str = "1", random: bool = False, writes: bool = False,
         memory: Callable[..., int] | None = None, check: Callable | None = None):
    """Register a function as the node type `type_name` ("family.operation").

    `version` is part of every cache key of the node: bump it when the meaning
    of the outputs changes without the source changing. `random=True` marks a
    node that draws random numbers (it gets a seed through its Context);
    `writes=True` one that writes files into the output folder. `memory`, called
    as `memory(ctx, **inputs_and_params)` before the node runs, returns the bytes
    the node will need and refuses (with a NodeError that says what to change)
    what would not fit. `check`, a module-level function called as `check(Checking)` at
    validation (see `spec.Checking`), reports what the parameters alone cannot show (a layer
    the model has not) and returns facts for the nodes wired to this one; keep its module light
    (no torch at import), as validation runs it without importing the node families.
    """

    def register(fn):
        spec = build_spec(fn, type_name, version=version, random=random, writes=writes, memory=memory,
                          check=check)
        old = REGISTRY.get(type_name)
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise SpecError(f"node type '{type_name}' is registered twice: by {old.fn.__module__} and {fn.__module__}")
        REGISTRY[type_name] = spec
        fn.spec = spec
        return fn

    return register


def builtin_families() -> list[str]:
    """The modules of dreamnodes.nodes that hold node families (not `_private` ones, nor sub-packages)."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                  if not m.ispkg and not m.name.startswith("_"))


def load_all() -> dict[str, NodeSpec]:
    """Import the built-in node families and every installed pack, once."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in builtin_families():
            importlib.import_module(f"{BUILTIN_PACKAGE}.{name}")
        load_packs()
    return REGISTRY


def load_packs() -> list[str]:
    """Load entry points of the group `dreamnodes.nodes`; return their names."""
    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type(importlib)):
                obj()
            names.append(ep.name)
        except Exception as exc:  # a pack's bug must not take the tool down
            pack_errors[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"node pack '{ep.name}' ({ep.value}) failed to load: {exc}", stacklevel=2)
    return names


def get(type_name: str) -> NodeSpec | None:
    return load_all().get(type_name)


def families(specs: dict[str, NodeSpec] | None = None) -> dict[str, list[NodeSpec]]:
    """{family: its specs, by type name}, of the registry or of `specs` (the catalogue's, say)."""
    specs = load_all() if specs is None else specs
    out: dict[str, list[NodeSpec]] = {}
    for name in sorted(specs):
        out.setdefault(name.split(".")[0], []).append(specs[name])
    return out
