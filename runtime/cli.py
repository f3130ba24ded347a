"""The `dreamnodes` command line.

    dreamnodes run [RECIPE.yaml | PICTURE.png] [--set node.param=value ...]
                   [--out DIR] [--device D] [--seed N] [--only NODE] [--no-cache]
                   [--allow-read DIR] [--limit KIND=N] [--trust] [--overwrite]
    dreamnodes validate RECIPE [--allow-read DIR] [--limit KIND=N]
    dreamnodes nodes [TYPE]
    dreamnodes show PICTURE.png | CLIP.gif | CLIP.mp4
    dreamnodes samples

Exit codes: 0 success; 2 invalid recipe, arguments or DREAMNODES_* setting (a
message, no traceback); 1 failure while running (a message; the traceback
with --debug); 130 cancelled (Ctrl-C), 143 / 129 ended by SIGTERM / SIGHUP
(cancelled the same way: nothing written).

Everything printed that holds a name or a path goes through `echo` (and
`printable`): control, C1 and bidi characters are shown as escapes.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path

from dreamnodes import events as ev
from dreamnodes.errors import DreamError, Interrupted, Problem, RecipeError, UsageError, printable, shorten
from dreamnodes.graphs.recipe import Recipe
from dreamnodes.graphs.sources import open_recipe, parse_set
from dreamnodes.meta import PROVENANCE_KEY, RECIPE_KEY, read_embedded_text
from dreamnodes.limits import LIMITS, Limits
from dreamnodes.settings import check_settings

#: the entry-point group of the commands other packages add (`register(subparsers)`)
COMMANDS = "dreamnodes.commands"


def echo(text: str, *, err: bool = False, line: bool = False, end: str = "\n") -> None:
    """Print `text` on stdout (stderr with `err`) with control, C1 and bidi characters escaped
    (`printable`); `line=True` for a name or a path, which is always one line. The one way the
    command line prints."""
    print(printable(text, line=line), end=end, file=sys.stderr if err else sys.stdout)


#: `layers --size`: the input sizes a layer listing runs the network on (a forward pass, so memory
#: grows with the square of it; the shapes of larger inputs follow from these)
LAYER_SIZES = (32, 2048)


def parse_limits(items: list[str] | None) -> Limits | None:
    """`--limit side=30000 --limit pixels=900000000` -> Limits; a UsageError names what is wrong."""
    if not items:
        return None
    overrides = {}
    kinds = ", ".join(f"{k.name} ({k.unit})" for k in LIMITS.values())
    for item in items:
        kind, eq, raw = item.partition("=")
        kind = kind.strip()
        if not eq or kind not in LIMITS:
            raise UsageError(f"--limit {item!r} must be KIND=N, with KIND one of: {kinds}")
        text = raw.strip().replace("_", "").replace(",", "")
        try:
            value = int(text)
        except ValueError:
            try:  # 1e9
                f = float(text)
                value = int(f) if f.is_integer() else 0
            except (ValueError, OverflowError):
                value = 0
        if value < 1:
            raise UsageError(f"--limit {item!r}: N must be a whole number >= 1")
        overrides[kind] = value
    return Limits(overrides)


def _input_roots(args, recipe: Recipe) -> tuple[Path, ...]:
    roots = ((recipe.folder,) if recipe.folder else ()) + tuple(Path(d) for d in (args.allow_read or ()))
    for d in args.allow_read or ():
        if not Path(d).is_dir():
            raise UsageError(f"--allow-read {d}: no such folder")
    return roots


def apply_sets(recipe: Recipe, sets: list[str], specs: dict | None = None) -> tuple[Path, ...]:
    """Apply `--set node.param=value` overrides; return the input files they name, which the run may
    read (see `typed_path`). `specs`: the node specs by type (default: `node_specs()`)."""
    problems, files = [], []
    for item in sets:
        got = parse_set(item, recipe)  # the core, shared with run_recipe(set=...)
        if isinstance(got, Problem):
            problems.append(got)
            continue
        nid, param, value = got
        spec = (node_specs() if specs is None else specs).get(recipe.nodes[nid].type)
        p = spec.param(param) if spec is not None else None
        if p is not None and p.kind == "path" and isinstance(value, str) and value.strip():
            value = typed_path(value)
            files.append(Path(value).resolve())
        recipe.nodes[nid].params[param] = value
    if problems:
        raise RecipeError(problems)
    return tuple(files)


def typed_path(value: str) -> str:
    """An input file typed on the command line (`--set photo.source=~/rocket.jpg`) is the user's: `~`
    expanded, resolved against the current folder (not the recipe's), absolute; `sample:NAME` as it
    is. The run may read that file (it is added to the input roots: that file, not its folder)."""
    from dreamnodes.files import sample_name

    if sample_name(value) is not None or "\x00" in value:
        return value
    return os.path.abspath(os.path.expanduser(value))


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressPrinter:
    """Turns run events into progress on stderr: which node runs (from its start), its share of the
    work (by work, not steps, where the node says: octaves of growing area), an ETA once it means
    something, and the whole run's nodes done. On a terminal, a bar per running node; anywhere else
    (a pipe, a log file) plain lines only: a node's start and end, and its progress every 10% or
    5 seconds, never a carriage return or an escape code."""

    PLAIN_EVERY = 5.0  # seconds between plain progress lines (at most)
    #: a node's start line waits this long (or for its first progress), so that nodes done in an
    #: instant (a cache hit, a failure at once) print one line, not two
    ANNOUNCE_AFTER = 0.5

    def __init__(self, quiet: bool = False, stream=None, tty: bool | None = None,
                 announce_after: float | None = None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = _isatty(self.stream) if tty is None else tty
        self.run = ev.RunProgress()
        self.bars: dict[str, object] = {}
        self._said = (0.0, 0.0)  # (time, fraction) of the last plain progress line
        self._after = self.ANNOUNCE_AFTER if announce_after is None else announce_after
        self._lock = threading.RLock()  # the announcing timer prints from its own thread
        self._pending: tuple[str, object] | None = None  # (start line, its timer) not printed yet

    def __call__(self, e: ev.Event) -> None:
        self.run(e)
        if self.quiet or isinstance(e, ev.NodeQueued):
            return
        (self._terminal if self.tty else self._plain)(e)

    def _where(self, node: str) -> str:
        return printable(f"[{self.run.position}/{len(self.run.queued)}] {node}", line=True)

    def _status(self) -> str:
        """'40% octave 3/4 score 1.2, 12s left; run 55%'."""
        eta = self.run.eta()
        label = f" {printable(self.run.label, line=True)}" if self.run.label else ""
        left = f", {_duration(eta)} left" if eta is not None else ""
        return f"{self.run.fraction:4.0%}{label}{left}; run {self.run.run_fraction():.0%}"

    def _finished(self, e: ev.NodeFinished) -> str:
        return f"  {printable(e.node, line=True)}: " + ("cached" if e.cached else f"{e.seconds:.2f}s")

    def _plain(self, e: ev.Event) -> None:
        import time

        if isinstance(e, ev.NodeStarted):
            self._said = (time.monotonic(), 0.0)
            timer = threading.Timer(self._after, self._announce)
            timer.daemon = True
            self._pending = (f"{self._where(e.node)} ({printable(e.type_name, line=True)}): started", timer)
            timer.start()
        elif isinstance(e, ev.Progress):
            self._announce()
            now, (then, said) = time.monotonic(), self._said
            f = self.run.fraction
            if f < 1.0 and (int(f * 10) > int(said * 10) or now - then >= self.PLAIN_EVERY):
                self._said = (now, f)
                self._line(f"{self._where(e.node)}: {self._status()}")
        elif isinstance(e, (ev.NodeFinished, ev.NodeFailed)):
            self._announce(cancel=True)
            if isinstance(e, ev.NodeFinished):
                self._line(self._finished(e))

    def _announce(self, cancel: bool = False) -> None:
        """Print the running node's start line if it is still waiting (drop it with `cancel`)."""
        with self._lock:  # held while printing: a start line never comes after its node's end
            pending, self._pending = self._pending, None
            if pending is not None:
                pending[1].cancel()
                if not cancel:
                    self._line(pending[0])

    def _line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def _terminal(self, e: ev.Event) -> None:
        if isinstance(e, ev.NodeStarted):
            from tqdm import tqdm

            self.bars[e.node] = tqdm(total=1000, desc=self._where(e.node), leave=False, file=self.stream,
                                     dynamic_ncols=True, bar_format="{desc} {bar:20}{postfix}",
                                     postfix=f"running ({printable(e.type_name, line=True)})")
        elif isinstance(e, ev.Progress) and e.node in self.bars:
            bar = self.bars[e.node]
            bar.n = round(self.run.fraction * 1000)
            bar.set_postfix_str(self._status(), refresh=False)
            bar.refresh()
        elif isinstance(e, (ev.NodeFinished, ev.NodeFailed)):
            bar = self.bars.pop(e.node, None)
            if bar is not None:
                bar.close()
            if isinstance(e, ev.NodeFinished):
                from tqdm import tqdm

                tqdm.write(self._finished(e), file=self.stream)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False


def check_out_folder(out: str) -> Path:
    """--out as a folder a run can write into: one that is there, or one that can be made (the first
    of its parents that is there is a folder). A link that leads nowhere, or a file on the way, is
    refused before anything runs."""
    if not out.strip():
        raise UsageError("--out must name a folder")
    path = here = Path(out)
    try:
        while True:
            if here.is_symlink() and not here.exists():
                raise UsageError(f"--out {shorten(out)}: {here} is a link to {os.readlink(here)}, which does not "
                                 "exist; make that folder, or choose another output folder")
            if here.exists():
                if here.is_dir():
                    return path
                if here == path:
                    raise UsageError(f"--out {shorten(out)} is a file, not a folder; choose another output folder")
                raise UsageError(f"--out {shorten(out)}: {here} is not a folder; choose another output folder")
            if here.parent == here:
                return path
            here = here.parent
    except OSError as exc:  # a name too long, a folder that may not be looked into
        raise UsageError(f"--out {shorten(out)}: {exc.strerror or exc}; choose another output folder") from None


def _cancelled(exc: KeyboardInterrupt) -> tuple[str, int]:
    """What to say about, and the exit code of, a command ended by Ctrl-C, SIGTERM or SIGHUP."""
    if isinstance(exc, Interrupted):
        return f"cancelled ({exc.name})", exc.exit_code
    return "cancelled", 130


def cmd_run(args) -> int:
    from dreamnodes.runtime.device import check_device_name
    from dreamnodes.runtime.executor import Runner

    check_device_name(args.device)
    check_out_folder(args.out)
    recipe = open_recipe(args.recipe)
    typed_files = apply_sets(recipe, args.set or [])
    limits = parse_limits(args.limit)
    _input_roots(args, recipe)
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0, got {args.seed}")
    runner = Runner(use_cache=not args.no_cache, device=args.device, out_dir=args.out,
                    input_roots=tuple(args.allow_read or ()) + typed_files, listeners=[ProgressPrinter(args.quiet)],
                    trust=args.trust, limits=limits, overwrite=args.overwrite, deterministic=args.deterministic)
    original = _rerun_check(args, recipe, runner)
    try:
        result = runner.run(recipe, only=args.only, seed=args.seed)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP
        runner.cancel()
        how, code = _cancelled(exc)
        if runner.committed:  # it came while the finished run's files were moved into place
            for p in runner.committed:
                echo(str(p), line=True)
            echo(f"{how} after the run had finished; its files above were written", err=True)
        else:
            echo(f"{how}; nothing was written", err=True)
        return code
    for p in result.written:
        echo(str(p), line=True)
    if not args.quiet:
        echo(f"ran {len(result.ran)} node(s), {len(result.cached)} from cache", err=True)
    _rerun_report(args, recipe, result, original)
    return 0


def _rerun_check(args, recipe: Recipe, runner) -> tuple | None:
    """Before re-running a PNG: the input files it records must be there and the same (a UsageError
    says what to pass; --accept-changed-inputs goes on with changed ones, with a warning). Returns
    (its provenance, its bytes if the run may replace it) for `_rerun_report`; None for a YAML recipe."""
    if not args.recipe or Path(args.recipe).suffix.lower() != ".png":
        return None
    from dreamnodes.runtime.provenance import check_inputs, keep_original, read_provenance

    _, made = read_provenance(Path(args.recipe))
    for note in check_inputs(recipe, made, runner._roots(recipe), args.accept_changed_inputs):
        echo(note, err=True)
    return made, keep_original(args.recipe, Path(args.out))


def _rerun_report(args, recipe: Recipe, result, original: tuple | None) -> None:
    """After re-running a PNG: one line per picture written, how close it came to the original."""
    if original is None:
        return
    from dreamnodes.runtime.provenance import compare_outputs

    made, kept = original
    for line in compare_outputs(args.recipe, recipe, result.written, Path(args.out), result.provenance, made, kept):
        echo(line, err=True)


def cmd_validate(args) -> int:
    from dreamnodes.graphs.validate import validate
    from dreamnodes.runtime.cache import default_cache_dir

    recipe = open_recipe(args.recipe)
    limits = parse_limits(args.limit)
    validate(recipe, node_specs(), limits, _input_roots(args, recipe),
             facts_folder=default_cache_dir() / "catalog")  # a model's layers and classes, kept
    echo(f"{args.recipe}: ok ({len(recipe.nodes)} nodes)")
    return 0


def node_specs() -> dict:
    """Every node spec: from the catalogue on disk when it is current (no torch imported), else
    from the registry (which then writes the catalogue for next time)."""
    from dreamnodes import catalog
    from dreamnodes.runtime.cache import default_cache_dir

    return catalog.specs(default_cache_dir() / "catalog")


def _spec_lookup():
    """(get(type name), families()) over `node_specs()`, as the registry's own functions are."""
    from dreamnodes.registry import families

    specs = node_specs()
    return specs.get, lambda: families(specs)


def cmd_nodes(args) -> int:
    get, families = _spec_lookup()

    if args.type:
        spec = get(args.type)
        if spec is None:
            raise UsageError(f"unknown node type '{args.type}'{_did_you_mean(args.type, families())}; "
                             "'dreamnodes nodes' lists them")
        echo(f"{spec.type_name}  (version {spec.version}{', random' if spec.random else ''}"
             f"{', writes files' if spec.writes else ''}; defined in {spec.module})\n")
        echo(spec.doc + "\n")
        if spec.inputs:
            echo("inputs:")
            for i in spec.inputs:
                echo(f"  {i.name}: {i.describe()}" + (f"  - {i.doc}" if i.doc else ""))
        if spec.params:
            echo("params:")
            for p in spec.params:
                default = "" if p.required else f" = {p.default!r}"
                echo(f"  {p.name}: {p.describe()}{default}" + (f"  - {p.doc}" if p.doc else ""))
        if spec.outputs:
            echo("outputs:")
            for o in spec.outputs:
                echo(f"  {o.name}: {o.type.socket_name()}")
        return 0
    import shutil
    import textwrap

    width = max(shutil.get_terminal_size((100, 24)).columns, 60)
    for fam, specs in families().items():
        echo(f"{fam}:")
        for s in specs:  # the first sentence whole, wrapped under itself
            echo(textwrap.fill(s.summary, width - 1, initial_indent=f"  {s.type_name:<24} ",
                               subsequent_indent=" " * 27, break_on_hyphens=False))
    return 0


def _did_you_mean(name: str, families: dict) -> str:
    """', did you mean render.deepdream?': the types whose operation (the part after the family) or
    whole name is, or is close to, what was typed."""
    import difflib

    names = [s.type_name for specs in families.values() for s in specs]
    want = name.strip().lower()
    ops = {}
    for n in names:
        ops.setdefault(n.split(".", 1)[1], []).append(n)
    hits = [n for n in names if want in (n, n.split(".", 1)[1]) or n.split(".", 1)[1].endswith("_" + want)]
    if not hits:
        hits = [n for op in difflib.get_close_matches(want, list(ops), n=3, cutoff=0.75) for n in ops[op]]
    if not hits:
        hits = difflib.get_close_matches(want, names, n=2, cutoff=0.8)
    return f" (did you mean {' or '.join(dict.fromkeys(hits))}?)" if hits else ""


def cmd_show(args) -> int:
    try:
        text = read_embedded_text(args.image)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if RECIPE_KEY not in text:
        raise UsageError(f"{args.image} holds no dreamnodes recipe")
    echo(text[RECIPE_KEY], end="")
    if PROVENANCE_KEY in text and not args.recipe_only:
        try:
            prov = json.loads(text[PROVENANCE_KEY])
            echo("# provenance: " + json.dumps(prov, sort_keys=True))
        except (json.JSONDecodeError, RecursionError):
            echo("# provenance: (unreadable)")
    return 0


def cmd_samples(args) -> int:
    from dreamnodes.files import sample_names

    for name in sample_names():
        echo(f"sample:{name}", line=True)
    return 0


def _model_for(target: str, device: str | None):
    """A Model from an architecture name ('mobilenet_v2') or RECIPE.yaml:NODE."""
    from dreamnodes.runtime.executor import Runner

    runner = Runner(device="cpu" if device is None else device)
    if ":" in target and Path(target.rsplit(":", 1)[0]).exists():
        path, nid = target.rsplit(":", 1)
        recipe = open_recipe(path)
        result = runner.run(recipe, only=[nid])
        model = result.output(nid)
    else:
        from dreamnodes.graphs.recipe import RecipeNode

        recipe = Recipe({"net": RecipeNode("net", "model.load", {"arch": target})})
        model = runner.run(recipe).output("net")
    from dreamnodes.types import Model

    if not isinstance(model, Model):
        raise UsageError(f"{target} is not a model (give an architecture or RECIPE.yaml:MODEL_NODE)")
    return model


#: `layers` without --all leaves out the leaf modules deeper than this many levels (the
#: convolutions, norms and activations inside blocks, such as features.13.conv.0.1)
LAYER_DEPTH = 2


def cmd_layers(args) -> int:
    from dreamnodes.runtime.device import check_device_name

    check_device_name(args.device)
    lo, hi = LAYER_SIZES
    if not lo <= args.size <= hi:  # before the model loads: a forward pass at --size 100000 would not fit
        raise UsageError(f"--size must be a whole number of pixels from {lo} to {hi}, got {args.size}")
    arch = _layers_arch(args.model)
    if arch is None:  # a recipe's model from a checkpoint file: its layers are known once it is loaded
        title, rows = _loaded_layers(args)
    else:
        title, rows = _architecture_layers(arch, args.size)
    echo(f"{title}, input {args.size}x{args.size}:")
    hidden = [path for path, _, _, leaf in rows if leaf and path.count(".") >= LAYER_DEPTH]
    for path, kind, shape, _ in rows:
        if args.all or path not in hidden:
            echo(f"  {path:<28} {kind:<20} {'x'.join(map(str, shape or ())) or '?'}", line=True)
    if hidden and not args.all:
        echo(f"({len(hidden)} paths deeper inside blocks, such as {hidden[-1]}, are not listed: "
             f"'dreamnodes layers {args.model} --all' lists every path)", line=True)
    return 0


def _layers_arch(target: str) -> str | None:
    """The architecture `layers` lists: the name given, or RECIPE.yaml:NODE's model.load arch;
    None for a model.load from a checkpoint (or another node that makes a model)."""
    if not (":" in target and Path(target.rsplit(":", 1)[0]).exists()):
        return target
    path, nid = target.rsplit(":", 1)
    recipe = open_recipe(path)
    node = recipe.nodes.get(nid)
    if node is None:
        raise UsageError(f"{path} has no node '{nid}' (nodes: {', '.join(recipe.nodes)})")
    if node.type != "model.load" or node.params.get("checkpoint"):
        return None
    arch = node.params.get("arch", "mobilenet_v2")
    if not isinstance(arch, str):
        raise UsageError(f"node '{nid}' of {path} has an arch that is not a name: {arch!r}")
    return arch


def _architecture_layers(arch: str, size: int) -> tuple[str, list]:
    """(title, [(path, module type, shape, leaf)]) of a torchvision architecture, found from the
    architecture alone on the meta device (no weights read, none downloaded; kept in the catalogue)."""
    from dreamnodes.nodes import _facts
    from dreamnodes.runtime.cache import default_cache_dir

    try:
        facts = _facts.model_facts(arch, "none", default_cache_dir() / "catalog", size)
    except _facts.UnknownModel as exc:
        raise UsageError(exc.args[1]) from None
    if facts["layers"][-1][2] is None:
        raise UsageError(f"{arch} cannot run on a {size}x{size} picture; give a larger --size")
    return f"{arch} (the architecture alone: no weights needed)", facts["layers"]


def _loaded_layers(args) -> tuple[str, list]:
    """(title, rows) of a recipe's model, loaded by running the recipe up to its node."""
    from dreamnodes.nodes.model import layer_shapes

    model = _model_for(args.model, args.device)
    leaves = {p for p, m in model.module.named_modules() if p and not any(True for _ in m.children())}
    return (f"{model.arch} ({model.weights_id})",
            [(path, kind, shape[1:], path in leaves) for path, kind, shape in layer_shapes(model, args.size)])


def _class_names(target: str, device: str | None) -> tuple[str, list[str]]:
    """(what to call the model, its class names). An architecture's names come from its weights'
    metadata, kept in the catalogue after the first time, so no model is built or loaded; a
    RECIPE.yaml:NODE target runs the recipe up to that node."""
    if ":" in target and Path(target.rsplit(":", 1)[0]).exists():
        model = _model_for(target, device)
        return model.arch, list(model.categories)
    from dreamnodes.nodes._facts import UnknownModel, model_facts
    from dreamnodes.runtime.cache import default_cache_dir

    try:  # the names model.load gives the model by default (its weights' metadata)
        facts = model_facts(target, "IMAGENET1K_V1", default_cache_dir() / "catalog")
    except UnknownModel as exc:  # not an architecture, or one without those weights
        raise UsageError(f"--model {target}: {exc.args[1]}") from None
    return target, list(facts.get("categories") or ())


def cmd_classes(args) -> int:
    arch, names = _class_names(args.model, args.device)
    words = [w.lower() for w in args.words]
    hits = [(i, c) for i, c in enumerate(names) if all(w in c.lower() for w in words)]
    for i, c in hits:
        echo(f"{i:5d}  {c}", line=True)
    if not hits:
        echo(f"no class of {arch} matches {' '.join(args.words)!r}", err=True)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dreamnodes", description="Run and inspect dreamnodes recipes.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    sub = ap.add_subparsers(dest="command", required=True)
    for add in (_add_run, _add_validate, _add_nodes, _add_show, _add_samples, _add_layers, _add_classes):
        add(sub)
    _add_plugin_commands(sub)
    return ap


def _add_run(sub) -> None:
    r = sub.add_parser("run", help="run a recipe (or re-run the recipe inside a PNG)")
    r.add_argument("recipe", nargs="?", help="recipe.yaml or picture.png (default: the built-in DeepDream)")
    r.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="override a parameter")
    r.add_argument("--out", default="out", help="output folder (default: out)")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps or auto (default)")
    r.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    r.add_argument("--only", action="append", metavar="NODE", help="run just this node and what it needs")
    r.add_argument("--no-cache", action="store_true", help="recompute everything (also DREAMNODES_NO_CACHE=1)")
    r.add_argument("--deterministic", action="store_true",
                   help="bit-identical pixels across thread counts and machines where torch allows (one thread, "
                        "deterministic algorithms; slower: see the README's Reproducible pictures)")
    r.add_argument("--accept-changed-inputs", action="store_true",
                   help="re-run a PNG even when an input file is not the one it was made from (a different picture)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace files earlier runs wrote (without it, a run that would replace one refuses "
                        "before it starts; or put {n}, {seed} or {node.param} in an output path)")
    _add_read_and_limits(r, "set a resource limit (a refused recipe's message names the one to raise): "
                            + ", ".join(f"{k.name} ({k.unit})" for k in LIMITS.values()))
    r.add_argument("--trust", action="store_true",
                   help="load model files in formats that can run code (TorchScript, full pickles); "
                        "only for files from a source you trust")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="print only the files written (and errors, warnings): no progress, no summary")
    r.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    r.set_defaults(fn=cmd_run)


