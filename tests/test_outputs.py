"""Results are never lost without a word (issue 14, item 2), and a path typed on the command line is
the user's (item 7).

Item 2: a run that would replace a file an earlier run wrote refuses before anything runs, naming
the file and the two ways out (`--overwrite`, or a placeholder such as `{n}` in the output path);
`overwrite=True` from Python, Run > Overwrite Existing Files in the editor. Placeholders `{seed}`,
`{n}`, `{name}` and `{NODE.PARAM}` are filled in, and unknown ones are recipe errors.

Item 7: `--set photo.source=rocket.png` is resolved against the current folder, `~` is expanded,
absolute paths are allowed, and that file (only that one) may be read; the cache still keys it by
its contents. Paths inside a recipe keep their rules.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from dreamnodes import node
from dreamnodes.graphs import load_recipe, parse_recipe
from dreamnodes.runtime import Runner, run_recipe
from dreamnodes.runtime.cli import main
from dreamnodes.runtime.outputs import OutputsExist
from dreamnodes.types import Image

ROOT = Path(__file__).resolve().parents[1]
CALLS: list[str] = []


@node("outtest.count")
def outtest_count(value: float = 0.5) -> Image:
    """Test only: a flat 8x8 picture, counting its calls (to tell whether a run ran anything)."""
    CALLS.append("count")
    return Image(torch.full((1, 3, 8, 8), value))


@node("outtest.pair")
def outtest_pair() -> Image:
    """Test only: a batch of two 8x8 pictures (saved as NAME_0.png, NAME_1.png)."""
    return Image(torch.rand(2, 3, 8, 8))


GRADIENT = """dreamnodes: 1
name: {name}
seed: 3
nodes:
  g:   {{type: image.gradient, params: {{width: 16, height: 16, angle: 10.0}}}}
  out: {{type: image.save, inputs: {{image: g}}, params: {{path: '{path}'}}}}
