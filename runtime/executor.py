"""Running a recipe: validate, schedule, execute, cache, commit outputs.

`Runner.run(recipe)` validates the whole recipe first (nothing runs if
anything is wrong), turns it into a networkx DiGraph, and runs, in
topological order, only the requested nodes and their ancestors (by default
every node that nothing reads from). Each node's result is cached under a
key made of its type, its code version, its checked parameters, its seed
(random nodes only) and the keys of its inputs, so a re-run recomputes only
what changed.

Files are written transactionally: nodes write into a staging folder inside
the output folder, and the files move to their places (each an atomic
rename) only when the whole run succeeded. A failed or cancelled run leaves
no output behind.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import networkx as nx
import torch

from dreamnodes import __version__
from dreamnodes import events as ev
from dreamnodes.context import Context
from dreamnodes.files import InputFileError, file_identity, resolve_input
from dreamnodes.errors import Cancelled, DreamError, NodeError, Problem, RecipeError, printable, shorten
from dreamnodes.registry import load_all
from dreamnodes.limits import DEFAULT_LIMITS, Limits
from dreamnodes.spec import NodeSpec

from dreamnodes.graphs.recipe import Recipe, dump_recipe
from dreamnodes.graphs.validate import resolve_output, to_digraph, validate

from .cache import Cache, default_cache_dir, disk_cache_disabled_by_env, sweep_stale_staging
from .checkpoints import NodeCheckpoints
from .device import choose_device, deterministic_mode, keep_cpu_memory
from .outputs import OutputsExist, existing_outputs, output_names, signature

STAGING_PREFIX = ".dreamnodes-staging-"


def node_seed(recipe_seed: int, node_id: str) -> int:
    """Per-node seed: stable for a node id, different between nodes."""
    digest = hashlib.sha256(f"{recipe_seed}:{node_id}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # exact, and 1 vs 1.0 stay distinct only when types differ
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items())}
    return v


def cache_key(spec: NodeSpec, params: dict[str, Any], seed: int | None, input_keys: dict[str, Any],
              extra: Any = None) -> str:
    blob = json.dumps({
        "type": spec.type_name, "version": spec.version, "code": spec.code_hash,
        "params": _jsonable(params), "seed": seed, "inputs": input_keys, "extra": extra,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def input_files(spec: NodeSpec, params: dict[str, Any], roots) -> tuple[dict[str, Any], dict[str, Any]]:
    """The files a node reads, resolved once, and what they are, for its cache key.

    Every path parameter, however it is named (a path, `sample:NAME`), is resolved by
    `files.resolve_input`, and the node is given exactly that answer (`Context.files`, which
    `Context.input_path` keeps to): ({value: the file, or the InputFileError}, {param: identity}).
    """
    resolved: dict[str, Any] = {}
    ids: dict[str, Any] = {}
    for p in spec.params:
        value = params.get(p.name)
        if p.kind == "path" and isinstance(value, str):
            try:
                resolved[value] = resolve_input(value, roots)
                ids[p.name] = file_identity(resolved[value])
            except InputFileError as exc:  # the node says what is wrong; nothing is cached under it
                resolved[value], ids[p.name] = exc, "missing"
    return resolved, ids


def work_estimate(spec: NodeSpec, params: dict[str, Any]) -> float:
    """A node's work relative to the run's other nodes, known before it runs, for the whole run's
    progress: the render loops (the nodes that declare a memory estimate) in full-size steps, an
    octave of 1/s the side counting 1/s^2 of a step, times the frames a zoom makes; every other
    node counts as light (0). Picture sizes come from inputs, so they are not in it."""
    if spec.memory is None:
        return 0.0
    steps = params.get("steps")
    if not isinstance(steps, int) or steps < 1:
        return 1.0
    octaves, scale = params.get("octaves"), params.get("octave_scale")
    if isinstance(octaves, int) and isinstance(scale, (int, float)) and scale >= 1:
        steps = steps * sum(scale ** (-2 * k) for k in range(min(octaves, 64)))
    frames = params.get("frames")
    return float(steps * (frames if isinstance(frames, int) and frames > 0 else 1))


@dataclass
class RunResult:
    """What a run did: outputs by node, which nodes ran or came from cache, files written."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: what the run's pictures record about how they were made (versions, threads, CPU, inputs...)
    provenance: dict[str, Any] = field(default_factory=dict)

    def output(self, node: str, name: str | None = None) -> Any:
        outs = self.outputs[node]
        return outs[name] if name else next(iter(outs.values()))


