"""The `dreamnodes` command line.

    dreamnodes run [RECIPE.yaml | PICTURE.png] [--set node.param=value ...]
                   [--out DIR] [--device D] [--seed N] [--only NODE] [--no-cache]
                   [--allow-read DIR] [--limit KIND=N] [--trust]
    dreamnodes validate RECIPE [--allow-read DIR] [--limit KIND=N]
    dreamnodes nodes [TYPE]
    dreamnodes show PICTURE.png
    dreamnodes samples

Exit codes: 0 success; 2 invalid recipe or arguments (a message, no
traceback); 1 failure while running (a message; the traceback with
--debug); 130 cancelled (Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
import unicodedata
from importlib.metadata import entry_points
from pathlib import Path

from dreamnodes import events as ev
from dreamnodes.errors import DreamError, Problem, RecipeError, UsageError
from dreamnodes.graphs.recipe import Recipe
from dreamnodes.graphs.sources import open_recipe
from dreamnodes.graphs.yamlio import read_yaml
from dreamnodes.meta import PROVENANCE_KEY, RECIPE_KEY, read_png_text
from dreamnodes.limits import LIMITS, Limits

#: the entry-point group of the commands other packages add (`register(subparsers)`)
COMMANDS = "dreamnodes.commands"


def printable(text: str) -> str:
    """Text from a recipe or a picture, safe to print on a terminal: control and format characters
    (escape sequences, bidi overrides) are shown as escapes instead of acting on the terminal."""
    return "".join(c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs")
                   else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in text)


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
                bar = self.bars[e.node] = self.tqdm(total=e.total, desc=e.node, leave=False, file=sys.stderr,
                                                    dynamic_ncols=True)
            if bar.total != e.total:
                bar.total = e.total
            bar.n = e.step
            if e.label:
                bar.set_postfix_str(e.label, refresh=False)
            bar.refresh()
        elif isinstance(e, ev.NodeFinished):
            bar = self.bars.pop(e.node, None)
            if bar is not None:
                bar.close()
            how = "cached" if e.cached else f"{e.seconds:.2f}s"
            self.tqdm.write(f"  {e.node}: {how}", file=sys.stderr)
        elif isinstance(e, ev.NodeFailed):
            bar = self.bars.pop(e.node, None)
            if bar is not None:
                bar.close()


def cmd_run(args) -> int:
    from dreamnodes.runtime.executor import Runner

    recipe = open_recipe(args.recipe)
    apply_sets(recipe, args.set or [])
    limits = parse_limits(args.limit)
    _input_roots(args, recipe)
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0, got {args.seed}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder; choose another output folder")
    runner = Runner(use_cache=not args.no_cache, device=args.device, out_dir=args.out,
                    input_roots=args.allow_read or (), listeners=[ProgressPrinter(args.quiet)],
                    trust=args.trust, limits=limits)
    try:
        result = runner.run(recipe, only=args.only, seed=args.seed)
    except KeyboardInterrupt:
        runner.cancel()
        if runner.committed:  # Ctrl-C came while the finished run's files were moved into place
            for p in runner.committed:
                print(p)
            print("cancelled after the run had finished; its files above were written", file=sys.stderr)
        else:
            print("cancelled; nothing was written", file=sys.stderr)
        return 130
    for p in result.written:
        print(p)
    if not args.quiet:
        print(f"ran {len(result.ran)} node(s), {len(result.cached)} from cache", file=sys.stderr)
    return 0


def cmd_validate(args) -> int:
    from dreamnodes.graphs.validate import validate
    from dreamnodes.registry import load_all

    recipe = open_recipe(args.recipe)
    limits = parse_limits(args.limit)
    validate(recipe, load_all(), limits, _input_roots(args, recipe))
    print(f"{args.recipe}: ok ({len(recipe.nodes)} nodes)")
    return 0


def cmd_nodes(args) -> int:
    from dreamnodes.registry import families, get

    if args.type:
        spec = get(args.type)
        if spec is None:
            raise UsageError(f"unknown node type '{args.type}'; 'dreamnodes nodes' lists them")
        print(f"{spec.type_name}  (version {spec.version}{', random' if spec.random else ''}"
              f"{', writes files' if spec.writes else ''}; defined in {spec.module})\n")
        print(spec.doc + "\n")
        if spec.inputs:
            print("inputs:")
            for i in spec.inputs:
                print(f"  {i.name}: {i.describe()}" + (f"  - {i.doc}" if i.doc else ""))
        if spec.params:
            print("params:")
            for p in spec.params:
                default = "" if p.required else f" = {p.default!r}"
                print(f"  {p.name}: {p.describe()}{default}" + (f"  - {p.doc}" if p.doc else ""))
        if spec.outputs:
            print("outputs:")
            for o in spec.outputs:
                print(f"  {o.name}: {o.type.socket_name()}")
        return 0
    for fam, specs in families().items():
        print(f"{fam}:")
        for s in specs:
            print(f"  {s.type_name:<24} {s.summary}")
    return 0


def cmd_show(args) -> int:
    try:
        text = read_png_text(args.image)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if RECIPE_KEY not in text:
        raise UsageError(f"{args.image} holds no dreamnodes recipe")
    print(printable(text[RECIPE_KEY]), end="")
    if PROVENANCE_KEY in text and not args.recipe_only:
        try:
            prov = json.loads(text[PROVENANCE_KEY])
            print("# provenance: " + printable(json.dumps(prov, sort_keys=True)))
        except json.JSONDecodeError:
            print("# provenance: (unreadable)")
    return 0


def cmd_samples(args) -> int:
    from dreamnodes.files import sample_names

    for name in sample_names():
        print(f"sample:{name}")
    return 0


def _model_for(target: str, device: str | None):
    """A Model from an architecture name ('mobilenet_v2') or RECIPE.yaml:NODE."""
    from dreamnodes.runtime.executor import Runner

    runner = Runner(device=device or "cpu")
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

    model = _model_for(args.model, args.device)
    rows = layer_shapes(model, args.size)
    leaves = {p for p, m in model.module.named_modules() if p and not any(True for _ in m.children())}
    print(f"{model.arch} ({model.weights_id}), input {args.size}x{args.size}:")
    for path, kind, shape in rows:
        if args.all or path not in leaves or path == "logits":
            print(f"  {path:<28} {kind:<20} {'x'.join(map(str, shape[1:]))}")
    return 0


def cmd_classes(args) -> int:
    model = _model_for(args.model, args.device)
    words = [w.lower() for w in args.words]
    hits = [(i, c) for i, c in enumerate(model.categories) if all(w in c.lower() for w in words)]
    for i, c in hits:
        print(f"{i:5d}  {c}")
    if not hits:
        print(f"no class of {model.arch} matches {' '.join(args.words)!r}", file=sys.stderr)
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
            print(f"warning: command '{ep.name}' ({ep.value}) not available: {type(exc).__name__}: "
                  f"{printable(str(exc))}", file=sys.stderr)


def main(argv: list[str] | None = None, *, errors: list | None = None) -> int:
    """Run the command line; returns the exit code. `errors`, when given, receives the
    DreamError that ended the command (for callers that want more than the code)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.fn(args)
    except DreamError as exc:
        if errors is not None:
            errors.append(exc)
        if debug:
            traceback.print_exc()
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so plainly
        if debug:
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {printable(str(exc))} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
