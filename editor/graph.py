"""The canvas as a view of a recipe: nodeeditor nodes for dreamnodes specs,
the rules for edges, and the conversion between a canvas and a `Recipe`.

A canvas node stands for one `RecipeNode`: its sockets are the spec's inputs
and outputs (typed, in the spec's order), its widgets the spec's parameters,
and it keeps the recipe's id and the parameters the recipe sets (defaults
stay implicit, as in a hand-written recipe). Everything is held in
nodeeditor's own objects, so nodeeditor's undo/redo history, clipboard and
selection work unchanged; `DreamScene.to_recipe()` and `DreamScene.load()`
translate. Layout lives only under the recipe's `editor: {positions: ...}`.

An edge is refused (with a reason in words) when the output's type does not
fit the input, or when it would close a cycle: the same rules
`graphs.validate` applies to a recipe, checked while dragging.
"""
from __future__ import annotations

import copy
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from nodeeditor.node_edge import EDGE_TYPE_BEZIER, Edge
from nodeeditor.node_node import Node
from nodeeditor.node_scene import Scene
from nodeeditor.node_socket import LEFT_BOTTOM, LEFT_CENTER, LEFT_TOP, RIGHT_TOP, Socket as NESocket

from dreamnodes.graphs.recipe import NODE_ID, Recipe, RecipeNode, Ref
from dreamnodes.registry import load_all
from dreamnodes.spec import Input, NodeSpec, Output
from dreamnodes.types import Image, Socket

from .nodeview import (NODE_W, PAD, ROW_H, DreamGraphicsEdge, DreamGraphicsNode, DreamGraphicsSocket, NodeContent,
                       STATE_WORDS)

COLUMN_GAP = 90
ROW_GAP = 40
PICTURE_ROOM = 180


# -- specs for node types that are not installed ---------------------------------
UNKNOWN_OUTPUT = "out"  # the output of an unknown node that other nodes name without '.output'


def unknown_spec(type_name: str, inputs: list[tuple[str, bool]], outputs: list[str]) -> NodeSpec:
    """A stand-in spec for a type no installed pack provides, so its node (and its
    wiring) survive opening and saving; validation reports the unknown type."""
    return NodeSpec(type_name, None, tuple(Input(n, Socket, lst, True) for n, lst in inputs), (),
                    tuple(Output(o, Socket) for o in outputs or [UNKNOWN_OUTPUT]),
                    f"unknown node type '{type_name}': no installed node pack provides it", "", "")


def is_unknown(spec: NodeSpec) -> bool:
    return spec.fn is None


# -- sockets, edges ----------------------------------------------------------------
class DreamSocket(NESocket):
    """A socket that knows which spec input or output it is (`port`)."""

    Socket_GR_Class = DreamGraphicsSocket
    port: Input | Output | None = None


class DreamEdge(Edge):
    def getGraphicsEdgeClass(self):
        return DreamGraphicsEdge


def _ends(a, b):
    """(output socket, input socket) of a pair given in either order, or None."""
    if a.is_input == b.is_input:
        return None
    return (b, a) if a.is_input else (a, b)


def _path(start: "DreamNode", goal: "DreamNode") -> list["DreamNode"] | None:
    """A path of edges start -> ... -> goal, following data flow."""
    prev = {start: None}
    todo = [start]
    while todo:
        n = todo.pop(0)
        if n is goal:
            out = []
            while n is not None:
                out.append(n)
                n = prev[n]
            return out[::-1]
        for sock in n.outputs:
            for e in sock.edges:
                other = e.getOtherSocket(sock)
                if other is not None and other.node not in prev:
                    prev[other.node] = n
                    todo.append(other.node)
    return None


def edge_problem(a, b) -> str | None:
    """Why an edge between sockets a and b may not be made, in words (None: it may)."""
    if not isinstance(a, DreamSocket) or not isinstance(b, DreamSocket):
        return None
    ends = _ends(a, b)
    if ends is None:
        side = "inputs" if a.is_input else "outputs"
        return f"cannot connect two {side}: drag from an output (right side) to an input (left side)"
    out, inp = ends
    src, dst = out.node, inp.node
    if src is dst:
        return f"'{src.node_id}' cannot feed itself"
    o, i = out.port, inp.port
    if not (is_unknown(src.spec) or is_unknown(dst.spec)) and not issubclass(o.type, i.type):
        return (f"input '{dst.node_id}.{i.name}' takes {i.describe()}, but '{src.node_id}.{o.name}' gives "
                f"{o.type.socket_name()}")
    loop = _path(dst, src)
    if loop:
        ring = " -> ".join(n.node_id for n in loop + [dst])
        return f"connecting '{src.node_id}' to '{dst.node_id}' would make a cycle ({ring}); a recipe must flow one way"
    return None