"""


def recipe_file(folder: Path, path: str = "g.png", name: str = "Grad test") -> Path:
    f = folder / "r.yaml"
    f.write_text(GRADIENT.format(path=path, name=name))
    return f


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["run", *map(str, argv), "-q"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pixels(path: Path) -> np.ndarray:
    return np.asarray(PILImage.open(path).convert("RGB"), dtype=np.int16)


# ---------------------------------------------------------------- item 2: no silent overwrite
def test_a_second_run_refuses_before_it_starts_and_says_how_to_go_on(tmp_path, capsys):
    r, out = recipe_file(tmp_path), tmp_path / "out"
    assert run_cli(capsys, r, "--out", out)[0] == 0
    first = (out / "g.png").read_bytes()
    code, stdout, err = run_cli(capsys, r, "--out", out, "--set", "g.angle=80")
    assert code == 2
    assert "g.png" in err and "already there" in err
    assert "--overwrite" in err and "--set out.path='g-{n}.png'" in err
    assert "Traceback" not in err and stdout == ""
    assert (out / "g.png").read_bytes() == first  # the earlier result is untouched
    assert [p.name for p in out.iterdir()] == ["g.png"]  # and nothing else was written

    code, stdout, err = run_cli(capsys, r, "--out", out, "--set", "g.angle=80", "--overwrite")
    assert code == 0 and stdout.strip().endswith("g.png")
    assert (out / "g.png").read_bytes() != first


def test_nothing_runs_before_the_refusal(tmp_path):
    recipe = parse_recipe("dreamnodes: 1\nnodes:\n  c: {type: outtest.count}\n"
                          "  out: {type: image.save, inputs: {image: c}, params: {path: c.png}}\n")
    Runner(out_dir=tmp_path, use_cache=False).run(recipe)
    CALLS.clear()
    with pytest.raises(OutputsExist) as exc:
        Runner(out_dir=tmp_path, use_cache=False).run(recipe)
    assert CALLS == [] and exc.value.files == [tmp_path / "c.png"]
    Runner(out_dir=tmp_path, use_cache=False, overwrite=True).run(recipe)
    assert CALLS == ["count"]


def test_numbered_names_count_up_and_are_shared_by_the_outputs_of_a_run(tmp_path, capsys):
    r, out = recipe_file(tmp_path, "g-{n}.png"), tmp_path / "out"
    for _ in range(2):
        assert run_cli(capsys, r, "--out", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["g-1.png", "g-2.png"]
    (out / "g-7.png").write_bytes(b"an older result")  # numbers go on after the highest, never back
    two = parse_recipe(GRADIENT.format(path="g-{n}.png", name="x") +
                       "  also: {type: image.save, inputs: {image: g}, params: {path: 'sub/h-{n}.png'}}\n")
    result = Runner(out_dir=out).run(two)
    assert sorted(p.name for p in result.written) == ["g-8.png", "h-8.png"]
    assert (out / "g-7.png").read_bytes() == b"an older result"


def test_placeholders_take_the_seed_name_and_parameter_values(tmp_path, capsys):
    r = recipe_file(tmp_path, "{name}_{seed}_{g.angle}_{g.start}_{{x}}.png", name="My dream/../2")
    code, stdout, _ = run_cli(capsys, r, "--out", tmp_path / "out", "--seed", "11")
    assert code == 0
    assert Path(stdout.strip()).name == "My_dream_.._2_11_10__ff3a00_{x}.png"
    load = parse_recipe("dreamnodes: 1\nnodes:\n  photo: {type: image.load, params: {source: 'sample:coffee', size: 16}}\n"
                        "  out: {type: image.save, inputs: {image: photo}, params: {path: 'd-{photo.source}-{photo.size}.png'}}\n")
    assert [p.name for p in Runner(out_dir=tmp_path).run(load).written] == ["d-coffee-16.png"]
    # a placeholder may name a node the run does not need (--only)
    branch = parse_recipe("dreamnodes: 1\nnodes:\n  a: {type: image.gradient, params: {width: 8, height: 8}}\n"
                          "  b: {type: image.solid, params: {width: 24, height: 8}}\n"
                          "  out: {type: image.save, inputs: {image: a}, params: {path: 'x-{b.width}.png'}}\n"
                          "  out2: {type: image.save, inputs: {image: b}, params: {path: y.png}}\n")
    assert [p.name for p in Runner(out_dir=tmp_path).run(branch, only=["out"]).written] == ["x-24.png"]


def test_unknown_placeholders_are_recipe_errors_naming_node_and_field(tmp_path, capsys):
    for path, words in [("a-{m}.png", "not a placeholder"), ("a-{ghost.steps}.png", "no node 'ghost'"),
                        ("a-{g.angel}.png", "Did you mean 'angle'"), ("a-{out.path}.png", "output path itself"),
                        ("a-{n.png", "without its pair")]:
        code = main(["validate", str(recipe_file(tmp_path, path))])
        err = capsys.readouterr().err
        assert code == 2, path
        assert "node 'out', field 'path'" in err and words in err, err
        assert "Traceback" not in err


def test_a_batch_that_would_replace_a_file_writes_nothing(tmp_path):
    (tmp_path / "p_1.png").write_bytes(b"older")
    recipe = parse_recipe("dreamnodes: 1\nnodes:\n  p: {type: outtest.pair}\n"
                          "  out: {type: image.save, inputs: {image: p}, params: {path: p.png}}\n")
    with pytest.raises(OutputsExist) as exc:
        Runner(out_dir=tmp_path).run(recipe)
    assert exc.value.files == [tmp_path / "p_1.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p_1.png"]
    assert (tmp_path / "p_1.png").read_bytes() == b"older"


def test_the_python_api_takes_overwrite(tmp_path):
    r = recipe_file(tmp_path)
    run_recipe(str(r), out_dir=tmp_path / "out")
    with pytest.raises(OutputsExist, match="overwrite=True"):
        run_recipe(str(r), out_dir=tmp_path / "out")
    assert run_recipe(str(r), out_dir=tmp_path / "out", overwrite=True).written == [(tmp_path / "out/g.png").resolve()]


def test_a_kept_runner_takes_unchanged_results_from_its_cache_but_refuses_to_replace_them(tmp_path):
    """The editor's case: one Runner for many runs. Run again with nothing changed: the file it wrote
    is still its own result (nothing written); change a parameter: the new picture would replace it."""
    recipe = load_recipe(str(recipe_file(tmp_path)))
    runner = Runner(out_dir=tmp_path / "out")
    runner.run(recipe)
    again = runner.run(recipe)
    assert "out" in again.cached and again.written == []
    recipe.nodes["g"].params["angle"] = 70.0
    with pytest.raises(OutputsExist):
        runner.run(recipe)
    runner.overwrite = True
    assert [p.name for p in runner.run(recipe).written] == ["g.png"]


def test_make_run_works_twice(tmp_path, capsys, monkeypatch):
    """`make run`'s command, as the Makefile has it (smaller, for speed), twice into one folder."""
    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if "bin/dreamnodes run" in l)
    argv = shlex.split(line.split("bin/dreamnodes", 1)[1])
    assert argv[0] == "run"
    argv = [a if not a.startswith("examples/") else str(ROOT / a) for a in argv[1:]]
    monkeypatch.chdir(tmp_path)
    small = ["--set", "photo.size=32", "--set", "dream.octaves=1", "--set", "dream.steps=1", "-q"]
    for _ in range(2):
        assert main(["run", *argv, *small]) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "deepdream.png").exists()