@dataclass
class _RunState:
    """What one run carries from node to node."""

    recipe: Recipe
    params: dict[str, dict[str, Any]]  # the checked parameters, by node
    result: RunResult
    recipe_text: Callable[[], str]  # the recipe as YAML, made when a node that writes files first needs it
    provenance: dict[str, Any]
    roots: tuple[Path, ...]  # the folders input files may come from
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # by node: the files its key covers
    staging: Path | None = None  # made for the first node that writes files
    outnames: dict[str, dict[str, str]] = field(default_factory=dict)  # by node: output paths, placeholders filled


class Runner:
    """Executes recipes. Keep one Runner alive to reuse its in-memory cache."""

    def __init__(self, *, cache: Cache | None = None, use_cache: bool = True, device: str | None = None,
                 out_dir: str | Path = "out", input_roots: Iterable[str | Path] = (),
                 listeners: Iterable[Callable[[ev.Event], None]] = (), trust: bool = False,
                 limits: Limits | None = None, overwrite: bool = False, deterministic: bool = False):
        if cache is None:
            disk = use_cache and not disk_cache_disabled_by_env()
            cache = Cache(default_cache_dir(), disk=disk)
        self.cache = cache
        self.use_cache = use_cache
        self.device = choose_device(device)
        if self.device.type == "cpu":
            keep_cpu_memory()
        self.out_dir = Path(out_dir)
        self.input_roots = tuple(Path(p) for p in input_roots)
        self.listeners = list(listeners)
        self.trust = trust  # files in formats that can run code (TorchScript, full pickles) may be loaded
        self.limits = limits  # resource bounds checked at validation (None: the defaults)
        self.cancel_event = threading.Event()
        self.registry = load_all()
        self.committed: list[Path] = []  # the files the last run moved into the output folder
        self.overwrite = overwrite  # files earlier runs wrote may be replaced (else the run refuses)
        self.deterministic = deterministic  # bit-identical pixels where torch allows (runtime/device.py)
        self.own: dict[Path, tuple] = {}  # the files this runner wrote: {resolved path: signature}

    def cancel(self) -> None:
        """Stop the current run at the next step boundary."""
        self.cancel_event.set()

    def emit(self, event: ev.Event) -> None:
        for listener in self.listeners:
            listener(event)

    # ------------------------------------------------------------------
    def plan(self, recipe: Recipe, only: Iterable[str] | None = None) -> tuple[dict, list[str]]:
        """Validate and return (checked params, the nodes to run in order)."""
        params = validate(recipe, self.registry, self.limits, self._roots(recipe),
                          facts_folder=default_cache_dir() / "catalog")  # what the model checks found
        g = to_digraph(recipe)
        if only:
            targets = list(only)
            missing = [t for t in targets if t not in recipe.nodes]
            if missing:
                raise RecipeError([Problem(f"--only names node '{t}', which is not in the recipe "
                                           f"(nodes: {', '.join(recipe.nodes)})", recipe.file) for t in missing])
        else:
            targets = [n for n in g.nodes if g.out_degree(n) == 0]
        needed = set(targets)
        for t in targets:
            needed |= nx.ancestors(g, t)
        order = [n for n in nx.topological_sort(g) if n in needed]  # deterministic: insertion order
        return params, order

    def run(self, recipe: Recipe, *, only: Iterable[str] | None = None, seed: int | None = None) -> RunResult:
        self.cancel_event.clear()
        self.committed = []
        if seed is not None:
            recipe = recipe.copy()
            recipe.seed = seed
        params, order = self.plan(recipe, only)
        state = _RunState(recipe, params, RunResult(), _Lazy(lambda: dump_recipe(recipe)),
                          self._provenance(recipe), self._roots(recipe))
        state.outnames = self._output_names(recipe, params, order)
        for nid in order:
            self.emit(ev.NodeQueued(nid, work_estimate(self.registry[recipe.nodes[nid].type], params[nid])))
        restore = deterministic_mode(self.deterministic)
        try:
            self._record_environment(state, order)
            for nid in order:
                if self.cancel_event.is_set():
                    raise Cancelled()
                self._run_node(state, nid)
            if state.staging is not None:
                with _interrupts_deferred():  # all of the outputs or none of them
                    state.result.written = self.committed = self._commit(state.staging)
        finally:
            restore()
            if state.staging is not None:
                with _interrupts_deferred():  # a second signal must not leave the staging folder half deleted
                    shutil.rmtree(state.staging, ignore_errors=True)
        return state.result

    def _roots(self, recipe: Recipe) -> tuple[Path, ...]:
        """The folders input files may come from: the recipe's own, then the allowed ones."""
        return ((recipe.folder,) if recipe.folder else ()) + self.input_roots

    def _provenance(self, recipe: Recipe) -> dict[str, Any]:
        """What the pictures of this run record about how they were made (weights are added as they load)."""
        provenance: dict[str, Any] = {
            "dreamnodes": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "seed": recipe.seed, "device": str(self.device), "weights": {},
        }
        try:
            import torchvision
            provenance["torchvision"] = torchvision.__version__
        except ImportError:
            pass
        return provenance

    def _record_environment(self, state: _RunState, order: list[str]) -> None:
        """Add to the run's provenance what decides its pixels besides the recipe (threads, CPU, library
        versions, deterministic mode: runtime/provenance.py) and the input files it reads, each by
        `node.param` with its SHA-256 (the hashes its cache keys are made of)."""
        from .provenance import environment, input_record

        state.provenance.update(environment(self.device, self.deterministic))
        inputs = {}
        for nid in order:
            spec = self.registry[state.recipe.nodes[nid].type]
            files, ids = input_files(spec, state.params[nid], state.roots)
            for pname, rec in input_record(state.params[nid], files, ids).items():
                inputs[f"{nid}.{pname}"] = rec
        if inputs:
            state.provenance["inputs"] = inputs
        state.result.provenance = state.provenance

    def _staging(self, state: _RunState) -> Path:
        """The run's staging folder in the output folder, made when the first node that writes runs."""
        if state.staging is None:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                sweep_stale_staging(self.out_dir, STAGING_PREFIX)  # left by a killed run
                state.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.out_dir))
            except OSError as exc:
                raise NodeError(f"cannot write into the output folder {printable(str(self.out_dir), line=True)} "
                                f"({exc.strerror or exc}); choose another with --out") from None
        return state.staging

    # ------------------------------------------------------------------
    def _run_node(self, state: _RunState, nid: str) -> None:
        spec = self.registry[state.recipe.nodes[nid].type]
        if spec.writes:
            self._staging(state)
        inputs, input_keys = self._inputs(state, nid)
        seed = self._seed(state, nid)
        key = state.result.keys[nid] = self._cache_key(state, nid, spec, seed, input_keys)
        self.emit(ev.NodeStarted(nid, spec.type_name))
        if self.use_cache and self._from_cache(state, nid, spec, key):
            return
        if spec.writes:
            self._refuse_taken(state, nid)
        ctx = self._context(state, nid, spec, seed, key)
        kwargs = self._arguments(state, nid, spec, inputs, ctx)
        t0 = time.perf_counter()
        value = self._call(nid, spec, ctx, kwargs)
        seconds = time.perf_counter() - t0
        outputs = self._as_tuple(nid, spec, value)
        self._store(state, nid, spec, outputs)
        state.result.ran.append(nid)
        state.result.seconds[nid] = seconds
        if self.use_cache:
            self._remember(key, spec, outputs, ctx.written)
        self.emit(ev.NodeFinished(nid, cached=False, seconds=seconds))

    def _inputs(self, state: _RunState, nid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The node's input values, and their cache keys (the source's key and output name)."""
        recipe, result = state.recipe, state.result
        values: dict[str, Any] = {}
        keys: dict[str, Any] = {}
        for iname, v in recipe.nodes[nid].inputs.items():
            refs = v if isinstance(v, list) else [v]
            got, ks = [], []
            for ref in refs:
                src_spec = self.registry[recipe.nodes[ref.node].type]
                out = resolve_output(src_spec, ref)
                got.append(result.outputs[ref.node][out.name])
                ks.append(f"{result.keys[ref.node]}:{out.name}")
            values[iname] = got if isinstance(v, list) else got[0]
            keys[iname] = ks if isinstance(v, list) else ks[0]
        return values, keys

    @staticmethod
    def _seed(state: _RunState, nid: str) -> int:
        """The node's `seed` parameter when it sets one, else its share of the recipe's seed."""
        explicit = state.params[nid].get("seed")
        return explicit if isinstance(explicit, int) else node_seed(state.recipe.seed, nid)

    def _cache_key(self, state: _RunState, nid: str, spec: NodeSpec, seed: int, input_keys: dict) -> str:
        params = state.params[nid]
        extra = {}
        state.files[nid], files = input_files(spec, params, state.roots)  # the node opens these very files
        if files:
            extra["files"] = files
        if self.deterministic:  # other kernels, other pixels: never the default mode's cached results
            extra["deterministic"] = True
        if spec.writes:  # the embedded recipe and the destination are part of what is written
            extra["writes"] = [hashlib.sha256(state.recipe_text().encode()).hexdigest(), str(self.out_dir.resolve())]
        return cache_key(spec, params, seed if spec.random else None, input_keys, extra or None)

    def _from_cache(self, state: _RunState, nid: str, spec: NodeSpec, key: str) -> bool:
        """Take the node's outputs from the cache if they are there; True if they were."""
        hit = self._lookup(key, spec.writes)
        if hit is None:
            return False
        self._store(state, nid, spec, hit)
        state.result.cached.append(nid)
        self.emit(ev.NodeFinished(nid, cached=True))
        return True

    def _lookup(self, key: str, writes: bool) -> tuple | None:
        """Cached outputs: from memory, else from disk. A node that writes files is cached in memory
        only, with the files it wrote, and counts as cached only while those files are still there."""
        hit = self.cache.get_memory(key)
        if writes:
            if hit is None:
                return None
            outputs, files = hit
            return outputs if all((self.out_dir / f).exists() for f in files) else None
        if hit is None:
            hit = self.cache.get_disk(key)
            if hit is not None:
                self.cache.put_memory(key, hit)
        return hit

    def _remember(self, key: str, spec: NodeSpec, outputs: tuple, written: Iterable[str]) -> None:
        if spec.writes:
            self.cache.put_memory(key, (outputs, list(written)))
        else:
            self.cache.put_memory(key, outputs)
            self.cache.put_disk(key, outputs)

    def _context(self, state: _RunState, nid: str, spec: NodeSpec, seed: int, key: str) -> Context:
        return Context(node_id=nid, seed=seed, device=self.device, out_dir=state.staging or self.out_dir,
                       input_roots=state.roots, emit=self.emit, cancel=self.cancel_event, trust=self.trust,
                       recipe_text=state.recipe_text() if spec.writes else "",
                       provenance=json.loads(json.dumps(state.provenance)) if spec.writes else {},
                       checkpoints=NodeCheckpoints(self.cache, key) if self.use_cache else None,
                       limits=self.limits or DEFAULT_LIMITS, files=state.files.get(nid, {}))

    @staticmethod
    def _arguments(state: _RunState, nid: str, spec: NodeSpec, inputs: dict, ctx: Context) -> dict[str, Any]:
        """The keyword arguments of the node's function: its parameters, its inputs, its Context."""
        kwargs = dict(state.params[nid])
        kwargs.update(state.outnames.get(nid, {}))  # output paths with their placeholders filled in
        kwargs.update(inputs)
        for i in spec.inputs:  # a list input left unwired is an empty list (validation allows that)
            if i.is_list and i.name not in kwargs and \
                    inspect.signature(spec.fn).parameters[i.name].default is inspect.Parameter.empty:
                kwargs[i.name] = []
        if spec.context_arg:
            kwargs[spec.context_arg] = ctx
        return kwargs

    def _call(self, nid: str, spec: NodeSpec, ctx: Context, kwargs: dict[str, Any]) -> Any:
        """Run the node: its memory estimate, then its function. A failure is announced (NodeFailed)
        and raised as a NodeError that names the node (a DreamError that is no NodeError as it is)."""
        try:
            if spec.memory is not None:  # refuses, with advice, what would not fit in memory
                spec.memory(ctx, **{k: v for k, v in kwargs.items() if k != spec.context_arg})
            return spec.fn(**kwargs)
        except Cancelled:
            raise
        except NodeError as exc:
            if exc.node is None:  # stamped with the node that raised it
                exc = NodeError(exc.detail, nid)
                self.emit(ev.NodeFailed(nid, str(exc)))
                raise exc
            self.emit(ev.NodeFailed(nid, str(exc)))
            raise
        except DreamError as exc:
            self.emit(ev.NodeFailed(nid, str(exc)))
            raise
        except Exception as exc:
            if isinstance(exc, RecursionError):  # a parser of nested input, a deep structure
                msg = (f"{spec.type_name} failed: its input is nested too deeply to handle (RecursionError: "
                       "Python's recursion limit); simplify the nesting in its parameters or inputs")
            else:
                msg = f"{spec.type_name} failed: {type(exc).__name__}: {shorten(str(exc), 500)}"
            self.emit(ev.NodeFailed(nid, msg))
            raise NodeError(msg, nid) from exc

    @staticmethod
    def _as_tuple(nid: str, spec: NodeSpec, value: Any) -> tuple:
        if not spec.outputs:
            return ()
        outputs = tuple(value) if spec.multi_output else (value,)
        for out, v in zip(spec.outputs, outputs):
            if not isinstance(v, out.type):
                raise NodeError(f"{spec.type_name} returned {type(v).__name__} for output '{out.name}', "
                                f"which should be {out.type.__name__} (a bug in the node)", nid)
        return outputs

    @staticmethod
    def _store(state: _RunState, nid: str, spec: NodeSpec, outputs: tuple) -> None:
        """Keep the node's outputs for the nodes that read them, and the weights they came from."""
        state.result.outputs[nid] = {o.name: v for o, v in zip(spec.outputs, outputs)}
        for v in outputs:
            wid = getattr(v, "weights_id", "")
            if wid:
                state.provenance["weights"][nid] = wid

    def _commit(self, staging: Path) -> list[Path]:
        """Move staged files to their places in the output folder.

        Every destination is checked (and its folders made, one level at a time, never through
        a link that leads out of the output folder) before the first file moves, so a refused
        file leaves the others unwritten too.
        """
        root = self.out_dir.resolve()
        plan = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = path.relative_to(staging)
            real = _folder_inside(root, rel.parent, rel) / rel.name
            if real.is_dir():
                raise NodeError(f"cannot write {shorten(str(rel))} into the output folder: a folder of that name "
                                "is there")
            plan.append((path, rel, real))
        taken = [real for _, _, real in plan if (real.exists() or real.is_symlink()) and not self.overwrite]
        if taken:  # e.g. the numbered pictures of a batch, or a file made while the run ran
            raise OutputsExist(taken)
        moved = []
        for path, rel, real in plan:
            try:
                os.replace(path, real)
            except OSError as exc:
                raise NodeError(f"cannot write {shorten(str(rel))} into the output folder ({exc.strerror or exc}); "
                                "is there a folder of that name?") from None
            moved.append(real)
            self.own[real.resolve()] = signature(real)
        return moved

    def _output_names(self, recipe: Recipe, params: dict, order: list[str]) -> dict[str, dict[str, str]]:
        """The output paths of the nodes to run, placeholders filled in; refused (OutputsExist,
        before anything runs) when one names a file that is there and was not written by this
        runner, unless it may overwrite."""
        to_run = {nid: params[nid] for nid in order}
        names = output_names(recipe, params, self.registry, self.out_dir, order)
        if not self.overwrite:
            taken, example = existing_outputs(recipe, to_run, self.registry, names, self.out_dir, self.own)
            if taken:
                raise OutputsExist(taken, example)
        return names

    def _refuse_taken(self, state: _RunState, nid: str) -> None:
        """Before a node that writes runs (it was not cached): refuse when its files are there, even
        those this runner wrote in an earlier run (the editor's: they would be replaced)."""
        if not self.overwrite:
            taken, example = existing_outputs(state.recipe, {nid: state.params[nid]}, self.registry,
                                              state.outnames, self.out_dir)
            if taken:
                raise OutputsExist(taken, example)


