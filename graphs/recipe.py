"""The recipe model: nodes with parameters and wired inputs, plus metadata.

`load_recipe(path)` / `parse_recipe(text)` read a recipe; structural problems
(a node without a type, a malformed input reference...) are collected in
`Recipe.problems` rather than raised, so that `validate` can report every
problem at once. `dump_recipe` writes the canonical YAML; save -> load ->
save gives the same bytes.

It checks only the shape of a recipe, not its meaning: node types, parameter
values and wiring are checked against the node specs by `validate`, and the
YAML itself is read (safely, with bounds) by `yamlio`.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamnodes import meta
from dreamnodes.errors import Problem, RecipeError
from dreamnodes.files import FileTooLarge, InputFileError, read_bounded

from . import yamlio
from .migrate import SCHEMA_VERSION, migrate
from .yamlio import read_yaml, write_yaml

NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
TOP_KEYS = ("dreamnodes", "name", "description", "seed", "nodes", "editor")
NODE_KEYS = ("type", "inputs", "params")


def line_at(lines: dict[tuple, int], path: tuple) -> int | None:
    """The line of the value at `path`, or else of the closest value that holds it; None if none is known."""
    while path:
        line = lines.get(path)
        if line is not None:
            return line
        path = path[:-1]
    return None


@dataclass(frozen=True)
class Ref:
    """A reference to an output: `node` (its only output) or `node.output`."""

    node: str
    output: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Ref":
        node, _, output = text.partition(".")
        return cls(node, output or None)

    def __str__(self) -> str:
        return self.node if self.output is None else f"{self.node}.{self.output}"


@dataclass
class RecipeNode:
    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Ref | list[Ref]] = field(default_factory=dict)

    def input_refs(self) -> list[tuple[str, Ref]]:
        out = []
        for name, v in self.inputs.items():
            for r in (v if isinstance(v, list) else [v]):
                out.append((name, r))
        return out


@dataclass
class Recipe:
    nodes: dict[str, RecipeNode]
    name: str = ""
    description: str = ""
    seed: int = 0
    editor: dict[str, Any] = field(default_factory=dict)
    version: int = SCHEMA_VERSION
    file: str | None = None
    lines: dict[tuple, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, message: str, node: str | None = None, field: str | None = None,
                path: tuple = ()) -> Problem:
        """A Problem located at the closest line we know for `path`."""
        return Problem(message, self.file, line_at(self.lines, path), node, field)

    @property
    def folder(self) -> Path | None:
        return Path(self.file).resolve().parent if self.file and not self.file.startswith("<") else None

    def copy(self) -> "Recipe":
        return copy.deepcopy(self)


class _Reading:
    """Reading one recipe's data: its file, the line of every value, and the problems found so far
    (the duplicate keys first). Each method reads one part and gives back what can be kept of it."""

    def __init__(self, file: str | None, lines: dict[tuple, int], problems: list[Problem]):
        self.file = file
        self.lines = lines
        self.problems = problems

    def where(self, path: tuple) -> int | None:
        return line_at(self.lines, path)

    def report(self, message: str, line: int | None, node: str | None = None, field: str | None = None):
        self.problems.append(Problem(message, self.file, line, node=node, field=field))

    def schema(self, data: dict) -> dict:
        """The data in the current schema version: older versions are migrated; a newer one is fatal."""
        version = data.get("dreamnodes")
        if version is None:
            self.report(f"the top-level key 'dreamnodes' (the schema version, currently {SCHEMA_VERSION}) "
                        f"is missing; add 'dreamnodes: {SCHEMA_VERSION}'", 1, field="dreamnodes")
        elif not isinstance(version, int) or isinstance(version, bool) or version < 1:
            self.report(f"'dreamnodes' is the schema version, a whole number; got {version!r}",
                        self.where(("dreamnodes",)), field="dreamnodes")
        elif version > SCHEMA_VERSION:
            raise RecipeError(Problem(f"this recipe uses schema version {version}, newer than this dreamnodes "
                                      f"understands ({SCHEMA_VERSION}); upgrade dreamnodes", self.file,
                                      self.where(("dreamnodes",)), field="dreamnodes"))
        elif version < SCHEMA_VERSION:
            return migrate(data, version)
        return data

    def header(self, data: dict) -> tuple[str, str, int, dict[str, Any]]:
        """(name, description, seed, editor layout) of a recipe; unknown top-level keys are reported."""
        for key in data:
            if key not in TOP_KEYS:
                self.report(f"unknown top-level key '{key}'; a recipe has {', '.join(TOP_KEYS)}",
                            self.where((key,)), field=str(key))
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            self.report(f"'seed' must be a whole number >= 0, got {seed!r}", self.where(("seed",)), field="seed")
            seed = 0
        name = self.string(data, "name")
        desc = self.string(data, "description")
        editor = self.mapping(data, "editor", (), "'editor' must be a mapping (layout only)")
        return name, desc, seed, editor

    def string(self, data: dict, key: str) -> str:
        """The top-level text `key` ("" if absent); any other value is reported and made text."""
        value = data.get(key, "")
        if not isinstance(value, str):
            self.report(f"'{key}' must be a string", self.where((key,)), field=key)
            value = str(value)
        return value

    def mapping(self, body: dict, key: str, path: tuple, message: str, node: str | None = None) -> dict:
        """The mapping under `key` of `body` (at `path`), {} if absent or empty; anything else is
        reported with `message` and read as {}."""
        value = body.get(key) or {}
        if not isinstance(value, dict):
            self.report(message, self.where(path + (key,)), node=node, field=key)
            value = {}
        return value

    def nodes(self, data: dict) -> dict[str, RecipeNode]:
        """The nodes that can be read; those that cannot are reported and left out."""
        raw_nodes = data.get("nodes")
        if raw_nodes is None:
            self.report("the recipe has no 'nodes' mapping; add the nodes to run", 1, field="nodes")
            raw_nodes = {}
        elif not isinstance(raw_nodes, dict):
            self.report("'nodes' must be a mapping of node id -> {type, inputs, params}", self.where(("nodes",)),
                        field="nodes")
            raw_nodes = {}
        nodes: dict[str, RecipeNode] = {}
        for nid, body in raw_nodes.items():
            node = self.node(nid, body)
            if node is not None:
                nodes[nid] = node
        return nodes

    def node(self, nid: Any, body: Any) -> RecipeNode | None:
        """One node, or None if its id or body cannot be read; its other problems are reported."""
        path = ("nodes", nid)
        if not isinstance(nid, str) or not NODE_ID.match(nid):
            self.report(f"node id {nid!r} must start with a letter and hold only letters, digits, "
                        "'_' and '-' (no dots: a dot separates a node from its output)",
                        self.where(path), node=str(nid))
            return None
        if not isinstance(body, dict):
            self.report("a node is a mapping with 'type' and optional 'inputs' and 'params'", self.where(path),
                        node=nid)
            return None
        for key in body:
            if key not in NODE_KEYS:
                self.report(f"unknown key '{key}'; a node has {', '.join(NODE_KEYS)}",
                            self.where(path + (key,)), node=nid, field=str(key))
        ntype = body.get("type")
        if not isinstance(ntype, str) or not ntype:
            self.report("the node has no 'type' (e.g. type: image.load)", self.where(path), node=nid, field="type")
            ntype = ""
        params = self.mapping(body, "params", path, "'params' must be a mapping of parameter -> value", nid)
        raw_inputs = self.mapping(body, "inputs", path,
                                  "'inputs' must be a mapping of input -> node id (or node.output)", nid)
        return RecipeNode(nid, ntype, {str(k): v for k, v in params.items()}, self.inputs(nid, raw_inputs))

    def inputs(self, nid: str, raw_inputs: dict) -> dict[str, Ref | list[Ref]]:
        """The wired inputs of node `nid`; an input with a malformed reference is reported and left out."""
        inputs: dict[str, Ref | list[Ref]] = {}
        for iname, v in raw_inputs.items():
            vals = v if isinstance(v, list) else [v]
            refs = []
            for item in vals:
                if not isinstance(item, str) or not item or item.count(".") > 1 \
                        or not NODE_ID.match(item.partition(".")[0]):
                    self.report(f"input '{iname}' must name a node ('node' or 'node.output'), got {item!r}",
                                self.where(("nodes", nid, "inputs", iname)), node=nid, field=str(iname))
                    continue
                refs.append(Ref.parse(item))
            if len(refs) == len(vals):
                inputs[str(iname)] = refs if isinstance(v, list) else refs[0]
        return inputs


def parse_recipe(text: str | bytes, file: str | None = None) -> Recipe:
    """Read recipe text. Raises RecipeError only when it cannot be read at all."""
    data, lines, dups = read_yaml(text, file)
    if not isinstance(data, dict):
        raise RecipeError(Problem("a recipe is a YAML mapping with the keys 'dreamnodes' (the schema "
                                  "version) and 'nodes'", file, 1))
    reading = _Reading(file, lines, list(dups))
    data = reading.schema(data)
    name, desc, seed, editor = reading.header(data)
    nodes = reading.nodes(data)
    return Recipe(nodes, name, desc, seed, editor, SCHEMA_VERSION, file, lines, reading.problems)


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe file: a regular file of at most yamlio.MAX_BYTES, refused before it is read
    otherwise (a device, a pipe, a sparse file of gigabytes)."""
    p = Path(path)
    try:
        raw = read_bounded(p, yamlio.MAX_BYTES, "the recipe")
    except FileNotFoundError:
        raise RecipeError(Problem(f"no such recipe file: {p}")) from None
    except FileTooLarge as exc:  # checked before reading: a sparse file of gigabytes costs nothing
        raise RecipeError(Problem(yamlio.too_large(exc.size), str(p))) from None
    except InputFileError as exc:  # a device, a pipe, a folder: refused before it is opened
        raise RecipeError(Problem(f"{exc} (a recipe is a YAML file)", str(p))) from None
    return parse_recipe(raw, str(p))


