"""Checking a recipe against the node specs, before anything runs.

`validate(recipe, registry)` finds every problem at once (unknown types,
parameters and inputs; missing, mistyped and out-of-range values; dangling
references; socket type mismatches; cycles) and raises one RecipeError
listing them all, each with file, line, node and field. On success it
returns the checked parameters of every node, defaults filled in.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping

import networkx as nx

from dreamnodes.files import outside_problem
from dreamnodes.errors import Problem, RecipeError
from dreamnodes.limits import DEFAULT_LIMITS, Limits
from dreamnodes.spec import NodeSpec

from .recipe import Recipe, Ref


MAX_PROBLEMS = 500


def _hint(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def to_digraph(recipe: Recipe) -> nx.DiGraph:
    """Nodes are node ids; an edge u -> v means v reads an output of u."""
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


def validate(recipe: Recipe, registry: Mapping[str, NodeSpec], limits: Limits | None = None,
             input_roots=None) -> dict[str, dict[str, Any]]:
    """Check a recipe against the node specs; return the checked parameters of every node.

    `limits` bounds resource parameters (picture sizes, steps, frames, batches; default: each
    parameter's own range and `LIMITS`). With `input_roots` (the folders a run may read from),
    input file parameters are also checked to stay inside them.
    """
    limits = limits or DEFAULT_LIMITS
    problems: list[Problem] = list(recipe.problems)
    resolved: dict[str, dict[str, Any]] = {}
    for nid, n in recipe.nodes.items():
        if len(problems) >= MAX_PROBLEMS:  # a recipe this broken: stop early, report what was found
            problems.insert(0, recipe.problem(f"validation stopped after {MAX_PROBLEMS} problems; fix these first"))
            raise RecipeError(problems)
        base = ("nodes", nid)
        spec = registry.get(n.type)
        if spec is None:
            if n.type:
                problems.append(recipe.problem(
                    f"unknown node type '{n.type}'.{_hint(n.type, registry)} "
                    "('dreamnodes nodes' lists the types)", nid, "type", base + ("type",)))
            continue
        params: dict[str, Any] = {}
        bad_params = False
        for pname, value in n.params.items():
            p = spec.param(pname)
            if p is None:
                what = "an input (wire it under 'inputs')" if spec.input(pname) else "not a parameter"
                problems.append(recipe.problem(
                    f"'{pname}' is {what} of {n.type}.{_hint(pname, [q.name for q in spec.params])} "
                    f"Parameters: {', '.join(q.name for q in spec.params) or 'none'}",
                    nid, pname, base + ("params", pname)))
                continue
            checked, err = p.check(value, limits)
            if err:
                err = f"{err} (expected {p.describe()})"
            elif p.kind == "path" and input_roots is not None:
                err = outside_problem(checked, input_roots)
            if err:
                problems.append(recipe.problem(err, nid, pname, base + ("params", pname)))
                bad_params = True
            else:
                params[pname] = checked
        for p in spec.params:
            if p.name not in n.params:
                if p.required:
                    problems.append(recipe.problem(
                        f"parameter '{p.name}' is required ({p.describe()}); set it under 'params'",
                        nid, p.name, base + ("params",)))
                else:
                    params[p.name] = p.default
                    if p.limit and p.limit in limits.overrides and isinstance(p.default, int):
                        err = limits.over(p.limit, p.default, None)
                        if err:
                            problems.append(recipe.problem(f"the default {err}", nid, p.name, base + ("params",)))
                            bad_params = True
        if not bad_params:
            too_big = _pixels_problem(spec, params, limits)
            if too_big:
                problems.append(recipe.problem(too_big[1], nid, too_big[0], base + ("params", too_big[0])))
        resolved[nid] = params

        for iname, value in n.inputs.items():
            inp = spec.input(iname)
            ipath = base + ("inputs", iname)
            if inp is None:
                what = "a parameter (set it under 'params')" if spec.param(iname) else "not an input"
                problems.append(recipe.problem(
                    f"'{iname}' is {what} of {n.type}.{_hint(iname, [i.name for i in spec.inputs])} "
                    f"Inputs: {', '.join(i.name for i in spec.inputs) or 'none'}", nid, iname, ipath))
                continue
            if isinstance(value, list) and not inp.is_list:
                problems.append(recipe.problem(f"input '{iname}' takes one {inp.type.socket_name()}, "
                                               "not a list", nid, iname, ipath))
                continue
            if inp.is_list and not isinstance(value, list):  # the node would get one item, not a list
                problems.append(recipe.problem(f"input '{iname}' takes a list of {inp.type.socket_name()}; "
                                               f"write it as [{value}]", nid, iname, ipath))
                continue
            for ref in (value if isinstance(value, list) else [value]):
                src = recipe.nodes.get(ref.node)
                if src is None:
                    problems.append(recipe.problem(
                        f"input '{iname}' refers to node '{ref.node}', which is not in the recipe."
                        f"{_hint(ref.node, recipe.nodes)}", nid, iname, ipath))
                    continue
                if ref.node == nid:
                    problems.append(recipe.problem(f"input '{iname}' refers to the node itself; "
                                                   "a node cannot feed itself", nid, iname, ipath))
                    continue
                sspec = registry.get(src.type)
                if sspec is None:
                    continue  # already reported on that node
                out = resolve_output(sspec, ref)
                if not sspec.outputs:
                    problems.append(recipe.problem(
                        f"node '{ref.node}' ({src.type}) has no outputs (it only writes files); it cannot feed "
                        f"input '{iname}'", nid, iname, ipath))
                    continue
                if out is None:
                    names = ", ".join(o.name for o in sspec.outputs) or "none"
                    msg = (f"node '{ref.node}' ({src.type}) has several outputs ({names}); write "
                           f"'{ref.node}.OUTPUT'" if ref.output is None else
                           f"node '{ref.node}' ({src.type}) has no output '{ref.output}' (outputs: {names})")
                    problems.append(recipe.problem(msg, nid, iname, ipath))
                    continue
                if not issubclass(out.type, inp.type):
                    problems.append(recipe.problem(
                        f"input '{iname}' takes {inp.type.socket_name()}, but '{ref}' gives "
                        f"{out.type.socket_name()}", nid, iname, ipath))
        for inp in spec.inputs:
            if not inp.optional and inp.name not in n.inputs:
                problems.append(recipe.problem(
                    f"input '{inp.name}' ({inp.describe()}) is not connected; wire it under 'inputs'",
                    nid, inp.name, base + ("inputs",)))

    g = to_digraph(recipe)
    # networkx yields cycles in an order (and from a start node) that varies with string hashing;
    # start each at its first node in the recipe and sort them, so the report is the same every run
    pos = {nid: i for i, nid in enumerate(recipe.nodes)}
    cycles = []
    for cycle in nx.simple_cycles(g):
        if len(cycle) == 1:
            continue  # self-references were reported above
        k = min(range(len(cycle)), key=lambda i: pos[cycle[i]])
        cycles.append(cycle[k:] + cycle[:k])
        if len(problems) + len(cycles) > 200:
            break
    for cycle in sorted(cycles, key=lambda c: [pos[n] for n in c]):
        ring = " -> ".join(cycle + [cycle[0]])
        # the input of the first node that closes the ring
        iname = next(i for i, r in recipe.nodes[cycle[0]].input_refs() if r.node == cycle[-1])
        problems.append(recipe.problem(f"the nodes form a cycle ({ring}); a recipe must flow one way",
                                       cycle[0], iname, ("nodes", cycle[0], "inputs", iname)))
    if problems:
        raise RecipeError(problems)
    return resolved
