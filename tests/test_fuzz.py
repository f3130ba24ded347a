"""Property-based fuzzing of the recipe loader and validator (hypothesis).

Thousands of generated inputs go through `parse_recipe` + `validate` and the
command line's `validate`: structured recipes (random node types from the
registry, random parameters of random types, random wiring), mutations of
real recipes' YAML text, and raw random text and bytes. The property: the
only exceptions that escape are the project's own errors (RecipeError, or
UsageError on the command line), and a recipe that parses without problems
saves and loads back to the same text.

Counts (per full run): structured 700, mutated 900, text 500, bytes 500,
command line 200, mutated PNGs 300, cheap recipes run for real 200 - about
3,300 inputs, in well under a minute.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import tinynodes  # noqa: E402,F401

from dreamnodes.errors import DreamError, RecipeError  # noqa: E402
from dreamnodes.graphs import dump_recipe, parse_recipe, validate  # noqa: E402
from dreamnodes.registry import load_all  # noqa: E402
from dreamnodes.runtime.cli import apply_sets, main  # noqa: E402

REGISTRY = load_all()
TYPES = sorted(REGISTRY)
ROOT = HERE.parent
SEEDS = [p.read_text("utf-8") for p in sorted((ROOT / "examples").glob("*.yaml"))] + \
        [p.read_text("utf-8") for p in sorted((HERE / "fixtures" / "recipes").glob("*.yaml"))][:12]

# the same examples on every run (a test suite must not flake); DREAMNODES_FUZZ_SCALE=N explores
# N times as many, drawn at random, for a longer hunt
SCALE = max(1, int(os.environ.get("DREAMNODES_FUZZ_SCALE", "1") or 1))
FAST = dict(deadline=None, database=None, derandomize=SCALE == 1,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                   HealthCheck.function_scoped_fixture])


def check(text: str | bytes, file: str = "fuzz.yaml") -> None:
    """The property: load + validate raise nothing but RecipeError; clean recipes round-trip."""
    try:
        recipe = parse_recipe(text, file)
    except RecipeError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return
    try:
        validate(recipe, REGISTRY)
    except RecipeError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
    if not recipe.problems:
        saved = dump_recipe(recipe)
        again = parse_recipe(saved, "saved.yaml")
        assert dump_recipe(again) == saved


# ----------------------------------------------------------------------------
# values of every kind a YAML recipe can hold

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-2**70, max_value=2**70), st.sampled_from([0, 1, -1, 8, 512, 100000, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1.5, 1e308, -0.0]),
    st.text(max_size=12), st.sampled_from(["sample:chelsea", "#ff8800", "#zz", "../x.png", "/etc/passwd", "~/x",
                                           "C:\\x", "out.png", "a/b.png", "", " ", "l2", "cover", "features.10",
                                           "IMAGENET1K_V1", "none", "x\x00y", "\u202e", "logits"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=8)
ids = st.one_of(st.sampled_from(["a", "b", "c", "photo", "net", "dream", "out"]),
                st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,6}", fullmatch=True), st.text(max_size=5))


@st.composite
def structured(draw):
    node_ids = draw(st.lists(ids, min_size=0, max_size=6, unique=True))
    nodes = {}
    for nid in node_ids:
        ntype = draw(st.one_of(st.sampled_from(TYPES), st.text(max_size=10), st.sampled_from(["image.laod", ""])))
        spec = REGISTRY.get(ntype)
        pnames = [p.name for p in spec.params] if spec else []
        inames = [i.name for i in spec.inputs] if spec else []
        params = {}
        for _ in range(draw(st.integers(0, 4))):
            name = draw(st.sampled_from(pnames) if pnames and draw(st.booleans()) else st.text(max_size=6))
            params[name] = draw(values)
        inputs = {}
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from(inames) if inames and draw(st.booleans()) else st.text(max_size=6))
            ref = st.one_of(st.sampled_from(node_ids or ["x"]), st.sampled_from(node_ids or ["x"]).map(lambda n: n + ".image"),
                            ids, values)
            inputs[name] = draw(st.one_of(ref, st.lists(ref, max_size=3)))
        body = {"type": ntype}
        if params or draw(st.booleans()):
            body["params"] = params
        if inputs or draw(st.booleans()):
            body["inputs"] = inputs
        if draw(st.integers(0, 9)) == 0:
            body = draw(values)  # a node that is not a mapping at all
        nodes[nid] = body
    data = {"dreamnodes": draw(st.one_of(st.just(1), values)), "nodes": nodes}
    if draw(st.booleans()):
        data["seed"] = draw(st.one_of(st.integers(0, 2**40), values))
    if draw(st.booleans()):
        data["name"] = draw(st.one_of(st.text(max_size=10), values))
    if draw(st.integers(0, 4)) == 0:
        data[draw(st.text(max_size=6))] = draw(values)
    return data


@settings(max_examples=700 * SCALE, **FAST)
@given(structured())
@example({"dreamnodes": 1, "nodes": {"a": {"type": "gan.filter_dropout", "params": {"00000": {"00\x85": False}}}}})
@example({"dreamnodes": 1, "nodes": {"a": {"type": "image.solid", "params": {"width": 1e400}}}, "name": "\u2028"})
def test_structured_recipes(data):
    check(yaml.safe_dump(data, allow_unicode=draw_unicode(data), sort_keys=False))


def draw_unicode(data) -> bool:
    return len(repr(data)) % 2 == 0  # both escaped and raw unicode, deterministically


# ----------------------------------------------------------------------------
# real recipes, mutated as text

TOKENS = ["!!python/object/apply:tinynodes.mark_executed [x]", "!!python/name:os.system", "&a ", "*a", "<<: *a",
          "{", "}", "[", "]", ": ", "- ", "\t", "\n", "  ", "'", '"', "? ", "%YAML 1.1\n", "---\n", "...\n", "\x00",
          "\ufeff", "é", "\U0001f642", "1e400", ".nan", "-.inf", "0x1F", "~", "|\n", ">\n", "#", "!custom ", "@",
          "`", "%", "2001-12-14", "!!binary aGk=", "!!set {a}", "100000", "-1", "../../", "/etc/", "null", "yes",
          "\u2028", "\r", "\\", "=", ",", "nodes:", "type:", "inputs:", "params:", "dreamnodes: 2\n"]


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if op == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)):]
        elif op == "replace":
            text = text[:pos] + draw(st.text(max_size=4)) + text[pos + draw(st.integers(1, 4)):]
        else:
            end = pos + draw(st.integers(1, 80))
            text = text[:end] + text[pos:end] + text[end:]
    return text


@settings(max_examples=900 * SCALE, **FAST)
@given(mutated())
@example("\x1freamnodes: 1\nnodes: {}\n")  # a control character the YAML reader refuses
def test_mutated_recipe_text(text):
    tinynodes.EXECUTED.clear()
    check(text)
    assert tinynodes.EXECUTED == []


# ----------------------------------------------------------------------------
# raw text and bytes

@settings(max_examples=500 * SCALE, **FAST)
@given(st.text(max_size=300))
def test_random_text(text):
    check(text)


@settings(max_examples=500 * SCALE, **FAST)
@given(st.binary(max_size=300))
def test_random_bytes(blob):
    check(blob)


# ----------------------------------------------------------------------------
# the command line's validate path and --set

@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=200 * SCALE, **FAST)
@given(source=st.one_of(mutated(), st.text(max_size=200)), sets=st.lists(st.text(max_size=20), max_size=3),
       as_bytes=st.booleans())
def test_cli_validate_and_set(scratch, source, sets, as_bytes):
    path = scratch / "recipe.yaml"
    path.write_bytes(source.encode("utf-8", "surrogatepass") if as_bytes else source.encode("utf-8", "replace"))
    errors: list = []
    code = main(["validate", str(path)], errors=errors)
    assert code in (0, 2)
    assert all(isinstance(e, DreamError) for e in errors)
    try:
        recipe = parse_recipe(path.read_bytes(), str(path))
        apply_sets(recipe, sets)
        validate(recipe, REGISTRY)
    except RecipeError:
        pass


# ----------------------------------------------------------------------------
# pictures: a real PNG made by dreamnodes, mutated, opened as a recipe

@pytest.fixture(scope="module")
def real_png(tmp_path_factory) -> bytes:
    from dreamnodes.runtime import Cache, Runner

    out = tmp_path_factory.mktemp("png")
    text = ("dreamnodes: 1\nnodes:\n  pic: {type: image.solid, params: {width: 8, height: 8}}\n"
            "  out: {type: image.save, inputs: {image: pic}, params: {path: p.png}}\n")
    Runner(cache=Cache(out / "cache", disk=False), out_dir=out).run(parse_recipe(text))
    return (out / "p.png").read_bytes()


@settings(max_examples=300 * SCALE, **FAST)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=8), st.integers(0, 16)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_mutated_pngs(scratch, real_png, edits, cut):
    from dreamnodes.graphs.sources import open_recipe

    blob = real_png
    for pos, insert, drop in edits:
        pos %= len(blob) + 1
        blob = blob[:pos] + insert + blob[pos + drop:]
    if cut is not None:
        blob = blob[:cut % (len(blob) + 1)]
    path = scratch / "picture.png"
    path.write_bytes(blob)
    try:
        validate(open_recipe(str(path)), REGISTRY)
    except DreamError as exc:
        assert exc.exit_code == 2


# ----------------------------------------------------------------------------
# cheap recipes, run for real under tiny limits: only the project's errors, and
# nothing written outside the output folder

CHEAP = ["image.solid", "image.gradient", "image.noise", "image.save", "image.grid", "test.passthrough", "test.mix",
         "test.required", "transform.jitter", "transform.blur"]
OUT_PATHS = ["a.png", "sub/b.png", "c.jpg", "d.webp", "e.gif", "f", "x/../y.png", ".png", "a/", "\u00fc.png",
             "../z.png", "/abs.png", "sub", "sub/", "p.PNG", " .png", "a//b.png", "./c.png"]


def _in_range(p, kind_lo, kind_hi):
    lo = p.range.lo if p.range and p.range.lo is not None else kind_lo
    hi = p.range.hi if p.range and p.range.hi is not None else kind_hi
    return max(lo, kind_lo), min(hi, kind_hi)


@st.composite
def cheap_recipes(draw):
    """Mostly sensible recipes of cheap nodes (so that many of them run), with some wild values and wiring."""
    nodes, outputs = {}, {}
    chaos = draw(st.integers(0, 3)) == 0  # one recipe in four gets wild values
    for k in range(draw(st.integers(1, 6))):
        ntype = draw(st.sampled_from(CHEAP))
        spec = REGISTRY[ntype]
        params = {}
        for p in spec.params:
            wild = chaos and draw(st.integers(0, 3)) == 0  # anything at all
            if wild:
                params[p.name] = draw(values)
            elif p.limit == "side":
                params[p.name] = draw(st.integers(8, 40))  # the defaults (512) are over this fuzz's limits
            elif draw(st.integers(0, 2)) == 0:
                continue
            elif p.kind == "outpath":
                params[p.name] = draw(st.sampled_from(OUT_PATHS))
            elif p.kind == "int":
                params[p.name] = draw(st.integers(*_in_range(p, -2, 40)))
            elif p.kind == "float":
                params[p.name] = draw(st.floats(*_in_range(p, -5.0, 50.0)))
            elif p.kind == "color":
                params[p.name] = draw(st.from_regex(r"#[0-9a-f]{6}", fullmatch=True))
            elif p.kind == "choice":
                params[p.name] = draw(st.sampled_from(p.choices))
            elif p.kind == "list[str]":
                params[p.name] = draw(st.lists(st.text(max_size=8), max_size=4))
            else:
                params[p.name] = draw(values)
        inputs = {}
        for i in spec.inputs:
            fitting = [n for n, t in outputs.items() if t is not None and issubclass(t, i.type)]
            pool = fitting if fitting and draw(st.integers(0, 5)) else list(outputs)
            if pool and (not chaos or draw(st.integers(0, 7))):
                inputs[i.name] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3)) if i.is_list else \
                    draw(st.sampled_from(pool))
        nid = f"n{k}"
        nodes[nid] = {"type": ntype, "params": params, "inputs": inputs}
        outputs[nid] = spec.outputs[0].type if spec.outputs else None
    return {"dreamnodes": 1, "seed": draw(st.integers(0, 5)), "nodes": nodes}


@settings(max_examples=200 * SCALE, **FAST)
@given(cheap_recipes())
def test_cheap_recipes_run_safely(tmp_path_factory, data):
    from dreamnodes.runtime import Cache, Runner
    from dreamnodes.limits import Limits

    root = tmp_path_factory.mktemp("run")
    out = root / "out"
    recipe = parse_recipe(yaml.safe_dump(data, sort_keys=False), str(root / "r.yaml"))
    runner = Runner(cache=Cache(root / "cache"), out_dir=out, device="cpu",
                    limits=Limits({"side": 48, "pixels": 48 * 48 * 4}))
    try:
        result = runner.run(recipe)
        event("ran")
    except DreamError as exc:
        event(f"refused: {type(exc).__name__}")
        result = None
    outside = [p for p in root.rglob("*") if p.is_file() and out not in p.parents and root / "cache" not in p.parents
               and p.name != "r.yaml"]
    assert outside == []
    if out.exists():
        assert not [p for p in out.iterdir() if p.name.startswith(".dreamnodes-staging")]
    if result is not None:
        for p in result.written:
            assert out.resolve() in p.parents and p.is_file()