def _add_validate(sub) -> None:
    v = sub.add_parser("validate", help="check a recipe without running it")
    v.add_argument("recipe")
    _add_read_and_limits(v, "raise a resource limit (see run --help)")
    v.set_defaults(fn=cmd_validate)


def _add_read_and_limits(p, limit_help: str) -> None:
    """--allow-read and --limit, which `run` and `validate` share."""
    p.add_argument("--allow-read", action="append", metavar="DIR", help="a folder input files may come from")
    p.add_argument("--limit", action="append", metavar="KIND=N", help=limit_help)


def _add_nodes(sub) -> None:
    n = sub.add_parser("nodes", help="list node types, or describe one")
    n.add_argument("type", nargs="?")
    n.set_defaults(fn=cmd_nodes)


def _add_show(sub) -> None:
    s = sub.add_parser("show", help="print the recipe embedded in a PNG, GIF or MP4 dreamnodes made")
    s.add_argument("image")
    s.add_argument("--recipe-only", action="store_true")
    s.set_defaults(fn=cmd_show)


def _add_samples(sub) -> None:
    sm = sub.add_parser("samples", help="list the bundled sample photos")
    sm.set_defaults(fn=cmd_samples)


def _add_layers(sub) -> None:
    ly = sub.add_parser("layers", help="list a model's layer paths with their output shapes")
    ly.add_argument("model", help="an architecture (mobilenet_v2, googlenet, ...) or RECIPE.yaml:MODEL_NODE")
    ly.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    ly.add_argument("--all", action="store_true",
                    help=f"list every path, also the layers more than {LAYER_DEPTH} levels deep inside blocks "
                         "(the convolutions, norms and activations of a block, such as features.13.conv.0.1)")
    ly.add_argument("--device", default=None)
    ly.set_defaults(fn=cmd_layers)


