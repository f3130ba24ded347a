"""The editor, driven like a user would (offscreen Qt, pytest-qt): nodes are
dropped from the palette, wired by dragging sockets, set through their
widgets, run, saved and opened again.

Needs the `editor` extra (nodeeditor-qtpy, PySide6-Essentials, pytest-qt);
without it (or without the system libraries Qt loads) the module is skipped
with the reason.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets", reason="the editor extra is not installed: pip install -e '.[editor]'")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed: pip install -e '.[test]'")
pytest.importorskip("nodeeditor", reason="nodeeditor-qtpy is not installed: pip install -e '.[editor]'")

from dreamnodes import Context, Range, node  # noqa: E402
from dreamnodes.graphs import dump_recipe, load_recipe, parse_recipe, validate  # noqa: E402
from dreamnodes.registry import load_all  # noqa: E402
from dreamnodes.runtime import Runner  # noqa: E402
from dreamnodes.types import Image  # noqa: E402
from dreamnodes.editor.qt import QPointF, QSettings, Qt, QTimer, QtCore, QtGui  # noqa: E402
from dreamnodes.editor.widgets import make_editor  # noqa: E402
from dreamnodes.editor.window import MainWindow  # noqa: E402
from dreamnodes.editor.worker import PreviewReady  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20


@node("edtest.slow")
def edtest_slow(image: Image, ctx: Context, steps: Annotated[int, Range(1, 200)] = STEPS,
                fade: Annotated[float, Range(0, 1)] = 0.9) -> Image:
    """Test only: `steps` steps of ~50 ms of real work, each reporting progress and a preview."""
    x = image.pixels.clone()
    w = torch.linspace(-1, 1, 64 * 64).view(64, 64)
    for k in range(steps):
        t_end = time.perf_counter() + 0.05
        while time.perf_counter() < t_end:  # small torch ops: the worker holds the GIL often
            torch.tanh(x[0, 0, :64, :64] @ w)
        x = (x * fade + (1 - fade) * 0.5).clamp(0, 1)
        ctx.progress(k + 1, steps)
        ctx.preview(Image(x.clone()))
    return Image(x)


@node("edtest.mix")
def edtest_mix(a: Image, b: Image) -> Image:
    """Test only: average two pictures."""
    return Image((a.pixels + b.pixels) / 2)


# -- helpers -------------------------------------------------------------------------
@pytest.fixture
def win(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "editor.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, runner=Runner(out_dir=tmp_path / "out"))
    w.ask_unsaved = lambda: "discard"  # no modal dialogs in tests
    w.out_dir = tmp_path / "out"
    qtbot.addWidget(w)
    w.resize(1700, 1000)
    w.show()
    qtbot.waitExposed(w)
    # the worker imports torchvision once at start (seconds, holding the GIL); runs measured below start after it
    qtbot.waitUntil(lambda: w.ready, timeout=120_000)
    yield w
    w.shutdown()


def drop(win, type_name: str, x: int, y: int, name: str | None = None):
    """Drag a type from the palette and drop it at view position (x, y); then rename it to `name`
    (ids made on the canvas depend on which other node types are registered)."""
    mime = win.palette.tree.mimeData([win.palette.items[type_name]])
    pos = QPointF(x, y)
    with warnings.catch_warnings():  # PySide6 marks the QPoint constructor deprecated, and has no other
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QtGui.QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                      Qt.KeyboardModifier.NoModifier)
    win.view.dragEnterEvent(enter)
    assert enter.isAccepted()
    before = {n.node_id for n in win.scene.dream_nodes()}
    event = QtGui.QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier)
    win.view.dropEvent(event)
    (new,) = [n for n in win.scene.dream_nodes() if n.node_id not in before]
    assert new.spec.type_name == type_name
    if name is not None:
        assert new.rename(name) is None
    return new


def socket_pos(win, sock) -> QtCore.QPoint:
    p = win.view.mapFromScene(sock.grSocket.scenePos())
    assert win.view.viewport().rect().contains(p), "the socket must be on screen to be dragged"
    return p


def drag(qtbot, win, a, b) -> None:
    """Press on socket a, move, release on socket b: what a user does to wire them."""
    vp = win.view.viewport()
    p, q = socket_pos(win, a), socket_pos(win, b)
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=p)
    qtbot.mouseMove(vp, pos=(p + q) / 2)
    qtbot.mouseMove(vp, pos=q)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=q)


def out(node, name=None):
    return next(s for s in node.outputs if name is None or s.port.name == name)


def inp(node, name):
    return next(s for s in node.inputs if s.port.name == name)


def edges(win) -> set[tuple[str, str, str]]:
    r = win.scene.to_recipe()
    return {(nid, iname, str(ref)) for nid, n in r.nodes.items() for iname, ref in n.input_refs()}


def text(win) -> str:
    return dump_recipe(win.scene.to_recipe())


def run(qtbot, win, timeout=120_000):
    with qtbot.waitSignal(win.run_finished, timeout=timeout) as blocker:
        assert win.run()
    return blocker.args[0]


def build(qtbot, win):
    """gradient -> slow -> save, and a lone noise node, made by drops and drags."""
    grad = drop(win, "image.gradient", 40, 40, "gradient")
    slow = drop(win, "edtest.slow", 380, 40, "slow")
    save = drop(win, "image.save", 720, 40, "save")
    noise = drop(win, "image.noise", 40, 420, "noise")
    drag(qtbot, win, out(grad), inp(slow, "image"))
    drag(qtbot, win, inp(save, "image"), out(slow))  # either end first
    assert edges(win) == {("slow", "image", "gradient"), ("save", "image", "slow")}
    # parameters, set through the widgets
    grad.content.editors["width"].spin.setValue(64)
    grad.content.editors["height"].spin.setValue(48)
    grad.content.editors["start"].set_color("#204080")
    noise.content.editors["width"].spin.setValue(32)
    noise.content.editors["height"].spin.setValue(32)
    save.content.editors["path"].edit.setText("slow.png")
    save.content.editors["path"].edit.editingFinished.emit()
    assert grad.params == {"width": 64, "height": 48, "start": "#204080"}
    assert save.params == {"path": "slow.png"}
    return grad, slow, save, noise


# -- tests -----------------------------------------------------------------------------
def test_palette_is_the_registry_by_family_and_searchable(win):
    assert set(win.palette.items) == set(load_all())
    shown = win.palette.filter("gradient")
    assert shown[0] == "image.gradient"
    assert win.palette.items["render.deepdream"].isHidden()
    win.palette.filter("")
    assert not win.palette.items["render.deepdream"].isHidden()


def test_type_to_add(qtbot, win):
    added = []
    win.palette.chosen.connect(added.append)
    win.view.setFocus()
    qtbot.keyClick(win.view, "j")  # a letter on the canvas starts a search...
    qtbot.keyClicks(win.palette.search, "it")  # ...and the search field has the keyboard
    assert win.palette.search.text() == "jit"
    qtbot.keyClick(win.palette.search, Qt.Key.Key_Return)
    assert added == ["transform.jitter"]
    assert [n.spec.type_name for n in win.scene.dream_nodes()] == ["transform.jitter"]


def test_build_run_live_preview_responsive_and_incremental(qtbot, win):
    grad, slow, save, noise = build(qtbot, win)

    previews_during_run = []
    win.worker.event.connect(lambda e: previews_during_run.append(e.node)
                             if isinstance(e, PreviewReady) and win.running else None)
    gaps = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        if win.running:
            gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    progress_seen = []
    win.worker.event.connect(lambda e: progress_seen.append(slow.status_text()) if slow.state == "running" else None)
    done = run(qtbot, win)
    timer.stop()

    result = done.result
    assert set(result.ran) == {"gradient", "slow", "save", "noise"}
    assert (win.output_folder() / "slow.png").exists()
    # the preview updated while the graph ran, in the dock and on the node
    assert previews_during_run.count("slow") >= STEPS // 2
    assert win.preview.updates >= STEPS // 2
    assert slow.image is not None and not slow.content.picture.isHidden()
    assert any(s.startswith("running ") and "/20" in s for s in progress_seen)
    assert {n.node_id: n.state for n in win.scene.dream_nodes()} == {
        "gradient": "done", "slow": "done", "save": "done", "noise": "done"}
    # the UI thread kept ticking: never blocked for long
    assert len(gaps) > 20
    max_gap = max(gaps)
    print(f"\nmax UI gap during the run: {max_gap * 1000:.0f} ms over {len(gaps)} ticks")
    assert max_gap < 0.2, f"the UI thread was blocked for {max_gap * 1000:.0f} ms"

    # a parameter of the lone noise node changes: only it (and the writer, whose embedded
    # recipe changed) run again; the slow branch comes from the Runner's cache. The writer
    # replaces slow.png, so the runs below are told to overwrite (else they refuse: test_outputs.py)
    win.act_overwrite.setChecked(True)
    noise.content.editors["amount"].spin.setValue(0.3)
    assert noise.params["amount"] == 0.3
    assert noise.state == "stale" and slow.state == "done"
    done = run(qtbot, win)
    writers = {"save"}
    assert set(done.result.ran) - writers == {"noise"}
    assert {"gradient", "slow"} <= set(done.result.cached)
    assert slow.state == "cached" and grad.state == "cached" and noise.state == "done"

    # a change upstream re-runs its descendants only
    grad.content.editors["angle"].spin.setValue(10.0)
    assert {n.node_id for n in win.scene.dream_nodes() if n.state == "stale"} == {"gradient", "slow", "save"}
    done = run(qtbot, win)
    assert set(done.result.ran) == {"gradient", "slow", "save"}
    assert done.result.cached == ["noise"]


def test_stop_cancels_the_run(qtbot, win):
    grad = drop(win, "image.gradient", 40, 40, "gradient")
    slow = drop(win, "edtest.slow", 380, 40, "slow")
    drag(qtbot, win, out(grad), inp(slow, "image"))
    slow.content.editors["steps"].spin.setValue(200)
    with qtbot.waitSignal(win.run_failed, timeout=60_000) as blocker:
        win.run()
        qtbot.waitUntil(lambda: slow.state == "running" and slow.progress is not None, timeout=30_000)
        win.stop()
    assert blocker.args[0] is None  # cancelled, not failed
    assert slow.state == "stopped" and not win.running
    assert any("stopped" in m for m in win.log.messages("warn"))


def test_mismatched_and_cyclic_edges_are_refused_with_a_reason(qtbot, win):
    grad = drop(win, "image.gradient", 40, 40, "gradient")
    mix = drop(win, "edtest.mix", 380, 40, "mix")
    slow = drop(win, "edtest.slow", 720, 40, "slow")
    layer = drop(win, "model.layer", 380, 330, "layer")
    drag(qtbot, win, out(grad), inp(mix, "a"))
    drag(qtbot, win, out(mix), inp(slow, "image"))
    assert len(edges(win)) == 2

    drag(qtbot, win, out(grad), inp(layer, "model"))  # an Image into a Model input
    assert len(edges(win)) == 2
    assert "takes Model, but 'gradient.image' gives Image" in win.status.text()
    assert win.view.mode == 1 and win.view.dragging.drag_edge is None  # the drag ended

    drag(qtbot, win, out(slow), inp(mix, "b"))  # mix -> slow -> mix
    assert len(edges(win)) == 2
    assert "would make a cycle (mix -> slow -> mix)" in win.status.text()
    refusals = win.log.messages("warn")
    assert len(refusals) == 2 and all(m.startswith("edge refused") for m in refusals)

    drag(qtbot, win, out(grad), inp(grad.scene.node("mix"), "b"))  # fine: two inputs from one output
    assert ("mix", "b", "gradient") in edges(win)


def test_validation_errors_show_on_the_node_and_in_the_log(qtbot, win):
    slow = drop(win, "edtest.slow", 380, 40, "slow")
    save = drop(win, "image.save", 720, 40, "save")
    drag(qtbot, win, out(slow), inp(save, "image"))
    assert not win.run()  # nothing runs: slow's input is not connected
    assert not win.running
    assert any("'image'" in p and "not connected" in p for p in slow.problems)
    assert not slow.content.message.isHidden()
    assert any(m.startswith("slow: ") for m in win.log.messages("error"))
    assert save.problems == []


def test_a_failing_node_shows_its_error(qtbot, win):
    grad = drop(win, "image.gradient", 40, 40, "gradient")
    save = drop(win, "image.save", 380, 40, "save")
    drag(qtbot, win, out(grad), inp(save, "image"))
    save.content.editors["path"].edit.setText("picture.bmp")  # valid for the spec, refused when it runs
    save.content.editors["path"].edit.editingFinished.emit()
    with qtbot.waitSignal(win.run_failed, timeout=60_000) as blocker:
        assert win.run()
    assert getattr(blocker.args[0], "node", None) == "save"
    assert save.state == "failed" and grad.state == "done"
    assert any(".png, .jpg or .webp" in p for p in save.problems)
    assert any(m.startswith("save: ") for m in win.log.messages("error"))
    assert not (win.output_folder() / "picture.bmp").exists()


def test_save_then_open_gives_the_same_recipe(qtbot, win, tmp_path):
    build(qtbot, win)
    win.scene.meta.name = "round trip"
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert win.save_as(str(a))
    assert not win.scene.isModified()
    assert win.open_path(str(a))
    assert win.save_as(str(b))
    assert a.read_bytes() == b.read_bytes()
    recipe = load_recipe(a)
    validate(recipe, load_all())  # the saved recipe runs headless unchanged
    assert set(recipe.editor) == {"positions"} and set(recipe.editor["positions"]) == set(recipe.nodes)
    assert recipe.nodes["gradient"].params == {"width": 64, "height": 48, "start": "#204080"}
    # recent files remember both
    assert win.recent_files()[:2] == [str(b.resolve()), str(a.resolve())]


def test_opening_a_recipe_keeps_what_the_editor_does_not_show(win, tmp_path):
    src = tmp_path / "r.yaml"
    src.write_text(dump_recipe(parse_recipe("""
