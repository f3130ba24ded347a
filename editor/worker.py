"""Running recipes off the UI thread.

`RunWorker` lives in its own `QThread` and owns the one `Runner` of the
window, so its in-memory cache survives between runs: a re-run after a
parameter change recomputes only that node and what depends on it. The
runtime's events arrive in the worker thread; they are turned into Qt
signals, which Qt queues to the UI thread. Pictures are converted to
`QImage` here, in the worker, so the UI thread only paints. Stop calls
`Runner.cancel()`, which is safe from any thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamnodes import events as ev
from dreamnodes.errors import Cancelled, DreamError, RecipeError
from dreamnodes.graphs.recipe import Recipe
from dreamnodes.runtime.executor import Runner, RunResult
from dreamnodes.runtime.outputs import OutputsExist
from dreamnodes.types import Image, Model

from .qt import QObject, QtGui, Signal, Slot


def to_qimage(image: Image, index: int = 0) -> QtGui.QImage:
    """One picture of an Image ([N, 3, H, W] in [0, 1]) as a QImage that owns its pixels."""
    arr = np.ascontiguousarray(image.to_uint8(index))  # H x W x 3 uint8
    h, w, _ = arr.shape
    return QtGui.QImage(arr.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888).copy()


@dataclass(frozen=True)
class PreviewReady:
    """A node's picture, ready to paint: `final` for a result, else a live preview."""

    node: str
    image: QtGui.QImage
    final: bool = False


@dataclass
class RunDone:
    result: RunResult
    pictures: dict[str, QtGui.QImage]
    layers: dict[str, list[str]]  # model node -> its layer paths, for the layer pickers
    written: list[Path]


class RunWorker(QObject):
    """Runs recipes with one long-lived Runner; reports through signals."""

    event = Signal(object)        # a dreamnodes event (Preview replaced by PreviewReady)
    finished = Signal(object)     # RunDone
    failed = Signal(object)       # the exception (RecipeError, NodeError, ...)
    cancelled = Signal()
    ready = Signal()              # the warm-up is over


    def __init__(self, runner: Runner):
        super().__init__()
        self.runner = runner
        self.runner.listeners.append(self._forward)

    def _forward(self, e: ev.Event) -> None:  # called in the worker thread
        if isinstance(e, ev.Preview):
            if isinstance(e.image, Image):
                self.event.emit(PreviewReady(e.node, to_qimage(e.image)))
            return
        self.event.emit(e)

    @Slot()
    def warm_up(self) -> None:
        """Import what the first run would otherwise import.

        Importing torchvision (the runtime records its version in every run) takes
        seconds on a slow machine and holds the GIL in long stretches, which would
        freeze the window for a moment in the middle of the first run. Done right
        after the window opens, the stutter comes while nothing is going on; a run
        asked for meanwhile waits in this thread's queue.
        """
        try:
            import torchvision  # noqa: F401
        except ImportError:
            pass
        self.ready.emit()

    @Slot(object, str)
    def run(self, recipe: Recipe, out_dir: str) -> None:
        self.runner.out_dir = Path(out_dir)
        try:
            result = self.runner.run(recipe)
        except Cancelled:
            self.cancelled.emit()
            return
        except Exception as exc:  # RecipeError, NodeError, or a bug: report it, keep the editor alive
            self.failed.emit(exc)
            return
        pictures: dict[str, QtGui.QImage] = {}
        layers: dict[str, list[str]] = {}
        for nid, outs in result.outputs.items():
            for value in outs.values():
                if isinstance(value, Image) and nid not in pictures:
                    pictures[nid] = to_qimage(value)
                elif isinstance(value, Model):
                    layers[nid] = value.layer_paths()
        self.finished.emit(RunDone(result, pictures, layers, list(result.written)))


def describe_error(exc: BaseException) -> tuple[list[tuple[str | None, str]], str]:
    """[(node id or None, message)] and a one-line summary of a failed run."""
    if isinstance(exc, RecipeError):
        items = []
        for p in exc.problems:
            where = f"{p.field}: " if p.field else ""
            items.append((p.node, where + p.message))
        n = len(exc.problems)
        return items, f"{n} problem{'s' if n != 1 else ''} in the recipe; nothing ran"
    if isinstance(exc, OutputsExist):
        files = ", ".join(str(f) for f in exc.files[:5]) + (" ..." if len(exc.files) > 5 else "")
        return [(exc.example[0] if exc.example else None,
                 f"{files}: already there from an earlier run; tick Run > Overwrite Existing Files to replace, "
                 "or put {n} (the next free number) in the output path")], "the output files are already there"
    node = getattr(exc, "node", None)
    msg = getattr(exc, "detail", None) or str(exc)
    if not isinstance(exc, DreamError):
        msg = f"{type(exc).__name__}: {exc}"
    return [(node, msg)], (f"node '{node}' failed" if node else "the run failed")

