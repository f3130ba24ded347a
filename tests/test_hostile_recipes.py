"""Hostile recipes, second pass: recipes that expand when saved, merge keys, reads that never end
(huge, sparse, device and FIFO recipe files), hints that cost minutes, outputs that collide or
hide, and nesting deep enough to exhaust the stack.

Each case goes through `hostile.check_case` (exact error class, message, exit code, no traceback,
no escape sequence, nothing changed outside the output folder, peak memory well under 1 GB).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from hostile import TINY, Case, Sandbox, check_case  # noqa: E402

from dreamnodes.errors import RecipeError, UsageError  # noqa: E402
from dreamnodes.files import InputFileError, read_bounded  # noqa: E402
from dreamnodes.graphs.recipe import dump_recipe, parse_recipe  # noqa: E402
from dreamnodes.graphs.validate import validate  # noqa: E402
from dreamnodes.registry import load_all  # noqa: E402
from dreamnodes.runtime.cli import main  # noqa: E402

SOLID = "{type: image.solid, params: {width: 8, height: 8}}"


# ----------------------------------------------------------------------------
# crafted inputs

def _expanding(box: Sandbox) -> Path:
    """3 KB of recipe whose saved form (aliases written out) is 3 MB: too large to embed and re-run."""
    text = ("dreamnodes: 1\ndescription: &d " + "x" * 100_000 + "\n"
            "editor: {notes: [" + ", ".join(["*d"] * 30) + "]}\n" + TINY.split("\n", 1)[1])
    return box.write("expand.yaml", text)


def _merge(box: Sandbox) -> Path:
    return box.write("merge.yaml", "dreamnodes: 1\nnodes:\n"
                     "  pic: {type: image.solid, params: &size {width: 8, height: 8}}\n"
                     "  wide: {type: image.solid, params: {<<: *size, width: 16}}\n"
                     "  out: {type: image.save, inputs: {image: wide}, params: {path: out.png}}\n")


def _sparse(box: Sandbox) -> Path:
    """A 5 GB recipe file that costs no disk (sparse), outside the sandbox so its snapshot skips it."""
    path = box.root.parent / "huge.yaml"
    path.write_bytes(TINY.encode())
    os.truncate(path, 5 * 1024**3)
    return path


def _misspelt(box: Sandbox) -> Path:
    """3000 nodes with long ids, misspelt types (long ones, and one close to a type) and each wired
    to a misspelt node among the 3000 similar ids: before, its hints took about ten minutes."""
    lines = ["dreamnodes: 1", "nodes:", f"  node_0000_{'a' * 40}: {{type: image.sollid}}"]
    for i in range(1, 3000):
        kind = f"image.solid_{'d' * 40}_{i}" if i % 2 else "image.save"
        lines.append(f"  node_{i:04d}_{'a' * 40}: {{type: {kind}, "
                     f"inputs: {{image: node_{(i + 1) % 3000:04d}_{'a' * 39}b}}}}")
    return box.write("misspelt.yaml", "\n".join(lines) + "\n")


def _two_saves(box: Sandbox) -> Path:
    return box.write("twice.yaml", TINY + "  out2: {type: image.save, inputs: {image: pic}, params: {path: out.png}}\n")


def _out_named(name: str):
    return lambda box: box.write("named.yaml", TINY.replace("path: out.png", f'path: "{name}"'))


def _deep_recipe(box: Sandbox) -> Path:
    return box.write("deep.yaml", TINY.replace("width: 8", "width: " + "[" * 5000 + "]" * 5000))


def _tiny(box: Sandbox) -> Path:
    return box.write("tiny.yaml", TINY)


CONTROL = ("holds control characters", "file names cannot")

CASES = [
    # recipe expansion: what a run embeds in its pictures must be what `run picture.png` accepts
    Case("alias_expands_past_the_saved_bound", _expanding, RecipeError,
         ("saved, this recipe would be at least 3,100,", "at most 2,000,000 bytes", "aliases"), field=(None, None)),
    Case("merge_key_override", _merge, None, writes=("out.png",)),
    # reads that never end
    Case("recipe_sparse_5gb", _sparse, RecipeError, ("the file is 5368709120 bytes; a recipe may be at most 2000000",)),
    Case("recipe_dev_zero", lambda b: Path("/dev/zero"), RecipeError, ("/dev/zero is a device, not a regular file",)),
    Case("png_recipe_dev_zero", lambda b: (os.symlink("/dev/zero", b.recipes / "zero.png"), b.recipes / "zero.png")[1],
         UsageError, ("is a device, not a regular file",)),
    # expensive messages: a hint's work is bounded, the first problems still get hints
    Case("thousands_of_long_misspelt_types", _misspelt, RecipeError,
         ("unknown node type 'image.sollid'. Did you mean 'image.solid'?", "unknown node type 'image.solid_ddd",
          f"refers to node 'node_0003_{'a' * 39}b', which is not in the recipe. Did you mean 'node_0003_",
          "validation stopped after 500 problems"), command="validate"),
    # outputs
    Case("two_saves_one_path", _two_saves, RecipeError,
         ("'out.png' is also written by node 'out' (image.save)", "give each its own path"), field=("out2", "path")),
    Case("out_staging_name", _out_named(".dreamnodes-staging-x/out.png"), RecipeError,
         ("is reserved for the runtime's own files", "choose another name"), field=("out", "path")),
    Case("out_bidi_override", _out_named("gpj\u202e.png"), RecipeError, CONTROL + ("U+202E",), field=("out", "path")),
    Case("out_c1_next_line", _out_named("a\\x85b.png"), RecipeError, CONTROL + ("U+0085",), field=("out", "path")),
    Case("out_bidi_isolate", _out_named("a\u2066b.png"), RecipeError, CONTROL + ("U+2066",), field=("out", "path")),
    Case("out_lone_surrogate", _out_named("a\\ud800b.png"), RecipeError, CONTROL + ("U+D800",), field=("out", "path")),
    # nesting deep enough to exhaust Python's stack
    Case("deep_recipe_value", _deep_recipe, RecipeError, ("nested deeper than 40 levels",), field=("pic", "width")),
    # (the command line reads a --set value that is not YAML it can read as the string it is)
    Case("deep_set_value", _tiny, RecipeError, ("field 'width': must be an integer, got a string '[[[[",),
         args=("--set", "pic.width=" + "[" * 5000 + "]" * 5000), field=("pic", "width")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_recipe(case: Case, sandbox: Sandbox, capsys):
    start = time.perf_counter()
    check_case(case, sandbox, capsys)
    # refused quickly (reading 3000 nodes of YAML alone takes about 2 s; a run that succeeds may import torch)
    if case.error is not None:
        assert time.perf_counter() - start < 10, "a hostile case must be refused quickly"


# ----------------------------------------------------------------------------
# recipe expansion

def test_a_recipe_at_the_saved_bound_runs_and_its_picture_runs_again(sandbox, capsys, monkeypatch):
    """The bound on what a run embeds is the bound `show` and `run picture.png` accept."""
    from dreamnodes import meta
    from dreamnodes.graphs import recipe as recipe_module, yamlio

    monkeypatch.setattr(yamlio, "MAX_BYTES", 20_000)  # the same bounds, smaller: a fast test
    monkeypatch.setattr(meta, "MAX_CHUNK", 20_000)
    head = TINY.split("\n", 1)[1]
    fill = 20_000 - len(dump_recipe(parse_recipe("dreamnodes: 1\ndescription: x\n" + head)).encode()) + 1
    at = "dreamnodes: 1\ndescription: " + "x" * fill + "\n" + head
    assert len(dump_recipe(parse_recipe(at)).encode()) == recipe_module.max_saved_bytes() == 20_000
    assert main(["run", str(sandbox.write("at.yaml", at)), "--out", str(sandbox.out), "-q"]) == 0
    picture = sandbox.out / "out.png"
    assert main(["show", str(picture)]) == 0
    assert main(["run", str(picture), "--out", str(sandbox.out / "again"), "-q"]) == 0
    over = at.replace("description: x", "description: xx")
    assert main(["run", str(sandbox.write("over.yaml", over)), "--out", str(sandbox.out / "over"), "-q"]) == 2
    assert "saved, this recipe would be 20,001 bytes" in capsys.readouterr().err
    assert not (sandbox.out / "over").exists()


def test_merge_keys_follow_yaml():
    text = ("dreamnodes: 1\nnodes:\n"
            "  a: {type: image.solid, params: &a {width: 8, height: 8, color: '#ff0000'}}\n"
            "  b: {type: image.solid, params: &b {width: 9, height: 9}}\n"
            "  c: {type: image.solid, params: {<<: [*b, *a], width: 16}}\n"  # own key wins, then the earlier merge
            "  d: {type: image.solid, params: &d {<<: *a, height: 20}}\n"
            "  e: {type: image.solid, params: *d}\n")  # a merged mapping used again: no false duplicate
    recipe = parse_recipe(text, "m.yaml")
    assert recipe.problems == []
    assert recipe.nodes["c"].params == {"width": 16, "height": 9, "color": "#ff0000"}
    assert recipe.nodes["d"].params == recipe.nodes["e"].params == {"width": 8, "height": 20, "color": "#ff0000"}
    validate(recipe, load_all())
    assert parse_recipe(dump_recipe(recipe)).nodes["c"].params == recipe.nodes["c"].params


def test_a_key_written_twice_is_still_a_duplicate_next_to_a_merge():
    recipe = parse_recipe("dreamnodes: 1\nx: &x {width: 8}\nnodes:\n"
                          "  a: {type: image.solid, params: {<<: *x, height: 8, height: 9}}\n", "m.yaml")
    assert any("'height' appears twice" in p.message and p.node == "a" for p in recipe.problems)


def test_a_merge_of_itself_is_refused():
    with pytest.raises(RecipeError, match="nested deeper than 40 levels"):
        parse_recipe("dreamnodes: 1\nnodes: {}\neditor: &e {x: 1, y: {<<: *e}}\n")


# ----------------------------------------------------------------------------
# reads that never end

def test_a_sparse_5gb_recipe_is_refused_without_reading_it(sandbox, capsys):
    path = _sparse(sandbox)
    start = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    assert time.perf_counter() - start < 1
    assert "the file is 5368709120 bytes" in capsys.readouterr().err


def _run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(HERE))
    return subprocess.run([sys.executable, "-m", "dreamnodes.runtime.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("name,command", [("pipe.yaml", "run"), ("pipe.yaml", "validate"), ("pipe.png", "run"),
                                          ("pipe.png", "show")])
def test_a_fifo_as_recipe_does_not_block(sandbox, name, command):
    fifo = sandbox.recipes / name
    os.mkfifo(fifo)
    args = ["--out", str(sandbox.out), "-q"] if command == "run" else []
    proc = _run_cli(command, str(fifo), *args)  # before: blocked until the timeout
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "is a pipe (FIFO), not a regular file" in proc.stderr


def test_read_bounded(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"12345")
    assert read_bounded(path, 5, "the recipe") == b"12345"
    with pytest.raises(InputFileError, match="is 5 bytes; it may be at most 4"):
        read_bounded(path, 4, "the recipe")
    with pytest.raises(InputFileError, match="is a folder, not a regular file"):
        read_bounded(tmp_path, 4, "the recipe")
    os.mkfifo(tmp_path / "fifo")
    done: list = []
    worker = threading.Thread(target=lambda: done.append(_refusal(tmp_path / "fifo")), daemon=True)
    worker.start()
    worker.join(5)
    assert done and "is a pipe (FIFO)" in done[0]
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing", 4, "the recipe")


def _refusal(path: Path) -> str:
    try:
        read_bounded(path, 100, "the recipe")
    except InputFileError as exc:
        return str(exc)
    return "read"


# ----------------------------------------------------------------------------
# expensive messages

def test_hints_are_bounded_in_work_not_only_in_number():
    """500 problems each wanting a hint over 3000 similar node ids: quick, and the first get their hint."""
    text = "dreamnodes: 1\nnodes:\n" + "".join(
        f"  n{i:04d}: {{type: image.save, inputs: {{image: n{(i + 7) % 3000:04d}x}}}}\n" for i in range(3000))
    recipe = parse_recipe(text, "many.yaml")
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        validate(recipe, load_all())
    assert time.perf_counter() - start < 3
    problems = info.value.problems
    assert "Did you mean 'n0007'?" in problems[1].message and "Did you mean 'n0008'?" in problems[2].message
    assert len(problems) <= 501


def test_a_long_word_gets_no_hint_and_costs_nothing():
    recipe = parse_recipe("dreamnodes: 1\nnodes:\n  a: {type: image.solid" + "d" * 100_000 + "}\n", "long.yaml")
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        validate(recipe, load_all())
    assert time.perf_counter() - start < 1
    assert "Did you mean" not in info.value.problems[0].message


# ----------------------------------------------------------------------------
# outputs

def test_two_writers_of_one_file_are_refused_whatever_the_spelling(sandbox):
    text = TINY + "  gif: {type: image.save, inputs: {image: pic}, params: {path: ./sub//OUT.png}}\n"
    text = text.replace("out.png", "sub/out.png")
    with pytest.raises(RecipeError) as info:
        validate(parse_recipe(text, "t.yaml"), load_all())
    (problem,) = info.value.problems
    assert (problem.node, problem.field) == ("gif", "path")
    assert "also written by node 'out'" in problem.message


def test_default_output_paths_collide_too():
    text = "dreamnodes: 1\nnodes:\n  pic: " + SOLID + "\n" \
           "  a: {type: image.save, inputs: {image: pic}}\n  b: {type: image.save, inputs: {image: pic}}\n"
    with pytest.raises(RecipeError, match="'dream.png' is also written by node 'a'"):
        validate(parse_recipe(text), load_all())


def test_the_reserved_names_are_the_runtimes_own():
    from dreamnodes.runtime.executor import STAGING_PREFIX
    from dreamnodes.spec import RESERVED_OUTPUT_PREFIXES

    assert STAGING_PREFIX in RESERVED_OUTPUT_PREFIXES


def test_ordinary_unicode_output_names_are_fine():
    for name in ("caf\u00e9.png", "\u753b\u50cf/\u5922.png", "\U0001f308.png", "a b.png"):
        text = TINY.replace("path: out.png", f'path: "{name}"')
        validate(parse_recipe(text), load_all())


# ----------------------------------------------------------------------------
# nesting

def test_a_deep_set_value_is_read_with_a_message():
    from dreamnodes.graphs.yamlio import read_yaml

    with pytest.raises(RecipeError, match="nested deeper than 40 levels"):
        read_yaml("[" * 5000 + "]" * 5000, "--set")


def test_a_deep_value_built_in_python_is_refused_by_validation():
    recipe = parse_recipe(TINY)
    value: list = []
    for _ in range(5000):
        value = [value]
    recipe.editor = {"deep": value}
    with pytest.raises(RecipeError, match="nested deeper than 40 levels"):
        validate(recipe, load_all())