dreamnodes: 1
name: odd
seed: 3
nodes:
  g: {type: image.gradient, params: {angle: 30.0}}
  s: {type: edtest.slow, inputs: {image: g}, params: {steps: 2}}
  x: {type: somepack.thing, inputs: {src: s}, params: {k: 1}}
  o: {type: image.save, inputs: {image: x.result}}
  m: {type: edtest.mix, inputs: {a: g, b: nowhere}}
editor: {zoom: 2}
""")))
    assert win.open_path(str(src))
    assert win.scene.node("x").spec.fn is None  # a stand-in for the missing pack
    again = tmp_path / "again.yaml"
    win.save_as(str(again))
    r1, r2 = load_recipe(src), load_recipe(again)
    assert {k: (n.type, n.params, n.inputs) for k, n in r1.nodes.items()} == \
        {k: (n.type, n.params, n.inputs) for k, n in r2.nodes.items()}
    assert r2.editor["zoom"] == 2 and r2.name == "odd" and r2.seed == 3
    assert any("unknown node type 'somepack.thing'" in m for m in win.log.messages("warn"))


def test_open_a_png_made_by_dreamnodes(qtbot, win, tmp_path):
    recipe = parse_recipe("""
dreamnodes: 1
name: from a picture
nodes:
  g: {type: image.gradient, params: {width: 32, height: 16}}
  save: {type: image.save, inputs: {image: g}, params: {path: g.png}}
