"""Issue 14, items 5 and 9: progress that tells the truth (work, not steps; the running node from
its start; plain lines into pipes) and the smaller things a new user meets on day one (doc
continuation lines, whole summaries, suggestions, -q help, recipes inside GIFs and MP4s,
run_recipe overrides). Small and fast: fake gradients, tiny pictures, one real short run."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch

from dreamnodes import Context
from dreamnodes import events as ev
from dreamnodes.errors import RecipeError
from dreamnodes.meta import RECIPE_KEY
from dreamnodes.nodes.kernel import frames as kframes
from dreamnodes.nodes.kernel import steps
from dreamnodes.runtime.cli import ProgressPrinter, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- item 5: progress by work
class FlatGradient(steps.ObjectiveGradient):
    """A gradient of ones and a zero score: the octave loop's bookkeeping without a network."""

    def __call__(self, x):
        return torch.ones_like(x), torch.zeros(x.shape[0])


def flat_gradient(tile: int = 0) -> FlatGradient:
    return FlatGradient(None, None, (), steps.Pipeline([]), torch.Generator(), torch.Generator(), tile, 64)


def test_octave_progress_follows_pixels_not_steps():
    reports = []
    settings = steps.DreamSettings(octaves=3, octave_scale=2.0, steps=2, step_size=1.0)
    steps.dream(torch.full((1, 3, 128, 128), 0.5), flat_gradient(), settings,
                lambda done, total, label, x, work=None: reports.append((done, total, work)))
    # octaves of 32, 64 and 128 px: 1 : 4 : 16 of the work per step
    assert [d for d, _, _ in reports] == [1, 2, 3, 4, 5, 6] and reports[0][1] == 6
    works = [w for _, _, w in reports]
    assert works[1] == pytest.approx(1 / 21)  # after the first octave: its share of pixel-steps, not 1/3
    assert works[3] == pytest.approx(5 / 21)
    assert works[-1] == pytest.approx(1.0) and works == sorted(works)


def test_tiled_octaves_count_the_pixels_their_tiles_run():
    g = flat_gradient(tile=64)
    assert g.pixels(32, 32) == 32 * 32  # a picture smaller than the tile: whole
    assert g.pixels(256, 256) > 256 * 256  # tiles see beyond their cores (the overlap)


def test_frames_progress_spreads_each_frame_s_work():
    got = []
    ctx = Context(node_id="zoom", emit=got.append)

    def make(i, previous, progress):
        progress(1, 2, "octave 1/2", None, work=0.2)
        progress(2, 2, "octave 2/2", None, work=1.0)
        return torch.zeros(1, 3, 8, 8)

    kframes.checkpointed_frames(ctx, 2, 2, make)
    fractions = [e.fraction for e in got if isinstance(e, ev.Progress)]
    assert fractions == pytest.approx([0.1, 0.5, 0.6, 1.0])


def _clock():
    now = [0.0]
    return now, (lambda: now[0])


def test_no_eta_from_the_first_updates_then_a_true_one():
    now, clock = _clock()
    run = ev.RunProgress(clock=clock)
    run(ev.NodeQueued("dream", 10.0))
    run(ev.NodeStarted("dream", "render.deepdream"))
    now[0] = 5.0  # set-up: the model warms up before the first step
    run(ev.Progress("dream", 1, 100, "", 0.01))
    assert run.eta() is None
    etas = []
    for k in range(2, 21):  # then 0.1 s per percent: 8 s left at 20 %
        now[0] += 0.1
        run(ev.Progress("dream", k, 100, "", k / 100))
        etas.append(run.eta())
    assert etas[:9] == [None] * 9  # under a second of steps: no rate yet
    assert etas[-1] == pytest.approx(8.0)


