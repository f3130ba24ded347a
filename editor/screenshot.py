"""Make docs/editor.png: the editor with the default DeepDream graph and its result.

    python -m dreamnodes.editor.screenshot [OUT.png] [--recipe RECIPE.yaml] [--size N]

Opens the recipe (examples/deepdream.yaml), runs it through the editor's
worker exactly as the Run button does, selects the dream node so the
preview and the inspector show it, and saves a picture of the window.
Works under a real X server (`make screenshot` uses Xvfb when installed)
or with QT_QPA_PLATFORM=offscreen. Files the run writes go to a temporary
folder.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / "docs" / "editor.png"))
    ap.add_argument("--recipe", default=str(ROOT / "examples" / "deepdream.yaml"))
    ap.add_argument("--size", type=int, default=None, help="override the photo size (faster runs)")
    ap.add_argument("--width", type=int, default=1720)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args(argv)

    from .app import application
    from .qt import QSettings, QtCore
    from .window import MainWindow

    app = application()
    with tempfile.TemporaryDirectory() as tmp:
        # a cache of its own, so every node really runs and shows its time
        os.environ["DREAMNODES_CACHE_DIR"] = str(Path(tmp) / "cache")
        settings = QSettings(str(Path(tmp) / "editor.ini"), QSettings.Format.IniFormat)
        win = MainWindow(settings=settings)
        win.out_dir = Path(tmp) / "out"
        win.resize(args.width, args.height)
        win.show()
        if not win.open_path(args.recipe, ask=False):
            return 1
        if args.size:
            photo = next((n for n in win.scene.dream_nodes() if n.spec.type_name == "image.load"), None)
            if photo is not None:
                photo.content.editors["size"].set_value(args.size)
                photo.set_param("size", args.size)
        outcome: list = []
        win.run_finished.connect(outcome.append)
        win.run_failed.connect(outcome.append)
        t0 = time.perf_counter()
        if not win.run():
            print("the recipe did not start:", *win.log.messages("error"), sep="\n  ", file=sys.stderr)
            return 1
        while not outcome and time.perf_counter() - t0 < args.timeout:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.01)
        if not outcome or not hasattr(outcome[0], "result"):
            print("the run did not finish:", *win.log.messages(), sep="\n  ", file=sys.stderr)
            win.shutdown()
            return 1
        dream = next((n for n in win.scene.dream_nodes() if n.spec.type_name.startswith("render.")), None)
        if dream is not None:
            win.select_node(dream.node_id)
        win.scene.has_been_modified = False
        win.update_title()
        win.fit_view()
        for _ in range(20):  # let layouts and repaints settle
            app.processEvents()
            time.sleep(0.02)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        ok = win.grab().save(str(out))
        print(f"{out}: {'saved' if ok else 'NOT saved'} after a {time.perf_counter() - t0:.1f} s run")
        win.shutdown()
        win.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
