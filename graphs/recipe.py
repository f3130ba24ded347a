"""The recipe model: nodes with parameters and wired inputs, plus metadata.

`load_recipe(path)` / `parse_recipe(text)` read a recipe; structural problems
(a node without a type, a malformed input reference...) are collected in
`Recipe.problems` rather than raised, so that `validate` can report every
problem at once. `dump_recipe` writes the canonical YAML; save -> load ->
save gives the same bytes.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamnodes.errors import Problem, RecipeError

from .migrate import SCHEMA_VERSION, migrate
from .yamlio import read_yaml, write_yaml

NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
TOP_KEYS = ("dreamnodes", "name", "description", "seed", "nodes", "editor")
NODE_KEYS = ("type", "inputs", "params")


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
        line = None
        p = path
        while line is None and p:
            line = self.lines.get(p)
            p = p[:-1]
        return Problem(message, self.file, line, node, field)

    @property
    def folder(self) -> Path | None:
        return Path(self.file).resolve().parent if self.file and not self.file.startswith("<") else None

    def copy(self) -> "Recipe":
        return copy.deepcopy(self)



def parse_recipe(text: str | bytes, file: str | None = None) -> Recipe:
    """Read recipe text. Raises RecipeError only when it cannot be read at all."""
    data, lines, dups = read_yaml(text, file)
    if not isinstance(data, dict):
        raise RecipeError(Problem("a recipe is a YAML mapping with the keys 'dreamnodes' (the schema "
                                  "version) and 'nodes'", file, 1))
    problems = list(dups)

    def where(path: tuple) -> int | None:
        while path:
            if path in lines:
                return lines[path]
            path = path[:-1]
        return None

    version = data.get("dreamnodes")
    if version is None:
        problems.append(Problem(f"the top-level key 'dreamnodes' (the schema version, currently "
                                f"{SCHEMA_VERSION}) is missing; add 'dreamnodes: {SCHEMA_VERSION}'", file, 1,
                                field="dreamnodes"))
        version = SCHEMA_VERSION
    elif not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append(Problem(f"'dreamnodes' is the schema version, a whole number; got {version!r}",
                                file, where(("dreamnodes",)), field="dreamnodes"))
        version = SCHEMA_VERSION
    elif version > SCHEMA_VERSION:
        raise RecipeError(Problem(f"this recipe uses schema version {version}, newer than this dreamnodes "
                                  f"understands ({SCHEMA_VERSION}); upgrade dreamnodes", file,
                                  where(("dreamnodes",)), field="dreamnodes"))
    elif version < SCHEMA_VERSION:
        data = migrate(data, version)

    for key in data:
        if key not in TOP_KEYS:
            problems.append(Problem(f"unknown top-level key '{key}'; a recipe has {', '.join(TOP_KEYS)}",
                                    file, where((key,)), field=str(key)))
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        problems.append(Problem(f"'seed' must be a whole number >= 0, got {seed!r}", file, where(("seed",)),
                                field="seed"))
        seed = 0
    name = data.get("name", "")
    if not isinstance(name, str):
        problems.append(Problem("'name' must be a string", file, where(("name",)), field="name"))
        name = str(name)
    desc = data.get("description", "")
    if not isinstance(desc, str):
        problems.append(Problem("'description' must be a string", file, where(("description",)),
                                field="description"))
        desc = str(desc)
    editor = data.get("editor") or {}
    if not isinstance(editor, dict):
        problems.append(Problem("'editor' must be a mapping (layout only)", file, where(("editor",)), field="editor"))
        editor = {}

    raw_nodes = data.get("nodes")
    nodes: dict[str, RecipeNode] = {}
    if raw_nodes is None:
        problems.append(Problem("the recipe has no 'nodes' mapping; add the nodes to run", file, 1, field="nodes"))
        raw_nodes = {}
    elif not isinstance(raw_nodes, dict):
        problems.append(Problem("'nodes' must be a mapping of node id -> {type, inputs, params}", file,
                                where(("nodes",)), field="nodes"))
        raw_nodes = {}
    for nid, body in raw_nodes.items():
        path = ("nodes", nid)
        nid_s = str(nid)
        if not isinstance(nid, str) or not NODE_ID.match(nid):
            problems.append(Problem(f"node id {nid!r} must start with a letter and hold only letters, digits, "
                                    "'_' and '-' (no dots: a dot separates a node from its output)",
                                    file, where(path), node=nid_s))
            continue
        if not isinstance(body, dict):
            problems.append(Problem("a node is a mapping with 'type' and optional 'inputs' and 'params'",
                                    file, where(path), node=nid))
            continue
        for key in body:
            if key not in NODE_KEYS:
                problems.append(Problem(f"unknown key '{key}'; a node has {', '.join(NODE_KEYS)}",
                                        file, where(path + (key,)), node=nid, field=str(key)))
        ntype = body.get("type")
        if not isinstance(ntype, str) or not ntype:
            problems.append(Problem("the node has no 'type' (e.g. type: image.load)", file, where(path), node=nid,
                                    field="type"))
            ntype = ""
        params = body.get("params") or {}
        if not isinstance(params, dict):
            problems.append(Problem("'params' must be a mapping of parameter -> value", file,
                                    where(path + ("params",)), node=nid, field="params"))
            params = {}
        raw_inputs = body.get("inputs") or {}
        inputs: dict[str, Ref | list[Ref]] = {}
        if not isinstance(raw_inputs, dict):
            problems.append(Problem("'inputs' must be a mapping of input -> node id (or node.output)", file,
                                    where(path + ("inputs",)), node=nid, field="inputs"))
            raw_inputs = {}
        for iname, v in raw_inputs.items():
            ipath = path + ("inputs", iname)
            vals = v if isinstance(v, list) else [v]
            refs = []
            for item in vals:
                if not isinstance(item, str) or not item or item.count(".") > 1 \
                        or not NODE_ID.match(item.partition(".")[0]):
                    problems.append(Problem(f"input '{iname}' must name a node ('node' or 'node.output'), "
                                            f"got {item!r}", file, where(ipath), node=nid, field=str(iname)))
                    continue
                refs.append(Ref.parse(item))
            if len(refs) == len(vals):
                inputs[str(iname)] = refs if isinstance(v, list) else refs[0]
        nodes[nid] = RecipeNode(nid, ntype, {str(k): v for k, v in params.items()}, inputs)
    return Recipe(nodes, name, desc, seed, editor, SCHEMA_VERSION, file, lines, problems)


def load_recipe(path: str | Path) -> Recipe:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise RecipeError(Problem(f"no such recipe file: {p}")) from None
    except IsADirectoryError:
        raise RecipeError(Problem(f"{p} is a folder; give a recipe file (.yaml)")) from None
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
    """The canonical YAML text of a recipe."""
    return write_yaml(recipe_to_data(recipe))