def test_whole_run_progress_weighs_nodes_by_their_work():
    run = ev.RunProgress()
    for nid, work in [("photo", 0.0), ("net", 0.0), ("dream", 20.0), ("out", 0.0)]:
        run(ev.NodeQueued(nid, work))
    for nid in ("photo", "net"):
        run(ev.NodeStarted(nid, "x"))
        run(ev.NodeFinished(nid, cached=False))
    run(ev.NodeStarted("dream", "render.deepdream"))
    assert run.position == 3 and run.run_fraction() == 0.0  # not 2/4: the loads were the cheap half
    run(ev.Progress("dream", 5, 40, "", 0.25))
    assert run.run_fraction() == pytest.approx(0.25)


def test_printer_writes_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    p = ProgressPrinter(stream=out)  # a StringIO is no terminal
    p(ev.NodeQueued("dream", 1.0))
    p(ev.NodeStarted("dream", "render.deepdream"))
    p(ev.Progress("dream", 1, 200, "octave 1/1", 1 / 200))
    assert "[1/1] dream (render.deepdream): started" in out.getvalue()  # at its first step, before its end
    for k in range(2, 201):
        p(ev.Progress("dream", k, 200, "octave 1/1", k / 200))
    p(ev.NodeFinished("dream", cached=False, seconds=3.0))
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert 5 <= len(text.splitlines()) <= 14  # one line per 10 %, not one per step


def test_a_slow_node_is_named_while_it_runs_and_an_instant_one_in_one_line():
    import time

    out = io.StringIO()
    p = ProgressPrinter(stream=out, announce_after=0.05)
    for nid in ("net", "photo"):
        p(ev.NodeQueued(nid))
    p(ev.NodeStarted("net", "model.load"))  # reports no progress
    time.sleep(0.5)
    assert out.getvalue() == "[1/2] net (model.load): started\n"  # while it still runs
    p(ev.NodeFinished("net", cached=False, seconds=0.5))
    p(ev.NodeStarted("photo", "image.load"))
    p(ev.NodeFinished("photo", cached=True))
    time.sleep(0.2)
    assert out.getvalue().splitlines()[1:] == ["  net: 0.50s", "  photo: cached"]


def test_cli_into_a_pipe_names_the_node_at_its_start_and_writes_no_carriage_return(tmp_path, capsys):
    argv = ["run", str(ROOT / "examples" / "deepdream.yaml"), "--set", "photo.size=64", "--set", "dream.octaves=2",
            "--set", "dream.steps=3", "--out", str(tmp_path), "--no-cache"]
    assert main(argv) == 0  # stderr is pytest's capture: no terminal, as a pipe or a log file
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if "dream (render.deepdream): started" in line)
    end = next(i for i, line in enumerate(lines) if re.match(r"\s+dream: [\d.]+s$", line))
    assert start < end


# ---------------------------------------------------------------- item 9: the smaller things
def test_doc_continuation_lines_that_start_like_an_argument_stay_in_it():
    from dreamnodes.spec import build_spec

    def tiled(tile: int = 0, overlap: int = 64) -> None:
        """A node.

        Args:
            tile: side of the tiles, in pixels.
                0: automatic, whole pictures up to a megapixel.
            overlap: context beyond each tile.
        """

    spec = build_spec(tiled, "test.tiled")
    assert spec.param("tile").doc == "side of the tiles, in pixels. 0: automatic, whole pictures up to a megapixel."
    assert spec.param("overlap").doc == "context beyond each tile."


def test_nodes_list_shows_each_first_sentence_whole(capsys):
    from dreamnodes.registry import families

    assert main(["nodes"]) == 0
    listed = " ".join(capsys.readouterr().out.split())
    for specs in families().values():
        for s in specs:
            first = " ".join(s.doc.split("\n\n")[0].split())
            sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", first)[0]
            assert f"{s.type_name} {sentence}" in listed


def test_nodes_suggests_the_type_from_its_operation(capsys):
    assert main(["nodes", "deepdream"]) == 2
    assert "did you mean render.deepdream?" in capsys.readouterr().err


