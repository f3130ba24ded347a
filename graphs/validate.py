"""Checking a recipe against the node specs, before anything runs.

`validate(recipe, registry)` finds every problem at once (unknown types,
parameters and inputs; missing, mistyped and out-of-range values; dangling
references; socket type mismatches; cycles) and raises one RecipeError
listing them all, each with file, line, node and field. On success it
returns the checked parameters of every node, defaults filled in.

It runs no node, loads no weights and opens no input file: input paths are
checked to stay inside the allowed folders and to name a file there. Nodes
with a `check` hook (the model and objective nodes) then check, in the
order data flows, what only the architecture tells: layer paths, channel
widths, class names. Reading the recipe text (and its structural problems)
is `recipe.py`'s job.
"""
from __future__ import annotations

import difflib
import itertools
import re
import unicodedata
from typing import Any, Mapping

from dreamnodes.files import InputFileError, outside_problem, resolve_input
from dreamnodes.errors import Problem, RecipeError
from dreamnodes.limits import DEFAULT_LIMITS, Limits
from dreamnodes.spec import Checking, NodeSpec, Param, node_field, placeholders

from .recipe import Recipe, RecipeNode, Ref, saved_problem


MAX_PROBLEMS = 500
#: the search for cycles stops once the problems found and the cycles reach this many
MAX_CYCLE_SEARCH = 200


#: "Did you mean" hints: words and candidates longer than this are not compared, a hint compares at
#: most this many candidates (of the first 4 x as many), and one validation compares at most
#: HINT_BUDGET pairs of characters in all (comparing two words costs up to the product of their lengths)
HINT_MAX_LEN = 64
HINT_MAX_CANDIDATES = 1000
HINT_BUDGET = 2_000_000


class _Hints:
    """The "Did you mean" hints of one validation, under one budget of work: over a recipe of
    thousands of misspelt names, the first problems get hints and the rest none, in seconds."""

    def __init__(self, budget: int = HINT_BUDGET):
        self.budget = budget

    def __call__(self, word: str, options) -> str:
        if self.budget <= 0 or len(word) > HINT_MAX_LEN:
            return ""
        # ratio() >= 0.6 needs lengths within a factor 0.6 / 1.4 of each other: others cannot match
        lo, hi = len(word) * 3 / 7, len(word) * 7 / 3
        candidates = []
        for option in itertools.islice(options, 4 * HINT_MAX_CANDIDATES):
            if isinstance(option, str) and lo <= len(option) <= min(hi, HINT_MAX_LEN):
                cost = len(word) * len(option)  # what comparing the two can cost, at worst
                if cost > self.budget or len(candidates) == HINT_MAX_CANDIDATES:
                    break
                self.budget -= cost
                candidates.append(option)
        self.budget -= 1
        close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
        return f" Did you mean '{close[0]}'?" if close else ""


def _not_one_of(name: str, what: str, type_name: str, kind: str, names: list[str], hint) -> str:
    """The message for a parameter or input `name` that the node type does not have as such."""
    return (f"'{name}' is {what} of {type_name}.{hint(name, names)} "
            f"{kind}: {', '.join(names) or 'none'}")


def to_digraph(recipe: Recipe):
    """A networkx DiGraph: nodes are node ids; an edge u -> v means v reads an output of u."""
    import networkx as nx  # only to run a recipe or name its cycles: validating needs no networkx

    g = nx.DiGraph()
    for nid, n in recipe.nodes.items():
        g.add_node(nid)
    for nid, n in recipe.nodes.items():
        for iname, ref in n.input_refs():
            if ref.node in recipe.nodes:
                g.add_edge(ref.node, nid)
    return g


def resolve_output(spec: NodeSpec, ref: Ref):
    if ref.output is None:
        return spec.outputs[0] if len(spec.outputs) == 1 else None
    return spec.output(ref.output)