def recipe_to_data(recipe: Recipe) -> dict[str, Any]:
    data: dict[str, Any] = {"dreamnodes": SCHEMA_VERSION}
    if recipe.name:
        data["name"] = recipe.name
    if recipe.description:
        data["description"] = recipe.description
    data["seed"] = recipe.seed
    nodes = {}
    for nid, n in recipe.nodes.items():
        body: dict[str, Any] = {"type": n.type}
        if n.inputs:
            body["inputs"] = {k: [str(r) for r in v] if isinstance(v, list) else str(v) for k, v in n.inputs.items()}
        if n.params:
            body["params"] = dict(n.params)
        nodes[nid] = body
    data["nodes"] = nodes
    if recipe.editor:
        data["editor"] = recipe.editor
    return data


def dump_recipe(recipe: Recipe) -> str:
    """The canonical YAML text of a recipe; a RecipeError (nothing is built) when that text would be
    more than a recipe file or a picture may hold (see `saved_problem`)."""
    data = recipe_to_data(recipe)
    problem = _shape_problem(data)
    if problem is None:
        text = write_yaml(data)
        size = len(text.encode("utf-8"))
        if size <= max_saved_bytes():
            return text
        problem = _too_big(size)
    raise RecipeError(Problem(problem, recipe.file, 1 if recipe.file else None))


