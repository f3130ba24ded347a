"""Recipe loading and validation: one small fixture per kind of mistake.

Every fixture in tests/fixtures/recipes/ holds exactly one mistake (except
the valid ones and several_mistakes.yaml). For each we check that a
RecipeError is raised, that its one problem names the file, the line, the
node id and the field, and that the message says what to change. Lines are
found by searching the fixture for a distinctive text, so the expectation
reads as "the line with `size: 4`" rather than a bare number.

Validation never loads weights or runs a node: this file is fast.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # tinynodes is a plain module next to this file
    sys.path.insert(0, str(HERE))
import tinynodes  # noqa: E402  (registers test.required, test.passthrough, test.mix)

from dreamnodes.errors import Problem, RecipeError  # noqa: E402
from dreamnodes.graphs import dump_recipe, load_recipe, parse_recipe, validate  # noqa: E402
from dreamnodes.registry import load_all  # noqa: E402
from dreamnodes.runtime.cli import main  # noqa: E402

ROOT = HERE.parent
FIXTURES = HERE / "fixtures" / "recipes"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def registry():
    return load_all()


def fixture(name: str) -> Path:
    path = FIXTURES / name
    assert path.is_file(), path
    return path


def line_of(name: str, needle: str, nth: int = 1) -> int:
    """1-based number of the nth line of fixture `name` that contains `needle`."""
    hits = [i for i, line in enumerate(fixture(name).read_text("utf-8").splitlines(), 1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} is not in {name} {nth} time(s)"
    return hits[nth - 1]


def problems_of(name: str, registry) -> list[Problem]:
    """Load and validate a fixture; return the problems of the RecipeError it must raise."""
    path = fixture(name)
    with pytest.raises(RecipeError) as info:
        validate(load_recipe(path), registry)
    problems = info.value.problems
    assert problems, "a RecipeError must carry at least one problem"
    for p in problems:
        assert p.file == str(path), p
    return problems


# ----------------------------------------------------------------------------
# one fixture, one mistake
#
# (fixture, node id, field, (text on the problem's line, nth occurrence), phrases of the message)

NEEDLE_CASES = [
    ("unknown_type.yaml", "photo", "type", ("type: image.laod", 1),
     ["unknown node type 'image.laod'", "Did you mean 'image.load'?", "dreamnodes nodes"]),
    ("unknown_param.yaml", "photo", "sise", ("sise: 64", 1),
     ["'sise' is not a parameter of image.load", "Did you mean 'size'?", "Parameters: source, size"]),
    ("missing_required_param.yaml", "canvas", "count", ("params:", 1),
     ["parameter 'count' is required", "int in [1, 10]", "set it under 'params'"]),
    ("out_of_range.yaml", "photo", "size", ("size: 4", 1),
     ["4 is out of range [8, 16384]"]),
    ("wrong_type_string.yaml", "photo", "size", ('size: "512"', 1),
     ["must be an integer, got a string '512'"]),
    ("wrong_type_bool.yaml", "photo", "size", ("size: true", 1),
     ["must be an integer, got a boolean True"]),
    ("wrong_type_float.yaml", "photo", "size", ("size: 512.5", 1),
     ["must be an integer, got a number 512.5"]),
    ("missing_input.yaml", "out", "image", ("  out:", 1),
     ["input 'image' (Image) is not connected", "wire it under 'inputs'"]),
    ("missing_node_ref.yaml", "out", "image", ("image: phot", 1),
     ["refers to node 'phot', which is not in the recipe", "Did you mean 'photo'?"]),
    ("missing_output_ref.yaml", "out", "image", ("image: photo.nosuch", 1),
     ["node 'photo' (image.load) has no output 'nosuch'", "(outputs: image)"]),
    ("socket_mismatch.yaml", "out", "image", ("image: net", 1),
     ["input 'image' takes Image, but 'net' gives Model"]),
    ("list_to_single.yaml", "out", "image", ("image: [photo]", 1),
     ["input 'image' takes one Image, not a list"]),
    ("single_to_list.yaml", "dream", "transforms", ("transforms: jitter", 1),
     ["input 'transforms' takes a list of Transform", "write it as [jitter]"]),
    ("cycle_two.yaml", "a", "image", ("inputs: {image: b}", 1),
     ["the nodes form a cycle (a -> b -> a)", "a recipe must flow one way"]),
    ("cycle_three.yaml", "a", "b", ("inputs: {a: photo, b: c}", 1),
     ["the nodes form a cycle (a -> b -> c -> a)", "a recipe must flow one way"]),
    ("self_loop.yaml", "loop", "image", ("image: loop", 1),
     ["input 'image' refers to the node itself", "a node cannot feed itself"]),
    ("duplicate_id.yaml", "photo", None, ("  photo:", 2),
     ["'photo' appears twice", "must be unique"]),
    ("version_newer.yaml", None, "dreamnodes", ("dreamnodes: 99", 1),
     ["schema version 99, newer than this dreamnodes understands (1)", "upgrade dreamnodes"]),
    ("version_not_int.yaml", None, "dreamnodes", ("dreamnodes: one", 1),
     ["'dreamnodes' is the schema version, a whole number; got 'one'"]),
    ("version_missing.yaml", None, "dreamnodes", ("name: no schema version", 1),
     ["'dreamnodes' (the schema version, currently 1) is missing", "add 'dreamnodes: 1'"]),
    ("unknown_top_key.yaml", None, "author", ("author: somebody", 1),
     ["unknown top-level key 'author'", "a recipe has dreamnodes, name, description, seed, nodes, editor"]),
    ("bad_node_id.yaml", "my.photo", None, ("my.photo:", 1),
     ["node id 'my.photo' must start with a letter", "no dots"]),
    ("invalid_yaml.yaml", None, None, ('source: "sample:chel', 1),
     ["this is not valid YAML", "unexpected end of stream"]),
    ("python_tag.yaml", "photo", "source", ("!!python/object/apply", 1),
     ["is not allowed: a recipe holds plain data only", "no code"]),
    ("outpath_absolute.yaml", "out", "path", ("path: /tmp/dream.png", 1),
     ["'/tmp/dream.png' must be a relative path inside the output folder", "--out"]),
    ("outpath_dotdot.yaml", "out", "path", ("path: ../dream.png", 1),
     ["'../dream.png' must be a relative path inside the output folder", "without '..'"]),
]

VALID_FIXTURES = ["valid_tiny.yaml", "roundtrip_tricky.yaml"]


@pytest.mark.parametrize("name,node,field,where,phrases", NEEDLE_CASES, ids=[c[0][:-5] for c in NEEDLE_CASES])
def test_one_mistake_one_problem(registry, name, node, field, where, phrases):
    (problem,) = problems_of(name, registry)
    assert problem.node == node, problem
    assert problem.field == field, problem
    assert problem.line == line_of(name, *where), problem
    for phrase in phrases:
        assert phrase in problem.message, problem
    # the printed form leads with file:line, node and field
    text = str(problem)
    assert text.startswith(f"{fixture(name)}:{problem.line}: "), text
    if node:
        assert f"node '{node}'" in text
    if field:
        assert f"field '{field}'" in text


def test_every_fixture_is_covered():
    named = {c[0] for c in NEEDLE_CASES} | set(VALID_FIXTURES) | {"several_mistakes.yaml"}
    assert {p.name for p in FIXTURES.glob("*.yaml")} == named


@pytest.mark.parametrize("name", VALID_FIXTURES)
def test_valid_fixtures_validate(registry, name):
    params = validate(load_recipe(fixture(name)), registry)
    assert set(params) == set(load_recipe(fixture(name)).nodes)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(registry, example):
    recipe = load_recipe(example)
    params = validate(recipe, registry)
    assert set(params) == set(recipe.nodes)


def test_defaults_are_filled_in_and_values_checked(registry):
    params = validate(load_recipe(fixture("valid_tiny.yaml")), registry)
    assert params["photo"] == {"source": "sample:chelsea", "size": 64, "width": None, "height": None,
                               "fit": "cover"}
    assert params["out"] == {"path": "tiny.png", "quality": 95}


# ----------------------------------------------------------------------------
# the same checks, inline, for the variants a fixture per case would overdo

def _tiny(count_yaml: str) -> str:
    return f"dreamnodes: 1\nnodes:\n  c:\n    type: test.required\n    params: {{count: {count_yaml}}}\n"


@pytest.mark.parametrize("value,phrase", [
    ('"3"', "must be an integer, got a string '3'"),
    ("true", "must be an integer, got a boolean True"),
    ("3.0", "must be an integer, got a number 3.0"),
    ("[3]", "must be an integer, got a list"),
    ("~", "needs a value"),
    ("0", "0 is out of range [1, 10]"),
    ("11", "11 is out of range [1, 10]"),
])
def test_required_int_with_range_rejects(registry, value, phrase):
    with pytest.raises(RecipeError) as info:
        validate(parse_recipe(_tiny(value), "inline.yaml"), registry)
    (p,) = info.value.problems
    assert (p.file, p.line, p.node, p.field) == ("inline.yaml", 5, "c", "count")
    assert phrase in p.message


@pytest.mark.parametrize("value", ["1", "10", "5"])
def test_required_int_with_range_accepts(registry, value):
    assert validate(parse_recipe(_tiny(value)), registry)["c"] == {"count": int(value), "scale": 1.0}


def _save_to(path_yaml: str) -> str:
    return ("dreamnodes: 1\nnodes:\n  p: {type: image.load}\n"
            f"  o:\n    type: image.save\n    inputs: {{image: p}}\n    params: {{path: {path_yaml}}}\n")


@pytest.mark.parametrize("bad", ["/etc/dream.png", "'~/dream.png'", "../dream.png", "a/../../dream.png",
                                 "'sub/..'", "'C:/dream.png'", "'C:dream.png'", "'\\\\server\\share\\x.png'",
                                 "'..\\dream.png'", "''"])
def test_output_paths_stay_inside_the_output_folder(registry, bad):
    with pytest.raises(RecipeError) as info:
        validate(parse_recipe(_save_to(bad), "inline.yaml"), registry)
    (p,) = info.value.problems
    assert (p.line, p.node, p.field) == (7, "o", "path")
    assert "relative path inside the output folder" in p.message or "must name a file" in p.message


@pytest.mark.parametrize("good", ["dream.png", "sub/dream.png", "a..b.png", "'./x/y.png'"])
def test_relative_output_paths_are_fine(registry, good):
    validate(parse_recipe(_save_to(good)), registry)


def test_a_single_ref_and_a_list_are_both_accepted_by_list_inputs(registry):
    text = fixture("single_to_list.yaml").read_text("utf-8").replace("transforms: jitter", "transforms: [jitter]")
    validate(parse_recipe(text), registry)
    text = text.replace("transforms: [jitter]", "transforms: []")
    validate(parse_recipe(text), registry)


# ----------------------------------------------------------------------------
# safe YAML: tags never construct anything

def test_python_tag_fixture_would_run_code_under_an_unsafe_loader():
    # the fixture is a real exploit: yaml's unsafe loader calls the function ...
    tinynodes.EXECUTED.clear()
    yaml.unsafe_load(fixture("python_tag.yaml").read_text("utf-8"))
    assert tinynodes.EXECUTED == ["the recipe ran code"]
    tinynodes.EXECUTED.clear()
    # ... and dreamnodes refuses it without calling anything
    with pytest.raises(RecipeError):
        load_recipe(fixture("python_tag.yaml"))
    assert tinynodes.EXECUTED == []


@pytest.mark.parametrize("text,line", [
    ("!!python/object/apply:tinynodes.mark_executed\nargs: [root]\n", 1),
    ("dreamnodes: 1\nnodes:\n  ? !!python/object/apply:tinynodes.mark_executed [key]\n  : {type: image.load}\n", 3),
    ("dreamnodes: 1\nnodes:\n  a: {type: !!python/name:tinynodes.mark_executed ''}\n", 3),
    ("dreamnodes: 1\nnodes:\n  a: !!python/object/new:tinynodes.mark_executed [new]\n", 3),
    ("dreamnodes: 1\nname: !!python/object:tinynodes.Nothing {a: 1}\nnodes: {}\n", 2),
    ("dreamnodes: 1\nnodes: !custom {}\n", 2),
    ("dreamnodes: 1\nname: !!set {a}\nnodes: {}\n", 2),
])
def test_no_tag_outside_plain_data_is_accepted(text, line):
    tinynodes.EXECUTED.clear()
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "inline.yaml")
    (p,) = info.value.problems
    assert p.line == line
    assert "not allowed" in p.message or "plain words" in p.message
    assert tinynodes.EXECUTED == []


def test_alias_bombs_are_refused():
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcde", "bcdef"))
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "bomb.yaml")
    assert "more than" in info.value.problems[0].message


@pytest.mark.parametrize("text", ["", "- a list\n", "just a string\n", "42\n"])
def test_a_recipe_is_a_mapping(text):
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "x.yaml")
    (p,) = info.value.problems
    assert p.line == 1 and "a recipe is a YAML mapping" in p.message


# ----------------------------------------------------------------------------
# every problem at once

def test_several_mistakes_are_all_reported_at_once(registry):
    name = "several_mistakes.yaml"
    problems = problems_of(name, registry)
    located = {(p.node, p.field, p.line) for p in problems}
    assert located == {
        (None, "seed", line_of(name, "seed: 2")),                      # duplicate key
        (None, "colour", line_of(name, "colour: blue")),               # unknown top-level key
        ("photo", "size", line_of(name, "size: 4")),                   # out of range
        ("photo", "sise", line_of(name, "sise: 64")),                  # unknown parameter
        ("net", "type", line_of(name, "model.laod")),                  # unknown type
        ("dream", "octaves", line_of(name, "octaves: 0")),             # out of range
        ("dream", "steps", line_of(name, "steps: ten")),               # wrong type
        ("dream", "image", line_of(name, "image: phot")),              # missing node
        ("dream", "objective", line_of(name, "image: phot")),          # missing input (at 'inputs')
        ("out", "path", line_of(name, "../up.png")),                   # output outside the folder
        ("loop", "image", line_of(name, "image: loop")),               # self-loop
        ("a", "image", line_of(name, "inputs: {image: b}")),           # cycle
    }
    assert len(problems) == 12
    with pytest.raises(RecipeError, match=r"^12 problems in the recipe:"):
        validate(load_recipe(fixture(name)), registry)


def test_cycle_report_is_stable(registry):
    # networkx's cycle order follows string hashing; the report must not
    text = ("dreamnodes: 1\nnodes:\n"
            "  z: {type: test.passthrough, inputs: {image: y}}\n"
            "  y: {type: test.passthrough, inputs: {image: x}}\n"
            "  x: {type: test.mix, inputs: {a: z, b: w}}\n"
            "  w: {type: test.passthrough, inputs: {image: x}}\n")
    with pytest.raises(RecipeError) as info:
        validate(parse_recipe(text), registry)
    assert [p.message.split(";")[0] for p in info.value.problems] == [
        "the nodes form a cycle (z -> x -> y -> z)",
        "the nodes form a cycle (x -> w -> x)",
    ]
    assert [(p.node, p.field, p.line) for p in info.value.problems] == [("z", "image", 3), ("x", "b", 5)]


# ----------------------------------------------------------------------------
# save -> load -> save

ROUND_TRIP = EXAMPLES + [FIXTURES / n for n in (*VALID_FIXTURES, "unknown_type.yaml", "several_mistakes.yaml")]


@pytest.mark.parametrize("path", ROUND_TRIP, ids=[p.name for p in ROUND_TRIP])
def test_dump_load_dump_is_byte_identical(path):
    recipe = load_recipe(path)
    first = dump_recipe(recipe)
    again = parse_recipe(first, "saved.yaml")
    assert dump_recipe(again) == first
    assert list(again.nodes) == list(recipe.nodes)
    for nid, n in recipe.nodes.items():
        m = again.nodes[nid]
        assert (m.type, m.params, m.inputs) == (n.type, n.params, n.inputs), nid
        assert [type(v) for v in m.params.values()] == [type(v) for v in n.params.values()], nid
    assert (again.name, again.description, again.seed, again.editor) == \
        (recipe.name, recipe.description, recipe.seed, recipe.editor)


def test_dump_of_the_default_recipe_keeps_the_canonical_form():
    text = dump_recipe(load_recipe(ROOT / "examples" / "deepdream.yaml"))
    assert text.startswith("dreamnodes: 1\nname: Chelsea dreams\n")
    assert "transforms: [jitter]" in text
    assert "!!" not in text and "&" not in text  # no tags, no anchors


# ----------------------------------------------------------------------------
# the command line

def test_cli_validate_a_bad_recipe_exits_2_with_the_problems(capsys):
    path = fixture("unknown_type.yaml")
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert f"{path}:{line_of('unknown_type.yaml', 'image.laod')}: node 'photo', field 'type'" in err
    assert "Did you mean 'image.load'?" in err


def test_cli_validate_reports_every_problem(capsys):
    assert main(["validate", str(fixture("several_mistakes.yaml"))]) == 2
    out, err = capsys.readouterr()
    assert "12 problems in the recipe" in err
    assert err.count(str(fixture("several_mistakes.yaml")) + ":") == 12
    assert "Traceback" not in out + err


@pytest.mark.parametrize("name", ["invalid_yaml.yaml", "python_tag.yaml", "version_newer.yaml"])
def test_cli_validate_unreadable_recipes_exit_2(capsys, name):
    assert main(["validate", str(fixture(name))]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: 1 problem in the recipe:")
    assert "Traceback" not in out + err


def test_cli_validate_a_missing_file_exits_2(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    out, err = capsys.readouterr()
    assert "no such file" in err and "Traceback" not in out + err


def test_cli_validate_the_default_recipe_exits_0(capsys):
    assert main(["validate", str(ROOT / "examples" / "deepdream.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "ok (6 nodes)" in out
    assert err == ""


def test_cli_nodes_lists_the_types(capsys):
    assert main(["nodes"]) == 0
    out, _ = capsys.readouterr()
    for name in ("render.deepdream", "image.load", "image.save", "model.load", "model.layer", "transform.jitter"):
        assert f"  {name} " in out
    assert "render:" in out


def test_cli_nodes_describes_one_type(capsys):
    assert main(["nodes", "image.load"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("image.load")
    params = out.split("params:\n", 1)[1]
    assert "  source: path = 'sample:chelsea'" in params
    assert "  size: int in [8, 16384] or null = 512" in params
    assert "  fit: one of 'long_side', 'cover', 'contain', 'stretch' = 'cover'" in params
    assert "outputs:\n  image: Image" in out


def test_cli_nodes_unknown_type_exits_2(capsys):
    assert main(["nodes", "image.nosuch"]) == 2
    out, err = capsys.readouterr()
    assert "unknown node type 'image.nosuch'" in err and "Traceback" not in out + err
