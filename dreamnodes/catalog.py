"""The node catalogue on disk: every node spec, without importing the node families.

Importing the families means importing torch (about 2.5 s and 600 MB here), which
`dreamnodes --help`, `nodes` and `validate` never need: they read specs only. `specs(folder)`
answers from a JSON file written the first time the registry was loaded, named by a
fingerprint of everything a spec derives from (the source files of the vocabulary and the
built-in families, the installed node packs and their versions, this format). A changed
source file, an installed or removed pack, or a damaged file means a miss: the registry is
loaded as usual and the file written again (atomically). What comes back is a `NodeSpec`
like the registry's; its `fn` and `memory` load the real node on first call.

`memo(folder, name, compute)` keeps other derived facts the same way (a model's layer tree,
its class names), under the same fingerprint.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

FORMAT = 1
_HERE = Path(__file__).resolve().parent
_EMPTY = {"__empty__": True}  # inspect.Parameter.empty (a required parameter) in JSON


def _sources() -> list[Path]:
    """The files specs derive from: the vocabulary and the built-in families (nodes/)."""
    from . import registry  # light: spec and the vocabulary, no families

    roots = [_HERE]
    spec = sys.modules.get(registry.BUILTIN_PACKAGE)
    if spec is not None and getattr(spec, "__path__", None):
        roots += [Path(p) for p in spec.__path__]
    else:
        import importlib.util

        found = importlib.util.find_spec(registry.BUILTIN_PACKAGE)
        roots += [Path(p) for p in (found.submodule_search_locations or [])] if found else []
    return sorted({p for root in roots for p in root.rglob("*.py")})


def fingerprint() -> str:
    """A hash that changes whenever a node spec could: sources, packs, versions, this format."""
    h = hashlib.sha256(f"{FORMAT}|{sys.version_info[:2]}".encode())
    for p in _sources():
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    from .registry import ENTRY_POINT_GROUP

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        h.update(f"pack|{ep.name}|{ep.value}|{dist.name if dist else ''}|{dist.version if dist else ''}\n".encode())
        for f in (dist.files or []) if dist else []:
            if str(f).endswith(".py"):
                try:
                    st = Path(dist.locate_file(f)).stat()
                    h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
                except OSError:
                    pass
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------
# a memo of JSON facts, kept under the fingerprint

def _read_json(path: Path) -> Any:
    try:
        if not path.is_file() or path.stat().st_size > 64 << 20:
            return None
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    """Write atomically; a folder that cannot be written only means no memo next time."""
    from .files import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data, separators=(",", ":")).encode("utf-8"))
    except OSError:
        pass


def memo(folder: Path | None, name: str, compute: Callable[[], Any]) -> Any:
    """`compute()` (JSON data), kept in `folder` under `name` and the fingerprint; None: not kept."""
    if folder is None:
        return compute()
    safe = hashlib.sha256(name.encode()).hexdigest()[:16]
    path = Path(folder) / f"{safe}-{fingerprint()}.json"
    data = _read_json(path)
    if isinstance(data, dict) and data.get("name") == name and "value" in data:
        return data["value"]
    value = compute()
    _write_json(path, {"name": name, "value": value})
    return value


# ----------------------------------------------------------------------------
# specs to JSON and back

def _type_ref(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


def _sockets(registry: dict) -> dict[str, dict]:
    """Every socket type the specs name, with its socket bases: {ref: {bases, color, cacheable}}."""
    from .types import Socket

    table: dict[str, dict] = {}
    todo = [t for s in registry.values() for t in [i.type for i in s.inputs] + [o.type for o in s.outputs]]
    while todo:
        t = todo.pop()
        if _type_ref(t) in table or t is Socket:
            continue
        bases = [b for b in t.__bases__ if isinstance(b, type) and issubclass(b, Socket) and b is not Socket]
        table[_type_ref(t)] = {"bases": [_type_ref(b) for b in bases], "color": t.color,
                               "cacheable": t.disk_cacheable}
        todo += bases
    return table


_STAND_INS: dict[str, type] = {}


def _resolve(ref: str, table: dict[str, dict]) -> type:
    """The socket class: the real one where importing it is free (the vocabulary, or a module
    already imported), else a stand-in of the same name and bases, made once per process, which
    is all validation needs (socket names and which type accepts which)."""
    from .types import Socket

    module, _, qualname = ref.partition(":")
    if module == "dreamnodes.types" or module in sys.modules:
        obj: Any = import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj
    if ref not in _STAND_INS:
        info = table[ref]
        bases = tuple(_resolve(b, table) for b in info["bases"]) or (Socket,)
        _STAND_INS[ref] = type(qualname.rsplit(".", 1)[-1], bases, {
            "__module__": module, "__qualname__": qualname, "color": info["color"],
            "disk_cacheable": info["cacheable"], "__doc__": f"{ref}, as the catalogue describes it"})
    return _STAND_INS[ref]


def _default(v: Any) -> Any:
    return _EMPTY if v is inspect.Parameter.empty else v


def _encode_spec(spec) -> dict:
    params = [{"name": p.name, "kind": p.kind, "default": _default(p.default), "optional": p.optional,
               "range": None if p.range is None else [p.range.lo, p.range.hi, p.range.limit],
               "choices": list(p.choices), "doc": p.doc, "limit": p.limit} for p in spec.params]
    return {"type_name": spec.type_name, "module": spec.module,
            "inputs": [[i.name, _type_ref(i.type), i.is_list, i.optional, i.doc] for i in spec.inputs],
            "params": params, "outputs": [[o.name, _type_ref(o.type)] for o in spec.outputs],
            "doc": spec.doc, "version": spec.version, "code_hash": spec.code_hash, "random": spec.random,
            "writes": spec.writes, "context_arg": spec.context_arg, "multi_output": spec.multi_output,
            "memory": spec.memory is not None, "check": _function_ref(spec.check)}


def _function_ref(fn) -> str | None:
    """'module:qualname' of a module-level function (a node's check hook), or None."""
    if fn is None:
        return None
    if isinstance(fn, _Imported):
        return fn.ref
    return f"{fn.__module__}:{fn.__qualname__}"


class _Imported:
    """A module-level function named 'module:qualname', imported when first called (only its own
    module: a check hook's module is light, unlike a node family's)."""

    def __init__(self, ref: str):
        self.ref = ref
        self.__module__, _, self.__qualname__ = ref.partition(":")
        self.__name__ = self.__qualname__.rsplit(".", 1)[-1]

    def __call__(self, *args, **kwargs):
        obj: Any = import_module(self.__module__)
        for part in self.__qualname__.split("."):
            obj = getattr(obj, part)
        return obj(*args, **kwargs)

    def __eq__(self, other) -> bool:
        return _function_ref(other) == self.ref if callable(other) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.ref)