def _pixels_problem(spec: NodeSpec, params: dict[str, Any], limits: Limits) -> tuple[str, str] | None:
    """(field, message) if the pictures a node makes are over the pixel budget.

    A picture is taken as the two largest side parameters of the node (width x height), or the
    square of its only one (a long side); a node with a batch or frames parameter makes that many."""
    sides = sorted(((params[p.name], p.name) for p in spec.params
                    if p.limit == "side" and isinstance(params.get(p.name), int)), reverse=True)
    if not sides:
        return None
    (a, field), b = sides[0], (sides[1][0] if len(sides) > 1 else sides[0][0])
    def count(kind: str) -> int:
        return next((params[p.name] for p in spec.params if p.limit == kind and isinstance(params.get(p.name), int)), 1)

    batch, frames = count("batch"), count("frames")
    pixels = a * b * batch * frames
    bound = limits.bound("pixels", None)
    if pixels <= bound:
        return None
    n, noun = (batch * frames, "frames" if frames > 1 else "pictures")
    what = f"a {a} x {b} picture is" if n == 1 else f"{n} {noun} of {a} x {b} are"
    return field, (f"{what} {pixels:,} pixels, over the limit of {bound:,} pixels at once; make it smaller, "
                   f"or if this machine can take it, run with --limit pixels={pixels}")


def input_problem(path: str, input_roots) -> str | None:
    """Why the input file `path` cannot be read (outside the allowed folders, missing, not a
    regular file, an unknown sample), as the run would say it, or None. Nothing is opened."""
    try:
        resolve_input(path, input_roots)
    except InputFileError as exc:
        return str(exc)
    return None


def _field_path(nid: str, n: RecipeNode, spec: NodeSpec, name: str | None) -> tuple:
    """Where in the recipe a problem of field `name` is: the value, else the section it is left out of."""
    section, given = ("params", n.params) if spec.param(name or "") else ("inputs", n.inputs)
    if name is None or not (spec.param(name) or spec.input(name)):
        return ("nodes", nid)
    return ("nodes", nid, section, name) if name in given else ("nodes", nid, section)


def _order(recipe: Recipe) -> list[str]:
    """The nodes, each after the nodes it reads (in recipe order where that leaves a choice); the
    nodes of a cycle are left out (the cycle is reported on its own)."""
    sources = {nid: {ref.node for _, ref in n.input_refs() if ref.node in recipe.nodes and ref.node != nid}
               for nid, n in recipe.nodes.items()}
    readers: dict[str, list[str]] = {nid: [] for nid in recipe.nodes}
    for nid, srcs in sources.items():
        for src in srcs:
            readers[src].append(nid)
    waiting = {nid: len(srcs) for nid, srcs in sources.items()}
    ready = [nid for nid in reversed(list(recipe.nodes)) if waiting[nid] == 0]
    order = []
    while ready:
        nid = ready.pop()
        order.append(nid)
        for reader in reversed(readers[nid]):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.append(reader)
    return order


def _cycles(recipe: Recipe, found: int) -> list[list[str]]:
    """The cycles of two or more nodes, each from its first node in the recipe, in recipe order.

    The search stops once `found` (the problems found so far) and the cycles reach MAX_CYCLE_SEARCH."""
    if len(_order(recipe)) == len(recipe.nodes):  # every node ordered: no cycle
        return []
    import networkx as nx

    g = to_digraph(recipe)
    # networkx yields cycles in an order (and from a start node) that varies with string hashing;
    # start each at its first node in the recipe and sort them, so the report is the same every run
    pos = {nid: i for i, nid in enumerate(recipe.nodes)}
    cycles = []
    for cycle in nx.simple_cycles(g):
        if len(cycle) == 1:
            continue  # self-references are reported with the node's inputs
        k = min(range(len(cycle)), key=lambda i: pos[cycle[i]])
        cycles.append(cycle[k:] + cycle[:k])
        if found + len(cycles) > MAX_CYCLE_SEARCH:
            break
    return sorted(cycles, key=lambda c: [pos[n] for n in c])