def validate_edge(start, end) -> bool:
    """nodeeditor's edge validator hook, for the ways of wiring this module does not see
    (re-routing an edge with Ctrl+drag, dropping a node onto an edge)."""
    problem = edge_problem(start, end)
    if problem is not None:
        scene = getattr(getattr(start, "node", None), "scene", None)
        if isinstance(scene, DreamScene):
            scene.refused(problem)
        return False
    return True


if validate_edge not in Edge.edge_validators:
    Edge.registerEdgeValidator(validate_edge)


def ordered_edges(sock) -> list:
    fn = getattr(sock, "orderedEdges", None)  # nodeeditor-qtpy keeps the order of list inputs
    return fn() if fn is not None else list(sock.edges)


# -- nodes -----------------------------------------------------------------------
class DreamNode(Node):
    """One recipe node on the canvas."""

    GraphicsNode_class = DreamGraphicsNode
    NodeContent_class = NodeContent
    Socket_class = DreamSocket

    def __init__(self, scene: "DreamScene", spec: NodeSpec, node_id: str | None = None,
                 params: dict | None = None):
        self.spec = spec
        self.node_id = node_id or scene.fresh_id(spec.type_name)
        self.params: dict[str, Any] = copy.deepcopy(dict(params or {}))
        #: inputs the canvas cannot draw as edges (unknown names, dangling references): kept verbatim
        self.extra_inputs: dict[str, Any] = {}
        self.seq = scene.next_seq()
        self.state = ""
        self.progress: tuple[int, int, str] | None = None
        self.seconds: float | None = None
        self.problems: list[str] = []
        self.image = None
        super().__init__(scene, self.node_id, [i.type.socket_name() for i in spec.inputs],
                         [o.type.socket_name() for o in spec.outputs])
        for sock, port in zip(self.inputs, spec.inputs):
            sock.port = port
            sock.is_multi_edges = port.is_list
            if port.is_list and hasattr(sock.grSocket, "setShape"):
                sock.grSocket.setShape("square")
        for sock, port in zip(self.outputs, spec.outputs):
            sock.port = port

    def initSettings(self):
        super().initSettings()
        self.input_socket_position = LEFT_TOP
        self.output_socket_position = RIGHT_TOP
        self.socket_spacing = ROW_H
        self.input_multi_edged = False
        self.output_multi_edged = True

    def getSocketPosition(self, index, position, num_out_of=1):
        gr = self.grNode
        x = 0 if position in (LEFT_TOP, LEFT_CENTER, LEFT_BOTTOM) else gr.width
        return [x, gr.header + PAD + index * ROW_H + ROW_H / 2]

    # -- data ------------------------------------------------------------------
    def to_data(self) -> OrderedDict:
        data = OrderedDict([("type", self.spec.type_name), ("node_id", self.node_id),
                            ("params", copy.deepcopy(self.params)), ("seq", self.seq),
                            ("extra_inputs", copy.deepcopy(self.extra_inputs))])
        if is_unknown(self.spec):
            data["ports"] = {"inputs": [[i.name, i.is_list] for i in self.spec.inputs],
                             "outputs": [o.name for o in self.spec.outputs]}
        return data

    def from_data(self, data: dict) -> None:
        self.node_id = data["node_id"]
        self.params = copy.deepcopy(dict(data.get("params") or {}))
        self.extra_inputs = copy.deepcopy(dict(data.get("extra_inputs") or {}))
        self.seq = data.get("seq", self.seq)
        self.title = self.node_id
        self.content.refresh()

    def deserialize(self, data, hashmap={}, restore_id=True, *args, **kwargs):  # noqa: B006
        ok = super().deserialize(data, hashmap, restore_id, *args, **kwargs)
        if not restore_id:  # a paste: a new node next to the original, with an id of its own
            self.node_id = self.scene.unique_id(self.node_id, exclude=self)
            self.seq = self.scene.next_seq()
            self.title = self.node_id
        return ok

    # -- editing -----------------------------------------------------------------
    def set_param(self, name: str, value: Any) -> None:
        if name in self.params and self.params[name] == value:
            return
        self.params[name] = value
        self.scene.param_changed(self, name)

    def rename(self, new_id: str) -> str | None:
        """Give the node a new id; returns a problem in words, or None."""
        if new_id == self.node_id:
            return None
        if not NODE_ID.match(new_id):
            return (f"'{new_id}' is not a node id: start with a letter, then letters, digits, '_' or '-' "
                    "(no dots)")
        if any(n.node_id == new_id for n in self.scene.dream_nodes()):
            return f"there is already a node '{new_id}'"
        self.node_id = new_id
        self.title = new_id
        self.scene.history.storeHistory(f"Rename node to {new_id}", setModified=True)
        self.scene.changed()
        return None

    def onInputChanged(self, socket):
        super().onInputChanged(socket)
        self.scene.mark_stale(self)

    # -- run state -----------------------------------------------------------------
    def set_state(self, state: str, progress=None, seconds=None) -> None:
        self.state = state
        self.progress = progress
        self.seconds = seconds
        if self.grNode is not None:
            self.grNode.update()

    def status_text(self) -> str:
        s = self.state
        if s == "running" and self.progress:
            step, total, label = self.progress
            return f"running {step}/{total}" + (f"  {label}" if label else "")
        if s == "done" and self.seconds is not None:
            return f"done in {self.seconds:.2f} s"
        if s == "cached":
            return "cached: not recomputed"
        return STATE_WORDS.get(s, s)

    def set_problems(self, problems: list[str]) -> None:
        self.problems = list(problems)
        self.content.show_message("\n".join(problems))
        if self.grNode is not None:
            self.grNode.update()

    def set_picture(self, qimage) -> None:
        self.image = qimage
        self.content.show_picture(qimage)

    def descendants(self) -> list["DreamNode"]:
        seen, todo = [], [self]
        while todo:
            n = todo.pop(0)
            for sock in n.outputs:
                for e in sock.edges:
                    other = e.getOtherSocket(sock)
                    if other is not None and other.node not in seen and other.node is not self:
                        seen.append(other.node)
                        todo.append(other.node)
        return seen