# ---------------------------------------------------------------- item 7: paths typed on the command line
LOAD = """dreamnodes: 1
nodes:
  photo: {type: image.load, params: {source: 'sample:chelsea', size: 16}}
  out:   {type: image.save, inputs: {image: photo}, params: {path: 'p-{n}.png'}}
"""


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """recipes/r.yaml, the current folder work/ with rocket.png in it, and a home with pics/mine.png."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "r.yaml").write_text(LOAD)
    for folder, colour in (("work", (250, 0, 0)), ("home/pics", (0, 0, 250))):
        (tmp_path / folder).mkdir(parents=True)
        PILImage.new("RGB", (20, 20), colour).save(tmp_path / folder / ("rocket.png" if folder == "work" else "mine.png"))
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _written(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def test_a_typed_path_is_resolved_from_the_current_folder(folders, capsys):
    code, stdout, err = run_cli(capsys, "../recipes/r.yaml", "--set", "photo.source=rocket.png")
    assert code == 0, err
    assert pixels(_written(stdout))[..., 0].min() > 240  # the red picture of the current folder


def test_a_typed_path_may_be_absolute_or_start_with_a_tilde(folders, capsys):
    for typed in ("~/pics/mine.png", str(folders / "home" / "pics" / "mine.png")):
        code, stdout, err = run_cli(capsys, folders / "recipes" / "r.yaml", "--set", f"photo.source={typed}")
        assert code == 0, err
        assert pixels(_written(stdout))[..., 2].min() > 240  # the blue one


def test_a_typed_path_allows_that_file_only(folders, capsys):
    (folders / "home" / "pics" / "other.png").write_bytes((folders / "home" / "pics" / "mine.png").read_bytes())
    other = folders / "home" / "pics" / "other.png"
    (folders / "recipes" / "r.yaml").write_text(LOAD + f"  second: {{type: image.load, params: {{source: '{other}'}}}}\n"
                                                "  out2: {type: image.save, inputs: {image: second}, params: {path: q.png}}\n")
    code, _, err = run_cli(capsys, folders / "recipes" / "r.yaml", "--set", "photo.source=~/pics/mine.png")
    assert code == 2 and "node 'second'" in err and "outside the folders" in err


def test_paths_inside_a_recipe_keep_their_rules(folders, capsys):
    (folders / "recipes" / "r.yaml").write_text(LOAD.replace("'sample:chelsea'", "rocket.png"))
    code, _, err = run_cli(capsys, folders / "recipes" / "r.yaml")
    assert code != 0 and "rocket.png" in err and "recipes" in err  # looked for next to the recipe, not here


def test_the_cache_still_knows_a_typed_file_by_its_contents(folders, capsys):
    args = ("../recipes/r.yaml", "--set", "photo.source=rocket.png")
    first = _written(run_cli(capsys, *args)[1])
    PILImage.new("RGB", (20, 20), (0, 250, 0)).save(folders / "work" / "rocket.png")  # same name, new picture
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    second = _written(stdout)
    assert first != second and pixels(second)[..., 1].min() > 240 and pixels(first)[..., 0].min() > 240


# ---------------------------------------------------------------- item 2 in the editor
def test_the_editor_refuses_to_replace_a_result_until_told_to(qtbot_or_skip, tmp_path):
    qtbot = qtbot_or_skip
    from dreamnodes.editor.qt import QSettings
    from dreamnodes.editor.window import MainWindow

    out = tmp_path / "out"
    out.mkdir()
    (out / "g.png").write_bytes(b"an earlier result")
    w = MainWindow(settings=QSettings(str(tmp_path / "e.ini"), QSettings.Format.IniFormat),
                   runner=Runner(out_dir=out))
    w.ask_unsaved = lambda: "discard"
    w.out_dir = out
    qtbot.addWidget(w)
    try:
        assert w.open_path(str(recipe_file(tmp_path)), ask=False)
        qtbot.waitUntil(lambda: w.ready, timeout=120_000)
        with qtbot.waitSignal(w.run_failed, timeout=60_000) as failed:
            assert w.run()
        assert isinstance(failed.args[0], OutputsExist)
        assert any("Overwrite Existing Files" in m and "g.png" in m for m in w.log.messages("error"))
        assert (out / "g.png").read_bytes() == b"an earlier result"
        w.act_overwrite.setChecked(True)  # Run > Overwrite Existing Files
        with qtbot.waitSignal(w.run_finished, timeout=60_000):
            assert w.run()
        assert (out / "g.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        w.shutdown()


@pytest.fixture
def qtbot_or_skip(request):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("PySide6.QtWidgets", reason="the editor extra is not installed")
    pytest.importorskip("pytestqt", reason="pytest-qt is not installed")
    pytest.importorskip("nodeeditor", reason="nodeeditor-qtpy is not installed")
    return request.getfixturevalue("qtbot")


def test_a_saved_picture_gets_the_mode_any_new_file_gets(tmp_path):
    # staged through a private temporary file (0600), the picture must not stay private
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("dreamnodes: 1\nnodes:\n  pic: {type: image.solid, params: {width: 8, height: 8}}\n"
                      "  out: {type: image.save, inputs: {image: pic}, params: {path: t.png}}\n")
    old = os.umask(0o022)
    try:
        assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "-q"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "t.png").stat().st_mode & 0o777 == 0o644