class _Deferred:
    """A node's function (or memory estimate), loaded from the registry when first called."""

    def __init__(self, type_name: str, module: str, attr: str):
        self.type_name, self.__module__, self._attr = type_name, module, attr
        self.__qualname__ = self.__name__ = f"{type_name}.{attr}"

    def __call__(self, *args, **kwargs):
        from .registry import load_all

        return getattr(load_all()[self.type_name], self._attr)(*args, **kwargs)


def _decode_spec(d: dict, table: dict[str, dict]):
    from .spec import Input, NodeSpec, Output, Param, Range

    def param(p: dict) -> Param:
        default = inspect.Parameter.empty if p["default"] == _EMPTY else p["default"]
        rng = None if p["range"] is None else Range(*p["range"])
        return Param(p["name"], p["kind"], default, p["optional"], rng, tuple(p["choices"]), p["doc"], p["limit"])

    name = d["type_name"]
    return NodeSpec(name, _Deferred(name, d["module"], "fn"),
                    tuple(Input(n, _resolve(t, table), lst, opt, doc) for n, t, lst, opt, doc in d["inputs"]),
                    tuple(param(p) for p in d["params"]),
                    tuple(Output(n, _resolve(t, table)) for n, t in d["outputs"]),
                    d["doc"], d["version"], d["code_hash"], d["random"], d["writes"], d["context_arg"],
                    d["multi_output"], _Deferred(name, d["module"], "memory") if d["memory"] else None,
                    _Imported(d["check"]) if d.get("check") else None)


def encode(registry: dict) -> dict:
    """The registry as JSON data (what `specs` keeps on disk)."""
    return {"format": FORMAT, "sockets": _sockets(registry),
            "specs": [_encode_spec(s) for _, s in sorted(registry.items())]}


def decode(data: dict) -> dict:
    """Back from `encode`: {type name: NodeSpec}; KeyError/ValueError/ImportError when it cannot."""
    if data.get("format") != FORMAT:
        raise ValueError("another catalogue format")
    return {d["type_name"]: _decode_spec(d, data["sockets"]) for d in data["specs"]}


def specs(folder: Path | None) -> dict:
    """Every node spec, from `folder`'s catalogue when it is current, else from the registry."""
    from . import registry

    if registry._loaded or folder is None or os.environ.get("DREAMNODES_NO_CATALOG"):
        return registry.load_all()
    data = memo(folder, "node specs", lambda: encode(registry.load_all()))
    if registry._loaded:  # just built it
        return registry.REGISTRY
    try:
        return decode(data)
    except (KeyError, ValueError, TypeError, ImportError, AttributeError):
        return registry.load_all()