class _Validation:
    """One run of `validate`: the recipe and what it is checked against, the problems found so far
    (the recipe's own first) and the checked parameters of every node."""

    def __init__(self, recipe: Recipe, registry: Mapping[str, NodeSpec], limits: Limits, input_roots,
                 facts_folder=None):
        self.recipe = recipe
        self.registry = registry
        self.limits = limits
        self.input_roots = input_roots
        self.facts_folder = facts_folder
        self.problems: list[Problem] = list(recipe.problems)
        self.resolved: dict[str, dict[str, Any]] = {}
        self.hint = _Hints()
        self.bad: set[str] = set()  # the nodes a problem was reported on
        self.facts: dict[str, Any] = {}  # by node: what its check hook found out

    def report(self, message: str, node: str | None = None, field: str | None = None, path: tuple = ()):
        self.problems.append(self.recipe.problem(message, node, field, path))
        if node is not None:
            self.bad.add(node)
        self.stop_if_too_many()  # one node can have thousands of problems too

    def stop_if_too_many(self):
        """A recipe this broken: stop early, report what was found."""
        if len(self.problems) >= MAX_PROBLEMS:
            self.problems.insert(0, self.recipe.problem(
                f"validation stopped after {MAX_PROBLEMS} problems; fix these first"))
            raise RecipeError(self.problems)

    def node(self, nid: str, n: RecipeNode):
        """Check one node: its type, its parameters and its inputs."""
        spec = self.registry.get(n.type)
        if spec is None:
            if n.type:  # a node without a type was reported when the recipe was read
                self.report(f"unknown node type '{n.type}'.{self.hint(n.type, self.registry)} "
                            "('dreamnodes nodes' lists the types)", nid, "type", ("nodes", nid, "type"))
            return
        self.resolved[nid] = self.params(nid, n, spec)
        self.files(nid, n, spec, self.resolved[nid])
        for iname, value in n.inputs.items():
            self.input(nid, n, spec, iname, value)
        for inp in spec.inputs:
            if not inp.optional and inp.name not in n.inputs:
                self.report(f"input '{inp.name}' ({inp.describe()}) is not connected; wire it under 'inputs'",
                            nid, inp.name, ("nodes", nid, "inputs"))

    def params(self, nid: str, n: RecipeNode, spec: NodeSpec) -> dict[str, Any]:
        """The checked parameters of one node, defaults filled in; the wrong ones are reported and left out."""
        params: dict[str, Any] = {}
        bad_params = False
        for pname, value in n.params.items():
            p = spec.param(pname)
            if p is None:
                what = "an input (wire it under 'inputs')" if spec.input(pname) else "not a parameter"
                self.report(_not_one_of(pname, what, n.type, "Parameters", [q.name for q in spec.params], self.hint),
                            nid, pname, ("nodes", nid, "params", pname))
                continue
            checked, err = self.param_value(p, value)
            if err:
                self.report(err, nid, pname, ("nodes", nid, "params", pname))
                bad_params = True
            else:
                params[pname] = checked
        bad_params = self.defaults(nid, n, spec, params) or bad_params
        if not bad_params:
            too_big = _pixels_problem(spec, params, self.limits)
            if too_big:
                self.report(too_big[1], nid, too_big[0], ("nodes", nid, "params", too_big[0]))
        return params

    def param_value(self, p: Param, value: Any) -> tuple[Any, str | None]:
        """(the checked value, what is wrong with it or None): its kind, range, limit and folder."""
        checked, err = p.check(value, self.limits)
        if err:
            return checked, f"{err} (expected {p.describe()})"
        if p.kind == "path" and self.input_roots is not None:
            return checked, outside_problem(checked, self.input_roots)
        return checked, None

    def files(self, nid: str, n: RecipeNode, spec: NodeSpec, params: dict[str, Any]):
        """Report the input files (path parameters inside the allowed folders) that are not there."""
        for p in spec.params:
            value = params.get(p.name)
            if p.kind != "path" or not isinstance(value, str) or self.input_roots is None:
                continue
            problem = input_problem(value, self.input_roots)
            if problem:
                at = ("nodes", nid, "params", p.name) if p.name in n.params else ("nodes", nid, "params")
                self.report(problem, nid, p.name, at)

    def defaults(self, nid: str, n: RecipeNode, spec: NodeSpec, params: dict[str, Any]) -> bool:
        """Fill in the parameters a node leaves out; report the required ones, and defaults over a
        lowered limit (True if there was such a default)."""
        bad = False
        for p in spec.params:
            if p.name in n.params:
                continue
            if p.required:
                self.report(f"parameter '{p.name}' is required ({p.describe()}); set it under 'params'",
                            nid, p.name, ("nodes", nid, "params"))
                continue
            params[p.name] = p.default
            if p.limit and p.limit in self.limits.overrides and isinstance(p.default, int):
                err = self.limits.over(p.limit, p.default, None)
                if err:
                    self.report(f"the default {err}", nid, p.name, ("nodes", nid, "params"))
                    bad = True
        return bad

    def input(self, nid: str, n: RecipeNode, spec: NodeSpec, iname: str, value: Ref | list[Ref]):
        """Check one wired input: that the node has it, that it takes one or a list as wired, and
        every reference in it."""
        inp = spec.input(iname)
        ipath = ("nodes", nid, "inputs", iname)
        if inp is None:
            what = "a parameter (set it under 'params')" if spec.param(iname) else "not an input"
            self.report(_not_one_of(iname, what, n.type, "Inputs", [i.name for i in spec.inputs], self.hint),
                        nid, iname, ipath)
            return
        if isinstance(value, list) and not inp.is_list:
            self.report(f"input '{iname}' takes one {inp.type.socket_name()}, not a list", nid, iname, ipath)
            return
        if inp.is_list and not isinstance(value, list):  # the node would get one item, not a list
            self.report(f"input '{iname}' takes a list of {inp.type.socket_name()}; write it as [{value}]",
                        nid, iname, ipath)
            return
        for ref in (value if isinstance(value, list) else [value]):
            self.reference(nid, iname, inp.type, ref)

    def reference(self, nid: str, iname: str, wanted: type, ref: Ref):
        """Check that `ref`, wired to input `iname` of node `nid`, names another node's output of
        the `wanted` socket type."""
        ipath = ("nodes", nid, "inputs", iname)
        src = self.recipe.nodes.get(ref.node)
        if src is None:
            self.report(f"input '{iname}' refers to node '{ref.node}', which is not in the recipe."
                        f"{self.hint(ref.node, self.recipe.nodes)}", nid, iname, ipath)
            return
        if ref.node == nid:
            self.report(f"input '{iname}' refers to the node itself; a node cannot feed itself", nid, iname, ipath)
            return
        sspec = self.registry.get(src.type)
        if sspec is None:
            return  # already reported on that node
        out = resolve_output(sspec, ref)
        if not sspec.outputs:
            self.report(f"node '{ref.node}' ({src.type}) has no outputs (it only writes files); it cannot feed "
                        f"input '{iname}'", nid, iname, ipath)
            return
        if out is None:
            names = ", ".join(o.name for o in sspec.outputs) or "none"
            msg = (f"node '{ref.node}' ({src.type}) has several outputs ({names}); write "
                   f"'{ref.node}.OUTPUT'" if ref.output is None else
                   f"node '{ref.node}' ({src.type}) has no output '{ref.output}' (outputs: {names})")
            self.report(msg, nid, iname, ipath)
            return
        if not issubclass(out.type, wanted):
            self.report(f"input '{iname}' takes {wanted.socket_name()}, but '{ref}' gives "
                        f"{out.type.socket_name()}", nid, iname, ipath)

    def outputs(self):
        """Report a node that writes a file another node writes too (one of the pictures would be
        lost), at the second one's path parameter. Paths are compared as the file they name:
        './a//B.png' and 'a/b.png' are one file (on a case-insensitive disk, too)."""
        seen: dict[str, str] = {}
        for nid, params in self.resolved.items():
            spec = self.registry[self.recipe.nodes[nid].type]
            for p in spec.params:
                value = params.get(p.name)
                if p.kind != "outpath" or not isinstance(value, str):
                    continue
                parts = [part for part in re.split(r"[\\/]+", value) if part not in ("", ".")]
                key = unicodedata.normalize("NFC", "/".join(parts)).casefold()
                first = seen.setdefault(key, nid)
                if first != nid:
                    self.report(f"'{value}' is also written by node '{first}' ({self.recipe.nodes[first].type}); "
                                "one of the two files would be lost: give each its own path",
                                nid, p.name, ("nodes", nid, "params", p.name))

    def output_fields(self):
        """Report a `{NODE.PARAM}` placeholder of an output path that names no node or parameter of
        the recipe, or another output path (see spec.placeholders)."""
        for nid, params in self.resolved.items():
            for p in self.registry[self.recipe.nodes[nid].type].params:
                value = params.get(p.name)
                if p.kind == "outpath" and isinstance(value, str):
                    for name in placeholders(value)[0]:
                        err = self.field_problem(name)
                        if err:
                            self.report(f"{{{name}}} in {value!r}: {err}", nid, p.name, ("nodes", nid, "params", p.name))

    def field_problem(self, name: str) -> str | None:
        """What is wrong with the `{NODE.PARAM}` field `name` of an output path, or None."""
        named = node_field(name)
        if named is None:
            return None
        node, param = named
        if node not in self.recipe.nodes:
            return (f"there is no node '{node}' in the recipe.{self.hint(node, self.recipe.nodes)} "
                    "A placeholder {NODE.PARAM} names a node's parameter, e.g. {dream.steps}")
        spec = self.registry.get(self.recipe.nodes[node].type)
        if spec is None:
            return None  # reported on that node
        p = spec.param(param)
        if p is None:
            names = [q.name for q in spec.params]
            return _not_one_of(param, "not a parameter", spec.type_name, "Parameters", names, self.hint)
        if p.kind == "outpath":
            return f"'{name}' is an output path itself; name a parameter that is not one"
        return None

    def node_checks(self):
        """Run the `check` hooks of the nodes (see `spec.Checking`), each after the nodes it reads,
        with the facts those found (a model's layers and classes): what a run would refuse seconds
        in, found before anything loads. A node with a problem already reported is not checked."""
        for nid in _order(self.recipe):
            spec = self.registry.get(self.recipe.nodes[nid].type)
            if spec is None or spec.check is None or nid in self.bad or nid not in self.resolved:
                continue
            n = self.recipe.nodes[nid]
            c = Checking(n.type, dict(self.resolved[nid]), self.input_facts(n), folder=self.facts_folder,
                         hint=self.hint, defaulted=frozenset(p.name for p in spec.params if p.name not in n.params))
            self.facts[nid] = spec.check(c)
            for name, message in c.problems:
                self.report(message, nid, name, _field_path(nid, n, spec, name))

    def input_facts(self, n: RecipeNode) -> dict[str, Any]:
        """{input name: the facts of what is wired to it (a list for a list input), None where unknown}."""
        def facts_of(ref: Ref) -> Any:
            src = self.recipe.nodes.get(ref.node)
            facts = self.facts.get(ref.node)
            sspec = self.registry.get(src.type) if src is not None else None
            if facts is None or sspec is None or not sspec.multi_output:
                return facts
            out = resolve_output(sspec, ref)
            return facts.get(out.name) if isinstance(facts, dict) and out is not None else None

        return {name: [facts_of(r) for r in value] if isinstance(value, list) else facts_of(value)
                for name, value in n.inputs.items()}

    def cycles(self):
        """Report every cycle (up to the search's cap) at the input of its first node that closes it."""
        for cycle in _cycles(self.recipe, len(self.problems)):
            ring = " -> ".join(cycle + [cycle[0]])
            iname = next(i for i, r in self.recipe.nodes[cycle[0]].input_refs() if r.node == cycle[-1])
            self.report(f"the nodes form a cycle ({ring}); a recipe must flow one way",
                        cycle[0], iname, ("nodes", cycle[0], "inputs", iname))


def validate(recipe: Recipe, registry: Mapping[str, NodeSpec], limits: Limits | None = None,
             input_roots=None, facts_folder=None) -> dict[str, dict[str, Any]]:
    """Check a recipe against the node specs; return the checked parameters of every node.

    `limits` bounds resource parameters (picture sizes, steps, frames, batches; default: each
    parameter's own range and `LIMITS`). With `input_roots` (the folders a run may read from),
    input file parameters are also checked to stay inside them and to name a file there. The
    nodes' `check` hooks then look at what the architecture alone tells (a layer path the model
    has not, a channel past a layer's width, a class name it does not know): they keep what they
    find in `facts_folder` (the catalogue's folder; None: found again every time).
    """
    check = _Validation(recipe, registry, limits or DEFAULT_LIMITS, input_roots, facts_folder)
    for nid, n in recipe.nodes.items():
        check.stop_if_too_many()
        check.node(nid, n)
    check.outputs()
    check.output_fields()
    check.cycles()
    check.node_checks()
    if not check.problems:  # the recipe a run embeds in its pictures must be one they can be run again with
        saved = saved_problem(recipe)
        if saved is not None:
            check.problems.append(saved)
    if check.problems:
        raise RecipeError(check.problems)
    return check.resolved