# -- the scene -------------------------------------------------------------------
@dataclass
class RecipeMeta:
    """What a recipe holds besides its nodes."""

    name: str = ""
    description: str = ""
    seed: int = 0
    editor: dict = field(default_factory=dict)  # the recipe's `editor:` section; positions are rewritten
    file: str | None = None  # where relative input paths are resolved from

    @property
    def folder(self) -> Path | None:
        return Path(self.file).resolve().parent if self.file and not self.file.startswith("<") else None


class DreamScene(Scene):
    """A nodeeditor scene whose nodes are recipe nodes."""

    def __init__(self):
        self.registry = load_all()
        self.meta = RecipeMeta()
        self._seq = 0
        self.on_refused: list[Callable[[str], None]] = []
        self.on_param: list[Callable[[DreamNode, str], None]] = []
        self.on_changed: list[Callable[[], None]] = []
        super().__init__()

    # nodeeditor hooks
    def getNodeClassFromData(self, data):
        content = data.get("content") or {}
        return partial(DreamNode, spec=self.spec_for(content.get("type", ""), content.get("ports")))

    def getEdgeClass(self):
        return DreamEdge

    def spec_for(self, type_name: str, ports: dict | None = None) -> NodeSpec:
        spec = self.registry.get(type_name)
        if spec is None:
            ports = ports or {}
            spec = unknown_spec(type_name, [tuple(p) for p in ports.get("inputs", [])], ports.get("outputs", []))
        return spec

    # bookkeeping
    def dream_nodes(self) -> list[DreamNode]:
        return [n for n in self.nodes if isinstance(n, DreamNode)]

    def node(self, node_id: str) -> DreamNode | None:
        return next((n for n in self.dream_nodes() if n.node_id == node_id), None)

    def next_seq(self) -> int:
        self._seq = max([self._seq] + [n.seq + 1 for n in self.dream_nodes()])
        self._seq += 1
        return self._seq - 1

    def fresh_id(self, type_name: str) -> str:
        family, _, op = type_name.partition(".")
        op = op.replace(".", "_") or family
        shared = sum(1 for t in self.registry if t.partition(".")[2] == op) > 1
        return self.unique_id(f"{family}_{op}" if shared else op)

    def unique_id(self, base: str, exclude: DreamNode | None = None) -> str:
        taken = {n.node_id for n in self.dream_nodes() if n is not exclude}
        if base not in taken:
            return base
        stem = re.sub(r"_\d+$", "", base)
        k = 2
        while f"{stem}_{k}" in taken:
            k += 1
        return f"{stem}_{k}"

    # notifications
    def refused(self, reason: str) -> None:
        for cb in self.on_refused:
            cb(reason)

    def changed(self) -> None:
        for cb in self.on_changed:
            cb()

    def param_changed(self, node: DreamNode, name: str) -> None:
        # a burst of changes to one parameter (a slider drag) is one undo step: when the last
        # step set the same parameter, it is replaced rather than pushed
        h, desc = self.history, f"Set {node.node_id}.{name}"
        at_tip = h.history_stack and h.history_current_step == len(h.history_stack) - 1
        if at_tip and h.history_stack[-1].get("desc") == desc:
            h.history_stack[-1] = h.createHistoryStamp(desc)
            self.has_been_modified = True
        else:
            h.storeHistory(desc, setModified=True)
        self.mark_stale(node)
        for cb in self.on_param:
            cb(node, name)
        self.changed()

    def mark_stale(self, node: DreamNode) -> None:
        """A node and what depends on it will run again: say so on the cards."""
        for n in [node] + node.descendants():
            if n.state in ("done", "cached", "failed", "stopped"):
                n.set_state("stale")

    # editing
    def add_node(self, type_name: str, x: float = 0, y: float = 0, *, node_id: str | None = None,
                 params: dict | None = None, store: bool = True) -> DreamNode:
        node = DreamNode(self, self.spec_for(type_name), node_id, params)
        node.setPos(x, y)
        if store:
            self.history.storeHistory(f"Add {node.node_id}", setModified=True)
            self.changed()
        return node

    def connect(self, out_sock, in_sock, *, check: bool = True, store: bool = True) -> DreamEdge | None:
        """Wire an output to an input as a drag would; None (and a reason to listeners) if refused."""
        if check:
            problem = edge_problem(out_sock, in_sock)
            if problem:
                self.refused(problem)
                return None
        if in_sock.is_input is False:
            out_sock, in_sock = in_sock, out_sock
        if not in_sock.is_multi_edges:
            in_sock.removeAllEdges()
        edge = DreamEdge(self, out_sock, in_sock, edge_type=EDGE_TYPE_BEZIER)
        out_sock.node.onEdgeConnectionChanged(edge)
        in_sock.node.onEdgeConnectionChanged(edge)
        in_sock.node.onInputChanged(in_sock)
        if store:
            self.history.storeHistory("Connect", setModified=True)
            self.changed()
        return edge

    # -- recipe <-> canvas ---------------------------------------------------------
    def to_recipe(self) -> Recipe:
        """The recipe the canvas shows (what is saved and what runs)."""
        nodes: dict[str, RecipeNode] = {}
        positions: dict[str, list[int]] = {}
        for n in sorted(self.dream_nodes(), key=lambda n: n.seq):
            inputs: dict[str, Ref | list[Ref]] = {}
            for sock in n.inputs:
                port = sock.port
                refs = [self._ref(e.getOtherSocket(sock)) for e in ordered_edges(sock)]
                refs = [r for r in refs if r is not None]
                if refs:
                    inputs[port.name] = refs if port.is_list else refs[0]
                elif port.name in n.extra_inputs:
                    inputs[port.name] = _refs(n.extra_inputs[port.name])
            for name, raw in n.extra_inputs.items():
                if n.spec.input(name) is None:
                    inputs[name] = _refs(raw)
            nodes[n.node_id] = RecipeNode(n.node_id, n.spec.type_name, copy.deepcopy(n.params), inputs)
            pos = n.grNode.pos()
            positions[n.node_id] = [round(pos.x()), round(pos.y())]
        editor = copy.deepcopy(self.meta.editor)
        if positions:
            editor["positions"] = positions
        else:
            editor.pop("positions", None)
        m = self.meta
        return Recipe(nodes, m.name, m.description, m.seed, editor, file=m.file)

    @staticmethod
    def _ref(sock) -> Ref | None:
        if sock is None or not isinstance(sock.node, DreamNode):
            return None
        n = sock.node
        if is_unknown(n.spec):  # keep what the recipe wrote: 'x' or 'x.name'
            return Ref(n.node_id, None if sock.port.name == UNKNOWN_OUTPUT else sock.port.name)
        return Ref(n.node_id, None if len(n.spec.outputs) == 1 else sock.port.name)

    def load(self, recipe: Recipe) -> list[str]:
        """Show a recipe (replacing the canvas). Returns notes about what could not be wired."""
        self.clear()
        self._seq = 0
        ed = recipe.editor if isinstance(recipe.editor, dict) else {}
        self.meta = RecipeMeta(recipe.name, recipe.description, recipe.seed, copy.deepcopy(ed), recipe.file)
        notes: list[str] = []
        made: dict[str, DreamNode] = {}
        used_outputs: dict[str, list[str]] = {}
        for rn in recipe.nodes.values():
            for _, ref in rn.input_refs():
                if ref.output:
                    used_outputs.setdefault(ref.node, [])
                    if ref.output not in used_outputs[ref.node]:
                        used_outputs[ref.node].append(ref.output)
        for nid, rn in recipe.nodes.items():
            spec = self.registry.get(rn.type)
            if spec is None:
                spec = unknown_spec(rn.type, [(k, isinstance(v, list)) for k, v in rn.inputs.items()],
                                    used_outputs.get(nid, []))
                notes.append(f"node '{nid}': unknown node type '{rn.type}' (is its node pack installed?)")
            made[nid] = DreamNode(self, spec, nid, rn.params)
        for nid, rn in recipe.nodes.items():
            node = made[nid]
            names = [i.name for i in node.spec.inputs]
            for iname, value in rn.inputs.items():
                raw = [str(r) for r in value] if isinstance(value, list) else str(value)
                if iname not in names:
                    node.extra_inputs[iname] = raw
                    continue
                sock = node.inputs[names.index(iname)]
                if sock.port.is_list != isinstance(value, list):
                    node.extra_inputs[iname] = raw
                    continue
                outs = [self._out_socket(made.get(r.node), r) for r in (value if isinstance(value, list) else [value])]
                if any(o is None for o in outs):
                    node.extra_inputs[iname] = raw
                    notes.append(f"node '{nid}', input '{iname}': {raw} does not name an output on the canvas")
                    continue
                for o in outs:
                    DreamEdge(self, o, sock, edge_type=EDGE_TYPE_BEZIER)
        self._place(recipe, made, ed.get("positions") if isinstance(ed.get("positions"), dict) else {})
        for n in made.values():
            n.content.refresh()
        self.history.clear()
        self.history.storeInitialHistoryStamp()
        self.has_been_modified = False
        self.changed()
        return notes

    @staticmethod
    def _out_socket(node: DreamNode | None, ref: Ref):
        if node is None:
            return None
        if ref.output is None:
            return node.outputs[0] if len(node.outputs) == 1 else None
        return next((s for s in node.outputs if s.port.name == ref.output), None)

    def _place(self, recipe: Recipe, made: dict[str, DreamNode], positions: dict) -> None:
        """Put nodes where the recipe says; lay out the others in columns by depth."""
        depth: dict[str, int] = {}
        for nid in made:  # longest path from a source; recipes may (wrongly) hold cycles
            depth[nid] = 0
        for _ in range(len(made)):
            moved = False
            for nid, rn in recipe.nodes.items():
                for _, ref in rn.input_refs():
                    if ref.node in depth and depth[nid] < depth[ref.node] + 1 <= len(made):
                        depth[nid] = depth[ref.node] + 1
                        moved = True
            if not moved:
                break
        # a source (a node without inputs) goes in the column just before its first reader,
        # next to what it feeds, rather than far left with every other source
        readers: dict[str, list[str]] = {}
        for nid, rn in recipe.nodes.items():
            for _, ref in rn.input_refs():
                readers.setdefault(ref.node, []).append(nid)
        for nid, rn in recipe.nodes.items():
            if not rn.inputs and readers.get(nid):
                depth[nid] = max(depth[nid], min(depth[r] for r in readers[nid] if r in depth) - 1)
        column_y: dict[int, float] = {}
        for nid, node in made.items():
            p = positions.get(nid)
            if isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p):
                node.setPos(float(p[0]), float(p[1]))
                continue
            d = depth[nid]
            y = column_y.get(d, 0.0)
            node.setPos(d * (NODE_W + COLUMN_GAP), y)
            # leave room for the picture an image node shows after a run
            grows = any(issubclass(o.type, Image) for o in node.spec.outputs)
            column_y[d] = y + node.grNode.height + (PICTURE_ROOM if grows else 0) + ROW_GAP


def _refs(raw) -> Ref | list[Ref]:
    return [Ref.parse(r) for r in raw] if isinstance(raw, list) else Ref.parse(raw)