def test_quiet_has_help():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    quiet = next(a for a in sub.choices["run"]._actions if "-q" in a.option_strings)
    assert quiet.help and "progress" in quiet.help


def test_readme_says_what_the_latent_walk_writes():
    from dreamnodes.graphs import load_recipe

    recipe = load_recipe(ROOT / "examples" / "latent_walk.yaml")
    written = {Path(n.params["path"]).suffix.lstrip(".").upper() for n in recipe.nodes.values() if n.type == "video.save"}
    readme = (ROOT / "README.md").read_text("utf-8")
    clause = re.search(r"\[examples/latent_walk\.yaml\]\([^)]*\),\s*([^;)]*)", readme).group(1)
    claimed = {f for f in ("MP4", "GIF") if f in clause}  # "which writes an MP4", once "written as MP4 and GIF"
    assert claimed == written


ANIMATION = """dreamnodes: 1
seed: 3
nodes:
  b: {type: image.solid, params: {color: '#c08020', width: 32, height: 24}}
  clip: {type: video.frames, inputs: {images: b}, params: {fps: 4}}
  out: {type: video.save, inputs: {frames: clip}, params: {path: clip.gif}}
"""


@pytest.mark.parametrize("ext", ["gif", "mp4"])
def test_gif_and_mp4_carry_their_recipe_for_show_and_run(tmp_path, capsys, ext):
    from dreamnodes.meta import read_embedded_text
    from dreamnodes.nodes.video import ffmpeg_exe

    if ext == "mp4" and ffmpeg_exe() is None:
        pytest.skip("no ffmpeg (the video extra)")
    recipe = tmp_path / "clip.yaml"
    recipe.write_text(ANIMATION.replace("clip.gif", f"clip.{ext}"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "-q"]) == 0
    made = tmp_path / "out" / f"clip.{ext}"
    assert "color: '#c08020'" in read_embedded_text(made)[RECIPE_KEY]
    capsys.readouterr()
    assert main(["show", str(made)]) == 0
    shown = capsys.readouterr().out
    assert "video.save" in shown and "# provenance:" in shown
    assert main(["run", str(made), "--out", str(tmp_path / "again"), "-q"]) == 0
    assert (tmp_path / "again" / f"clip.{ext}").is_file()


def test_damaged_or_foreign_animations_are_refused_plainly(tmp_path, capsys):
    from PIL import Image as PILImage

    foreign = tmp_path / "foreign.gif"
    PILImage.new("RGB", (8, 8)).save(foreign, comment=b"made elsewhere")
    assert main(["show", str(foreign)]) == 2
    assert "holds no dreamnodes recipe" in capsys.readouterr().err
    recipe = tmp_path / "clip.yaml"
    recipe.write_text(ANIMATION)
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "-q"]) == 0
    data = (tmp_path / "out" / "clip.gif").read_bytes()
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[:200])  # inside the comment
    for argv in (["show", str(cut)], ["run", str(cut), "--out", str(tmp_path / "x")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cut short" in err and "Traceback" not in err
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00" + b"\xff\xff\xff\xffmoov")  # a box past the end
    assert main(["show", str(fake)]) == 2
    assert "impossible size" in capsys.readouterr().err


def test_run_recipe_takes_overrides(tmp_path):
    from dreamnodes.runtime import run_recipe

    recipe = tmp_path / "solid.yaml"
    recipe.write_text("dreamnodes: 1\nnodes:\n  img: {type: image.solid, params: {width: 16, height: 16}}\n")
    assert run_recipe(recipe, set={"img.width": 40}, use_cache=False).output("img").width == 40
    assert run_recipe(recipe, set=["img.height=24"], use_cache=False).output("img").height == 24
    with pytest.raises(RecipeError, match="names node 'imag', which is not in the recipe"):
        run_recipe(recipe, set={"imag.width": 40})
