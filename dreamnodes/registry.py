"""Finding node types: the built-in families and third-party packs.

A pack is any installed distribution that declares an entry point in the
group `dreamnodes.nodes`; loading the entry point (a module, or a function
to call) registers its nodes with `@node`. A broken pack is reported, not
fatal: the rest of the registry still works.
"""
from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points

from .spec import REGISTRY, NodeSpec

ENTRY_POINT_GROUP = "dreamnodes.nodes"
_loaded = False
pack_errors: dict[str, str] = {}


def load_all() -> dict[str, NodeSpec]:
    """Import the built-in node families and every installed pack, once."""
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("dreamnodes.nodes")
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


def families() -> dict[str, list[NodeSpec]]:
    out: dict[str, list[NodeSpec]] = {}
    for name in sorted(load_all()):
        out.setdefault(name.split(".")[0], []).append(REGISTRY[name])
    return out