""")
    Runner(out_dir=tmp_path / "made").run(recipe)
    png = tmp_path / "made" / "g.png"
    assert win.open_path(str(png))
    assert edges(win) == {("save", "image", "g")}
    assert win.scene.node("g").params == {"width": 32, "height": 16}
    assert win.filename is None  # Save asks for a YAML name instead of overwriting the picture
    assert "from a picture" in win.windowTitle()


def test_undo_redo_restore_the_graph(qtbot, win):
    states = [text(win)]
    grad = drop(win, "image.gradient", 40, 40)
    states.append(text(win))
    slow = drop(win, "edtest.slow", 380, 40)
    states.append(text(win))
    drag(qtbot, win, out(grad), inp(slow, "image"))
    states.append(text(win))
    slow.content.editors["fade"].spin.setValue(0.5)
    slow.content.editors["fade"].spin.setValue(0.25)  # one burst of changes: one undo step
    states.append(text(win))
    first_id = slow.node_id
    assert slow.rename("slower") is None
    states.append(text(win))
    grad.grNode.setSelected(True)
    win.delete()
    states.append(text(win))
    assert win.scene.node(grad.node_id) is None and edges(win) == set()

    for expected in reversed(states[:-1]):
        win.undo()
        assert text(win) == expected
    assert not win.scene.history.canUndo()
    for expected in states[1:]:
        win.redo()
        assert text(win) == expected
    # widgets follow: after undoing the fade change, the widget shows the old value
    for _ in range(3):
        win.undo()
    assert win.scene.node(first_id).content.editors["fade"].value() == 0.9


def test_copy_paste_gives_new_ids(qtbot, win):
    grad, slow, save, noise = build(qtbot, win)
    for n in win.scene.dream_nodes():
        n.grNode.setSelected(n in (grad, slow))
    assert win.copy()
    win.paste()
    ids = sorted(n.node_id for n in win.scene.dream_nodes())
    assert ids == sorted(["gradient", "slow", "save", "noise", "gradient_2", "slow_2"])
    assert win.scene.node("gradient_2").params == grad.params
    assert ("slow_2", "image", "gradient_2") in edges(win)
    validate(win.scene.to_recipe(), load_all())


def test_delete_while_typing_in_a_node_widget_keeps_the_node(qtbot, win):
    grad = drop(win, "image.gradient", 40, 40, "gradient")
    spin = grad.content.editors["width"].spin
    at = grad.grNode.grContent.mapToScene(QPointF(spin.mapTo(grad.content, spin.rect().center())))
    qtbot.mouseClick(win.view.viewport(), Qt.MouseButton.LeftButton, pos=win.view.mapFromScene(at))
    assert win._editing() is spin
    grad.grNode.setSelected(True)
    win.act_delete.trigger()  # the key goes to the spin box
    assert win.scene.node("gradient") is grad
    qtbot.mouseClick(win.view.viewport(), Qt.MouseButton.LeftButton, pos=QtCore.QPoint(900, 600))  # the canvas
    grad.grNode.setSelected(True)
    win.act_delete.trigger()
    assert win.scene.dream_nodes() == []


def test_unsaved_changes_prompt(win, tmp_path):
    asked = []
    win.ask_unsaved = lambda: asked.append(1) or "cancel"
    drop(win, "image.solid", 40, 40)
    assert win.scene.isModified() and win.windowTitle().split(" \u2014 ")[1].endswith("*")
    assert not win.new_recipe()  # cancelled: the node stays
    assert asked and len(win.scene.dream_nodes()) == 1
    win.ask_unsaved = lambda: "save"
    path = tmp_path / "saved.yaml"
    win.filename = str(path)
    assert win.new_recipe()
    assert path.exists() and win.scene.dream_nodes() == []


@pytest.mark.parametrize("spec_src, value, shown", [
    ("Optional[Annotated[int, Range(8, 100)]] = None", None, "auto"),
    ("Annotated[float, Range(0, 1)] = 0.25", 0.25, None),
    ("Literal['a', 'b'] = 'b'", "b", None),
    ("Color = '#112233'", "#112233", None),
    ("list[int] = [1, 2]", [1, 2], None),
    ("bool = True", True, None),
])
def test_widgets_show_and_return_spec_values(qtbot, spec_src, value, shown):
    import typing

    from dreamnodes import Color
    from dreamnodes.spec import build_spec

    ns = {"Optional": typing.Optional, "Annotated": typing.Annotated, "Literal": typing.Literal, "Range": Range,
          "Color": Color, "Image": Image}
    exec(f"def f(v: {spec_src}) -> Image:\n    'doc'\n", ns)
    (param,) = build_spec(ns["f"], "x.y").params
    ed = make_editor(param)
    qtbot.addWidget(ed)
    ed.set_value(param.default)
    assert ed.value() == value
    if shown:
        assert ed.spin.text() == shown
    assert param.check(ed.value())[1] is None


def test_path_picker_makes_paths_relative_to_the_recipe(qtbot, tmp_path):
    from dreamnodes.spec import Param

    ed = make_editor(Param("source", "path", "x.png"), base_folder=lambda: tmp_path)
    qtbot.addWidget(ed)
    got = []
    ed.changed.connect(got.append)
    ed.choose_file(str(tmp_path / "pics" / "cat.png"))
    assert got == ["pics/cat.png"]


def test_cli_has_edit_without_importing_qt():
    code = ("import sys; from dreamnodes.runtime.cli import build_parser; "
            "a = build_parser().parse_args(['edit', 'x.yaml']); "
            "print(a.command, a.file, any(m.startswith(('PySide6', 'qtpy', 'nodeeditor')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["edit", "x.yaml", "False"]
