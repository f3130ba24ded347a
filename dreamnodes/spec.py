"""Node specs, derived from plain typed functions, and the node registry.

`@node("family.operation")` registers a function. Its signature is its
interface: an argument annotated with a socket type (see `types.py`), a list
of one, or an optional one, is an input wired from another node; an argument
annotated `Context` receives the run context; every other argument is a
parameter, and must have a type hint. `Annotated[int, Range(1, 100)]` gives a
parameter a range, `Literal["a", "b"]` choices, `InPath`/`OutPath`/`Color`
say what a string means. The docstring's first paragraph is the node's doc;
an `Args:` section documents arguments. The return annotation is a socket
type (one output, named after the type) or a NamedTuple of socket types (one
output per field).

The spec is the single source for validation, the CLI's `nodes` listing and
the editor's widgets. This module knows nothing of recipes or the runtime.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import re
import reprlib
import types as pytypes
import typing
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Union, get_args, get_origin

from .context import Context
from .limits import LIMIT_BY_NAME, DEFAULT_LIMITS, LIMITS, Limits
from .types import Socket


class InPath(str):
    """A file the node reads (relative to the recipe's folder, or `sample:NAME`)."""


class OutPath(str):
    """A file the node writes, relative to the run's output folder; it may hold placeholders
    (`{n}`, `{seed}`, `{name}`, `{NODE.PARAM}`: see `placeholders`), which the runtime fills in
    before the node is called."""


class Color(str):
    """A colour as `#rrggbb`."""


@dataclass(frozen=True)
class Doc:
    """The doc of a parameter, carried by its type: `Annotated[int, Range(1, 12), Doc("...")]`.

    For parameters several nodes share (a type alias declares range and doc once); an `Args:`
    entry in a node's docstring still takes precedence."""

    text: str


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of a numeric parameter (None: unbounded on that side).

    `limit` names the resource an int parameter spends (see `LIMITS`): its upper
    bound is then a default that `--limit KIND=N` (a `Limits`) can raise. Int
    parameters named width, height, size, steps, frames, batch or batch_size get
    their kind from the name; `limit` sets it explicitly (or "" for none).
    """

    lo: float | None = None
    hi: float | None = None
    limit: str | None = None

    def contains(self, v: float) -> bool:
        return (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)

    def __str__(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"[{lo}, {hi}]"


_SCALARS = {int: "int", float: "float", bool: "bool", str: "str", InPath: "path", OutPath: "outpath", Color: "color"}
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Param:
    """A parameter: a value set in the recipe, not wired."""

    name: str
    kind: str  # int, float, bool, str, path, outpath, color, choice, list[int], list[float], list[str]
    default: Any = inspect.Parameter.empty
    optional: bool = False  # None is allowed
    range: Range | None = None
    choices: tuple[Any, ...] = ()
    doc: str = ""
    limit: str | None = None  # the resource kind (LIMITS) an int parameter spends

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def check(self, value: Any, limits: Limits | None = None) -> tuple[Any, str | None]:
        """Return (the value as the node will get it, or a problem in words).

        A resource parameter is bounded by `limits` (default: its own range's upper end)."""
        if value is None:
            return (None, None) if self.optional else (None, f"needs a value ({self.describe()}), got null")
        if self.kind.startswith("list["):
            item_kind = self.kind[5:-1]
            if not isinstance(value, list):
                return None, f"must be a list of {item_kind}s, got {_kind_of(value)} {_short(value)}"
            out = []
            for i, v in enumerate(value):
                c, err = _check_scalar(item_kind, v, self.range, self.choices)
                if err:
                    return None, f"item {i}: {err}"
                out.append(c)
            return out, None
        if self.limit and self.kind == "int":
            checked, err = _check_scalar("int", value, None, ())
            if err is None and self.range and self.range.lo is not None and checked < self.range.lo:
                err = f"{checked} is out of range {self.range}"
            if err is None:
                err = (limits or DEFAULT_LIMITS).over(self.limit, checked, self.range.hi if self.range else None)
            return (None, err) if err else (checked, None)
        return _check_scalar(self.kind, value, self.range, self.choices)

    def describe(self) -> str:
        s = self.kind
        if self.choices:
            s = "one of " + ", ".join(repr(c) for c in self.choices)
        if self.range:
            s += f" in {self.range}"
        if self.optional:
            s += " or null"
        return s


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def _short(v: Any, width: int = 60) -> str:
    """repr(v), cut short: a hostile recipe's value must not flood the message, nor cost much to
    show (only the start of a long text, a few items of a long or deep list, are ever looked at)."""
    text = repr(v[:width]) if isinstance(v, str) else _REPR.repr(v)
    return text if len(text) <= width else text[:width - 3] + "..."


def _kind_of(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def _check_scalar(kind: str, v: Any, rng: Range | None, choices: tuple) -> tuple[Any, str | None]:
    if kind == "choice":
        if v not in choices:
            return None, f"must be one of {', '.join(repr(c) for c in choices)}; got {_short(v)}"
        return v, None
    if kind == "bool":
        if not isinstance(v, bool):
            return None, f"must be true or false, got {_kind_of(v)} {_short(v)}"
        return v, None
    if kind in ("int", "float"):
        ok = isinstance(v, int) and not isinstance(v, bool)
        if kind == "float":
            ok = ok or isinstance(v, float)
        if not ok:
            return None, f"must be {'an integer' if kind == 'int' else 'a number'}, got {_kind_of(v)} {_short(v)}"
        if kind == "float":
            try:
                v = float(v)
            except OverflowError:
                return None, f"{_short(v)} is too large for a number"
        if kind == "float" and not math.isfinite(v):
            return None, f"must be a finite number, got {_short(v)}"
        if rng and not rng.contains(v):
            return None, f"{_short(v)} is out of range {rng}"
        return v, None
    # string kinds
    if not isinstance(v, str):
        return None, f"must be a string, got {_kind_of(v)} {_short(v)}"
    if kind == "color" and not _HEX.match(v):
        return None, f"must be a colour like '#ff8800', got {_short(v)}"
    if kind in ("path", "outpath") and not v.strip():
        return None, "must name a file, got an empty string"
    if kind in ("path", "outpath"):
        return v, _path_problem(v, kind)
    return v, None


#: output names the runtime uses for its own files in the output folder (the staging folder of a run,
#: which the next run deletes; the temporary name of a file being written): a recipe may not use them
RESERVED_OUTPUT_PREFIXES = (".dreamnodes-staging-",)
_TEMPORARY_NAME = re.compile(r"^\..*\.tmp$", re.IGNORECASE)
#: characters no file name may hold: control characters (C0, DEL, C1), invisible formatting ones
#: (bidi overrides and isolates, marks, zero-width ones), line and paragraph separators, lone surrogates
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")
MAX_PATH = 4096  # characters in a file name a recipe gives (Linux's PATH_MAX)


def _path_problem(v: str, kind: str) -> str | None:
    """What is wrong with `v` as a file name a recipe reads (`path`) or writes (`outpath`), or None."""
    if len(v) > MAX_PATH:
        return f"{_short(v)} is {len(v):,} characters long; a path may be at most {MAX_PATH:,}"
    hidden = sorted({c for c in v if unicodedata.category(c) in _HIDDEN_CATEGORIES})
    if hidden:
        return (f"{_short(v)} holds control characters or invisible ones ("
                f"{', '.join(f'U+{ord(c):04X}' for c in hidden[:5])}: a NUL, a newline, a bidi override...); "
                "file names cannot: remove them")
    if kind != "outpath":
        return None
    _, braces = placeholders(v)
    if braces:
        return braces
    parts = re.split(r"[\\/]+", v)
    if v.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", v) or ".." in parts:
        return (f"{_short(v)} must be a relative path inside the output folder, without '..' "
                "(choose the folder with --out)")
    for part in parts:
        if part.lower().startswith(RESERVED_OUTPUT_PREFIXES) or _TEMPORARY_NAME.match(part):
            return (f"{_short(part)} is reserved for the runtime's own files (a run's staging folder, a file "
                    "being written), which it deletes; choose another name")
    return None


#: what `{...}` in an output path may name besides a node's parameter (`{dream.steps}`): the recipe's
#: seed, the next free number, the recipe's name. `{{` and `}}` are a literal brace.
OUTPUT_FIELDS = ("seed", "n", "name")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NODE_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
_FILE_PART_MAX = 64  # characters a placeholder's value may take in a file name


def placeholders(template: str) -> tuple[list[str], str | None]:
    """(the fields the `{...}` of an output path name, in order; what is wrong with its braces, or None).

    A field is `seed`, `n`, `name` or `NODE.PARAM`; which node and parameter exist is the
    recipe's validation's business (graphs/validate.py)."""
    fields: list[str] = []
    for m in _PLACEHOLDER.finditer(template):
        token = m.group(0)
        if token in ("{{", "}}"):
            continue
        if m.group(1) is None:
            return fields, (f"{_short(template)} has a '{token}' without its pair; a placeholder is written "
                            f"{{seed}}, and a brace in the file name itself '{token}{token}'")
        name = m.group(1).strip()
        if name not in OUTPUT_FIELDS and not _NODE_FIELD.match(name):
            return fields, (f"'{{{printable_name(name)}}}' in {_short(template)} is not a placeholder; use {{seed}}, "
                            "{n} (the next free number), {name} (the recipe's name) or {NODE.PARAM} (that "
                            "parameter's value, e.g. {dream.steps})")
        fields.append(name)
    return fields, None


def printable_name(name: str, most: int = 30) -> str:
    """`name` cut to `most` characters, for a message (escaped when it is printed)."""
    return name if len(name) <= most else name[:most - 3] + "..."


def node_field(name: str) -> tuple[str, str] | None:
    """(node, parameter) of a `{NODE.PARAM}` placeholder's field, else None."""
    m = _NODE_FIELD.match(name)
    return (m.group(1), m.group(2)) if m else None


def file_part(value: Any) -> str:
    """A value as it goes into a file name: numbers as written (1.5, 1e-05), true/false, a list's
    items joined by '-'; every character but letters, digits and `-_.+=,@` becomes '_'; no leading
    dot (a hidden file, '..'); at most 64 characters."""
    if isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "none"}[value]
    elif isinstance(value, float):
        text = format(value, "g")
    elif isinstance(value, (list, tuple)):
        text = "-".join(file_part(v) for v in value)
    else:
        text = unicodedata.normalize("NFC", str(value))
    text = "".join(c if c.isalnum() or c in "-_.+=,@" else "_" for c in text)
    text = re.sub(r"_{2,}", "_", text).lstrip(".")[:_FILE_PART_MAX]
    return text or "_"


def fill_placeholders(template: str, values: dict[str, Any], raw: tuple[str, ...] = ()) -> str:
    """`template` with each `{field}` replaced by `file_part(values[field])` (the fields in `raw`
    as they are) and `{{`, `}}` by a brace. Every field must be in `values`."""
    def one(m: re.Match) -> str:
        if m.group(1) is None:
            return m.group(0)[0]
        name = m.group(1).strip()
        return str(values[name]) if name in raw else file_part(values[name])

    return _PLACEHOLDER.sub(one, template)


@dataclass(frozen=True)
class Input:
    """A socket wired from another node's output."""

    name: str
    type: type[Socket]
    is_list: bool = False
    optional: bool = False
    doc: str = ""

    def describe(self) -> str:
        t = self.type.socket_name()
        return (f"list of {t}" if self.is_list else t) + (" (optional)" if self.optional else "")


@dataclass(frozen=True)
class Output:
    name: str
    type: type[Socket]


@dataclass(frozen=True)
class NodeSpec:
    """Everything known about a node type, derived from its function."""

    type_name: str
    fn: Callable[..., Any]
    inputs: tuple[Input, ...]
    params: tuple[Param, ...]
    outputs: tuple[Output, ...]
    doc: str
    version: str
    code_hash: str
    random: bool = False  # draws random numbers: gets a seed, and the seed is in its cache key
    writes: bool = False  # writes files into the output folder
    context_arg: str | None = None
    multi_output: bool = False
    #: memory(ctx, **inputs_and_params) -> bytes needed, raising a NodeError for what cannot fit
    memory: Callable[..., int] | None = None
    #: check(Checking) -> facts of the node's output, or None: what validation can tell before anything runs
    check: Callable[["Checking"], Any] | None = None

    @property
    def module(self) -> str:
        """The module that defines the node."""
        return self.fn.__module__

    @property
    def family(self) -> str:
        return self.type_name.split(".", 1)[0]

    @property
    def summary(self) -> str:
        """The doc's first sentence, whole (a first paragraph wraps over several lines)."""
        para = " ".join(self.doc.strip().split("\n\n", 1)[0].split())
        return re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", para, maxsplit=1)[0]

    def input(self, name: str) -> Input | None:
        return next((i for i in self.inputs if i.name == name), None)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def output(self, name: str) -> Output | None:
        return next((o for o in self.outputs if o.name == name), None)


@dataclass
class Checking:
    """What a node's `check` hook (`@node(..., check=fn)`) is given at validation, before anything
    runs: the node's checked parameters (defaults filled in) and the facts of its wired inputs, as
    the checks of the nodes they come from returned them (None: unknown, e.g. a node without a
    check; a list input gets a list). The hook reports what is wrong with `problem(field, message)`
    and returns the facts of its own output (JSON data; for several outputs, {output name: facts}),
    or None. It loads no weights and reads no input file; facts that cost something to find (a
    model's layer tree) are kept with `memo`, under the catalogue's fingerprint of the sources."""

    type_name: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    folder: Any = None  # where `memo` keeps facts (None: computed every time)
    defaulted: frozenset = frozenset()  # the parameters the recipe leaves to their defaults
    hint: Callable[[str, Any], str] = lambda word, options: ""  # " Did you mean 'x'?" or ""
    problems: list[tuple[str | None, str]] = field(default_factory=list)

    def problem(self, name: str | None, message: str) -> None:
        """Report a problem at parameter or input `name` (None: the node)."""
        self.problems.append((name, message))

    def memo(self, name: str, compute: Callable[[], Any]) -> Any:
        from .catalog import memo

        return memo(self.folder, name, compute)


class SpecError(TypeError):
    """A node function cannot be turned into a spec (a programming error)."""


_DOC_ARG = re.compile(r"^\s{0,8}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_doc(doc: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into the node doc and {argument: doc} from `Args:`."""
    doc = inspect.cleandoc(doc or "")
    lines = doc.splitlines()
    body, args, cur = [], {}, None
    in_args, indent = False, None  # indent: that of the block's argument lines (deeper: a continuation)
    for line in lines:
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args, indent = True, None
            continue
        if in_args:
            depth = len(line) - len(line.lstrip(" "))
            m = _DOC_ARG.match(line)
            if m and line.startswith(" ") and (indent is None or depth <= indent):
                cur, indent = m.group(1), depth
                args[cur] = m.group(2).strip()
            elif line.strip() and line.startswith(" ") and cur:  # "0: automatic, ..." continues it too
                args[cur] += " " + line.strip()
            elif line.strip() and not line.startswith(" "):
                in_args = False
                body.append(line)
            continue
        body.append(line)
    return "\n".join(body).strip(), args


def _unwrap_optional(t: Any) -> tuple[Any, bool]:
    if get_origin(t) in (Union, pytypes.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        if len(args) == 1 and len(get_args(t)) == 2:
            return args[0], True
    return t, False


def _is_socket(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, Socket)


def _param_from(name: str, hint: Any, default: Any, doc: str, where: str) -> Param:
    rng = None
    meta: list = []
    if get_origin(hint) is typing.Annotated:
        hint, *meta = get_args(hint)
    hint, optional = _unwrap_optional(hint)
    if get_origin(hint) is typing.Annotated:  # Optional[Annotated[...]]
        hint, *inner = get_args(hint)
        meta += inner
    rng = next((m for m in meta if isinstance(m, Range)), None)
    doc = doc or next((m.text for m in meta if isinstance(m, Doc)), "")
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return Param(name, "choice", default, optional, rng, choices, doc)
    if get_origin(hint) is list:
        (item,) = get_args(hint) or (None,)
        if item not in (int, float, str):
            raise SpecError(f"{where}: list parameter '{name}' must be list[int], list[float] or list[str]")
        return Param(name, f"list[{_SCALARS[item]}]", default, optional, rng, (), doc)
    if hint in _SCALARS:
        limit = rng.limit if rng is not None and rng.limit is not None else LIMIT_BY_NAME.get(name)
        if limit and limit not in LIMITS:
            raise SpecError(f"{where}: parameter '{name}' names the unknown limit '{limit}' ({', '.join(LIMITS)})")
        return Param(name, _SCALARS[hint], default, optional, rng, (), doc, (limit or None) if hint is int else None)
    raise SpecError(f"{where}: parameter '{name}' has type {hint!r}, which is neither a socket type nor "
                    "a parameter type (int, float, bool, str, InPath, OutPath, Color, Literal[...], list[...])")


def _check_hook(check: Any, where: str) -> None:
    if check is not None and (not callable(check) or "<" in getattr(check, "__qualname__", "<")):
        raise SpecError(f"{where}: check must be a function defined at the top of a module (the catalogue "
                        "keeps it as 'module:function'), best in one that imports nothing heavy")


def build_spec(fn: Callable[..., Any], type_name: str, *, version: str = "1",
               random: bool = False, writes: bool = False,
               memory: Callable[..., int] | None = None,
               check: Callable[[Checking], Any] | None = None) -> NodeSpec:
    where = f"node '{type_name}' ({fn.__module__}.{fn.__qualname__})"
    _check_hook(check, where)
    if not re.match(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$", type_name):
        raise SpecError(f"{where}: type names are 'family.operation' in lower case")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolvable forward reference
        raise SpecError(f"{where}: cannot resolve type hints: {exc}") from exc
    doc, arg_docs = _parse_doc(fn.__doc__ or "")
    if not doc:
        raise SpecError(f"{where}: a node needs a docstring; it is the node's help text")
    inputs, params, ctx_arg = [], [], None
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise SpecError(f"{where}: *args/**kwargs are not allowed; name every input")
        if name not in hints:
            raise SpecError(f"{where}: argument '{name}' has no type hint; every input and "
                            "parameter must say its type")
        hint = hints[name]
        if hint is Context:
            ctx_arg = name
            continue
        base, optional = _unwrap_optional(hint)
        if get_origin(base) is list and get_args(base) and _is_socket(get_args(base)[0]):
            inputs.append(Input(name, get_args(base)[0], True, True, arg_docs.get(name, "")))
        elif _is_socket(base):
            optional = optional or p.default is not inspect.Parameter.empty
            inputs.append(Input(name, base, False, optional, arg_docs.get(name, "")))
        else:
            params.append(_param_from(name, hint, p.default, arg_docs.get(name, ""), where))
            if p.default is not inspect.Parameter.empty and p.default is not None:
                _, err = params[-1].check(p.default)
                if err:
                    raise SpecError(f"{where}: default of '{name}' is invalid: {err}")
    ret = hints.get("return")
    multi = False
    if _is_socket(ret):
        outputs = (Output(ret.__name__.lower(), ret),)
    elif isinstance(ret, type) and issubclass(ret, tuple) and hasattr(ret, "_fields"):
        rhints = typing.get_type_hints(ret)
        outputs = tuple(Output(f, rhints[f]) for f in ret._fields)
        if not all(_is_socket(o.type) for o in outputs):
            raise SpecError(f"{where}: every field of the returned NamedTuple must be a socket type")
        multi = True
    elif ret is None or ret is type(None):
        outputs = ()
    else:
        raise SpecError(f"{where}: the return type must be a socket type, a NamedTuple of them, or None")
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        src = fn.__code__.co_code.hex()
    code_hash = hashlib.sha256(src.encode()).hexdigest()[:16]
    return NodeSpec(type_name, fn, tuple(inputs), tuple(params), outputs, doc, version, code_hash,
                    random, writes, ctx_arg, multi, memory, check)
