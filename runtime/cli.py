"""The `dreamnodes` command line.

    dreamnodes run [RECIPE.yaml | PICTURE.png] [--set node.param=value ...]
                   [--out DIR] [--device D] [--seed N] [--only NODE] [--no-cache]
                   [--allow-read DIR] [--limit KIND=N] [--trust]
    dreamnodes validate RECIPE [--allow-read DIR] [--limit KIND=N]
    dreamnodes nodes [TYPE]
    dreamnodes show PICTURE.png
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
from dreamnodes.graphs.sources import open_recipe
from dreamnodes.graphs.yamlio import read_yaml
from dreamnodes.meta import PROVENANCE_KEY, RECIPE_KEY, read_png_text
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


def apply_sets(recipe: Recipe, sets: list[str]) -> None:
    problems = []
    for item in sets:
        target, eq, raw = item.partition("=")
        nid, dot, param = target.partition(".")
        if not eq or not dot or not nid or not param:
            problems.append(Problem(f"--set {item!r} must look like node.param=value"))
            continue
        try:
            value, _, _ = read_yaml(raw, "--set")
        except RecipeError:
            value = raw
        if nid not in recipe.nodes:
            problems.append(Problem(f"--set names node '{nid}', which is not in the recipe "
                                    f"(nodes: {', '.join(recipe.nodes)})"))
            continue
        recipe.nodes[nid].params[param] = value
    if problems:
        raise RecipeError(problems)


class ProgressPrinter:
    """Turns run events into progress bars and one line per node on stderr."""

    def __init__(self, quiet: bool = False):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.quiet = quiet
        self.bars: dict[str, object] = {}

    def __call__(self, e: ev.Event) -> None:
        if self.quiet:
            return
        if isinstance(e, ev.Progress):
            bar = self.bars.get(e.node)
            if bar is None:
                bar = self.bars[e.node] = self.tqdm(total=e.total, desc=printable(e.node, line=True), leave=False,
                                                    file=sys.stderr, dynamic_ncols=True)
            if bar.total != e.total:
                bar.total = e.total
            bar.n = e.step
            if e.label:
                bar.set_postfix_str(printable(e.label, line=True), refresh=False)
            bar.refresh()
        elif isinstance(e, ev.NodeFinished):
            bar = self.bars.pop(e.node, None)
            if bar is not None:
                bar.close()
            how = "cached" if e.cached else f"{e.seconds:.2f}s"
            self.tqdm.write(printable(f"  {e.node}: {how}", line=True), file=sys.stderr)
        elif isinstance(e, ev.NodeFailed):
            bar = self.bars.pop(e.node, None)
            if bar is not None:
                bar.close()


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
    apply_sets(recipe, args.set or [])
    limits = parse_limits(args.limit)
    _input_roots(args, recipe)
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0, got {args.seed}")
    runner = Runner(use_cache=not args.no_cache, device=args.device, out_dir=args.out,
                    input_roots=args.allow_read or (), listeners=[ProgressPrinter(args.quiet)],
                    trust=args.trust, limits=limits)
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
    return 0


def cmd_validate(args) -> int:
    from dreamnodes.graphs.validate import validate
    from dreamnodes.registry import load_all

    recipe = open_recipe(args.recipe)
    limits = parse_limits(args.limit)
    validate(recipe, load_all(), limits, _input_roots(args, recipe))
    echo(f"{args.recipe}: ok ({len(recipe.nodes)} nodes)")
    return 0


def cmd_nodes(args) -> int:
    from dreamnodes.registry import families, get

    if args.type:
        spec = get(args.type)
        if spec is None:
            raise UsageError(f"unknown node type '{args.type}'; 'dreamnodes nodes' lists them")
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
    for fam, specs in families().items():
        echo(f"{fam}:")
        for s in specs:
            echo(f"  {s.type_name:<24} {s.summary}")
    return 0


def cmd_show(args) -> int:
    try:
        text = read_png_text(args.image)
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


def cmd_layers(args) -> int:
    from dreamnodes.nodes.model import layer_shapes

    lo, hi = LAYER_SIZES
    if not lo <= args.size <= hi:  # before the model loads: a forward pass at --size 100000 would not fit
        raise UsageError(f"--size must be a whole number of pixels from {lo} to {hi}, got {args.size}")
    model = _model_for(args.model, args.device)
    rows = layer_shapes(model, args.size)
    leaves = {p for p, m in model.module.named_modules() if p and not any(True for _ in m.children())}
    echo(f"{model.arch} ({model.weights_id}), input {args.size}x{args.size}:")
    for path, kind, shape in rows:
        if args.all or path not in leaves or path == "logits":
            echo(f"  {path:<28} {kind:<20} {'x'.join(map(str, shape[1:]))}", line=True)
    return 0


def cmd_classes(args) -> int:
    model = _model_for(args.model, args.device)
    words = [w.lower() for w in args.words]
    hits = [(i, c) for i, c in enumerate(model.categories) if all(w in c.lower() for w in words)]
    for i, c in hits:
        echo(f"{i:5d}  {c}", line=True)
    if not hits:
        echo(f"no class of {model.arch} matches {' '.join(args.words)!r}", err=True)
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
    _add_read_and_limits(r, "set a resource limit (a refused recipe's message names the one to raise): "
                            + ", ".join(f"{k.name} ({k.unit})" for k in LIMITS.values()))
    r.add_argument("--trust", action="store_true",
                   help="load model files in formats that can run code (TorchScript, full pickles); "
                        "only for files from a source you trust")
    r.add_argument("-q", "--quiet", action="store_true")
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
    s = sub.add_parser("show", help="print the recipe embedded in a PNG")
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
    ly.add_argument("--all", action="store_true", help="also list the leaf modules inside blocks")
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
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP outside a run
            how, code = _cancelled(exc)
            echo(how, err=True)
            return code
        except Exception as exc:  # a bug: say so plainly
            return _internal_error(exc, debug)


if __name__ == "__main__":
    sys.exit(main())