# ---------------------------------------------------------------- the saved form's bound
def max_saved_bytes() -> int:
    """The most UTF-8 bytes of recipe text that a recipe file, `show` and `run picture.png` all accept."""
    return min(yamlio.MAX_BYTES, meta.MAX_CHUNK)


def _too_big(size: int, bound: str = "") -> str:
    return (f"saved, this recipe would be {bound}{size:,} bytes (aliases and merge keys are written out in full), "
            f"but a recipe and the recipe inside a picture may be at most {max_saved_bytes():,} bytes, so "
            "the pictures of this run could not be run again; repeat long values fewer times")


def _shape_problem(data: Any) -> str | None:
    """Why the saved text of `data` would be refused when read back, found without building it: too
    many values, too deep, or too many bytes for certain (its texts alone are too long); None if none.
    The walk ends within MAX_VALUES values, however the recipe was made."""
    count, size, stack = 0, 0, [(data, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > yamlio.MAX_DEPTH:
            return f"the recipe is nested deeper than {yamlio.MAX_DEPTH} levels"
        if count > yamlio.MAX_VALUES:
            return f"the recipe holds more than {yamlio.MAX_VALUES} values (once aliases are written out)"
        if isinstance(value, dict):
            size += sum(len(str(k)) + 2 for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            size += 2 * len(value)
            stack.extend((v, depth + 1) for v in value)
        else:
            size += len(value) if isinstance(value, str) else 1
    return _too_big(size, "at least ") if size > max_saved_bytes() else None


def saved_problem(recipe: Recipe) -> Problem | None:
    """Why a run of `recipe` could not embed it in its pictures so that they run again, or None."""
    try:
        dump_recipe(recipe)
    except RecipeError as exc:
        return exc.problems[0]
    return None