#: the signals that cancel a run: Ctrl-C, and (from the command line, see runtime/cli.py) a
#: request to terminate or a closed terminal
CANCEL_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def _interrupts_deferred():
    """Hold the signals that stop a run (Ctrl-C, SIGTERM, SIGHUP) until the block is done, then
    deliver them: moving a run's files into place, or deleting its staging folder, is short, and
    stopping halfway would leave some of them written and some not."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread gets signals
        return
    # a handler not set from Python (None) is left alone, and an ignored signal stays ignored
    held = [s for s in CANCEL_SIGNALS if signal.getsignal(s) not in (None, signal.SIG_IGN)]
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for s in dict.fromkeys(pending):
        signal.raise_signal(s)


def _folder_inside(root: Path, rel: Path, what: Path) -> Path:
    """The real folder root/rel, made as needed; refused if any part of it leads outside root."""
    here = root
    for part in rel.parts:
        here = here / part
        if not (here.exists() or here.is_symlink()):
            try:
                here.mkdir(exist_ok=True)
            except OSError as exc:
                raise NodeError(f"cannot make the folder for {what} in the output folder "
                                f"({exc.strerror or exc}); a file may stand where a folder should") from None
        real = here.resolve()
        if real != root and root not in real.parents:
            raise NodeError(f"refusing to write {what}: a link in the output folder leads outside it")
        if not real.is_dir():
            raise NodeError(f"cannot make the folder for {what} in the output folder: a file may stand "
                            "where a folder should")
        here = real
    return here


class _Lazy:
    """A value computed on first call, then remembered."""

    def __init__(self, make: Callable[[], Any]):
        self.make = make
        self.value: Any = None
        self.done = False

    def __call__(self) -> Any:
        if not self.done:
            self.value, self.done = self.make(), True
        return self.value