def _add_classes(sub) -> None:
    cl = sub.add_parser("classes", help="search the class names of a model (ImageNet for the defaults)")
    cl.add_argument("words", nargs="*", help="words the class name must contain")
    cl.add_argument("--model", default="mobilenet_v2", help="architecture or RECIPE.yaml:MODEL_NODE")
    cl.add_argument("--device", default=None)
    cl.set_defaults(fn=cmd_classes)


def _add_plugin_commands(sub) -> None:
    """Commands that packages above the command line add to it (the editor's `edit`): every entry point
    of the group COMMANDS is called with the subparsers. One that fails is a warning, not the end of
    the other commands."""
    for ep in entry_points(group=COMMANDS):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken plugin must not take the whole command line down
            echo(f"warning: command '{ep.name}' ({ep.value}) not available: {type(exc).__name__}: {exc}", err=True)


@contextmanager
def _signals_as_cancel():
    """SIGTERM (a request to stop) and SIGHUP (the terminal closed) end a command as Ctrl-C does:
    raised as Interrupted, a KeyboardInterrupt, where the program is, so a run is cancelled, its
    staging folder deleted and its clean-up done. Only the first is raised (a second one while
    cleaning up is ignored); an ignored SIGHUP (nohup) stays ignored; only the main thread, which
    is where signals are handled, installs them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Interrupted(signum, signal.Signals(signum).name)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        s = getattr(signal, name, None)
        if s is not None and signal.getsignal(s) not in (None, signal.SIG_IGN):
            previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def _warnings_printed():
    """Warnings printed as one escaped line each (`warning: ...`), not Python's two lines with source
    code (the format only: whoever records warnings, such as a test, still gets them)."""
    def one_line(message, category, filename, lineno, line=None):
        return f"warning: {printable(str(message))}\n"

    previous, warnings.formatwarning = warnings.formatwarning, one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous


def _check_settings() -> None:
    """Every DREAMNODES_* setting, parsed once as the command starts (dreamnodes/settings.py); the
    disk cache's size bound by the cache's own parser."""
    from dreamnodes.runtime.cache import _env_max_bytes

    check_settings({"DREAMNODES_CACHE_MAX_MB": _env_max_bytes})


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit cannot fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _internal_error(exc: Exception, debug: bool) -> int:
    """The last resort: an exception that is no DreamError is a bug; one line, never a traceback
    (unless --debug)."""
    if debug:
        traceback.print_exc()
    hint = (" (something is nested too deeply for Python's recursion limit: simplify the input)"
            if isinstance(exc, RecursionError) else "")
    echo(f"error: internal error (a bug in dreamnodes): {type(exc).__name__}: {shorten(str(exc), 500)}{hint}; "
         "run with --debug for the traceback, and please report it", err=True)
    return 1


def main(argv: list[str] | None = None, *, errors: list | None = None) -> int:
    """Run the command line; returns the exit code. `errors`, when given, receives the
    DreamError that ended the command (for callers that want more than the code)."""
    debug = False
    with _signals_as_cancel(), _warnings_printed():
        try:
            args = build_parser().parse_args(argv)
            debug = getattr(args, "debug", False)
            _check_settings()
            return args.fn(args)
        except DreamError as exc:
            if errors is not None:
                errors.append(exc)
            if debug:
                traceback.print_exc()
            echo(f"error: {exc}", err=True)
            return exc.exit_code
        except BrokenPipeError:  # the reader went away (`dreamnodes nodes | head`): nothing left to say
            _quiet_stdout()
            return 0
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP outside a run
            how, code = _cancelled(exc)
            echo(how, err=True)
            return code
        except Exception as exc:  # a bug: say so plainly
            return _internal_error(exc, debug)


def entry() -> None:
    """The `dreamnodes` script: `main()`, then the exit handlers, then leave at once. Tearing down
    an interpreter that imported torch takes a second or more after the last line is printed
    (freeing modules one by one, the libraries' own destructors); a finished command has nothing
    left to free, so it skips that (outputs are already in place, streams are flushed here)."""
    code = main()
    try:
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    entry()
