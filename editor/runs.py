"""Running the window's recipe: check, run, stop, and the run's events drawn on the nodes.

`RunController` owns the window's one `Runner` (its cache makes re-runs
incremental) and the `RunWorker` in its own thread. It validates the
recipe first and puts every problem on its node and in the log, starts the
run in the worker, turns the runtime's events into node states, progress,
live previews and log lines, and ends in the window's `run_finished` or
`run_failed` signal. The runtime itself is in `worker.py`; this module does
not build widgets, open files or edit the graph.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dreamnodes import events as ev
from dreamnodes.errors import RecipeError
from dreamnodes.graphs.validate import validate
from dreamnodes.runtime.executor import Runner
from dreamnodes.types import Model

from .qt import QObject, QThread, Signal
from .worker import PreviewReady, RunDone, RunWorker, describe_error

if TYPE_CHECKING:
    from .window import MainWindow


class RunController(QObject):
    """Check, run and stop the window's recipe; show what the worker reports."""

    start_run = Signal(object, str)  # to the worker: the recipe and the output folder
    warm_up = Signal()

    def __init__(self, window: MainWindow, runner: Runner | None = None):
        super().__init__(window)
        self.window = window
        self.scene = window.scene
        self.running = False
        self.ready = False
        self.last_done: RunDone | None = None
        self.layers: dict[str, list[str]] = {}
        self._t0 = 0.0
        self._total = 0
        self._finished_nodes = 0
        # one Runner for the life of the window: its cache makes re-runs incremental
        self.runner = runner if runner is not None else Runner()
        self.worker_thread = QThread(window)
        self.worker = RunWorker(self.runner)
        self.worker.moveToThread(self.worker_thread)
        self.start_run.connect(self.worker.run)
        self.worker.event.connect(self.on_event)
        self.worker.finished.connect(self.on_finished)
        self.worker.failed.connect(self.on_failed)
        self.worker.cancelled.connect(self.on_cancelled)
        self.worker.ready.connect(self._ready)
        self.warm_up.connect(self.worker.warm_up)

    def start(self):
        """Start the worker thread and its warm-up."""
        self.worker_thread.start()
        self.warm_up.emit()

    def shutdown(self):
        """Stop a run and the worker thread."""
        self.runner.cancel()
        self.worker_thread.quit()
        self.worker_thread.wait(10000)

    def _ready(self):
        self.ready = True
        if not self.running:
            self.window.status.setText("ready")

    # -- check, run, stop ---------------------------------------------------------------
    def _show_problems(self, exc: BaseException) -> str:
        items, summary = describe_error(exc)
        by_node: dict[str, list[str]] = {}
        for node, msg in items:
            self.window.log.add("error", msg if node is None else f"{node}: {msg}", node)
            if node is not None:
                by_node.setdefault(node, []).append(msg)
        for n in self.scene.dream_nodes():
            n.set_problems(by_node.get(n.node_id, []))
        self.window.status.setText(summary)
        return summary

    def check(self) -> bool:
        """Validate the recipe; show every problem on its node and in the log."""
        try:
            from dreamnodes.runtime.cache import default_cache_dir

            # the model checks' facts are kept in the catalogue: computed once, not on every edit
            validate(self.scene.to_recipe(), self.window.registry, facts_folder=default_cache_dir() / "catalog")
        except RecipeError as exc:
            self._show_problems(exc)
            return False
        for n in self.scene.dream_nodes():
            n.set_problems([])
        self.window.status.setText("the recipe is valid")
        return True

    def run(self) -> bool:
        """Start a run in the worker thread (False if the recipe is invalid or a run is going)."""
        if self.running:
            return False
        win = self.window
        recipe = self.scene.to_recipe()
        if not recipe.nodes:
            win.status.setText("nothing to run: add nodes from the palette")
            return False
        if not self.check():
            win.log.add("error", "nothing ran: fix the problems above")
            return False
        for n in self.scene.dream_nodes():
            n.set_state("")
        self._set_running(True)
        self._t0 = time.perf_counter()
        self._total = 0
        self._finished_nodes = 0
        win.progress.setRange(0, 1)
        win.progress.setValue(0)
        out = win.output_folder()
        self.runner.overwrite = win.act_overwrite.isChecked()  # set before the run starts, read by the worker
        win.status.setText("running\u2026")
        win.log.add("info", f"run started (output folder {out})")
        self.start_run.emit(recipe, str(out))
        return True

    def stop(self):
        if self.running:
            self.runner.cancel()
            self.window.status.setText("stopping\u2026")

    def _set_running(self, running: bool):
        self.running = running
        self.window.act_run.setEnabled(not running)
        self.window.act_stop.setEnabled(running)

    # -- what the worker reports --------------------------------------------------------
    def on_event(self, e):
        win = self.window
        node = self.scene.node(e.node)
        if isinstance(e, PreviewReady):
            if node is not None:
                node.set_picture(e.image)
            win.preview.show_image(e.node, e.image, "final" if e.final else "live")
            return
        if node is None:
            return
        if isinstance(e, ev.NodeQueued):
            node.set_state("queued")
            self._total += 1
            win.progress.setRange(0, self._total)
        elif isinstance(e, ev.NodeStarted):
            node.set_state("running")
            win.status.setText(f"running {e.node} ({e.type_name})")
        elif isinstance(e, ev.Progress):
            node.set_state("running", (e.step, e.total, e.label))
        elif isinstance(e, ev.NodeFinished):
            node.set_state("cached" if e.cached else "done", seconds=None if e.cached else e.seconds)
            self._finished_nodes += 1
            win.progress.setValue(self._finished_nodes)
        elif isinstance(e, ev.NodeFailed):
            node.set_state("failed")
        elif isinstance(e, ev.Drew):
            win.log.add("info", f"{e.node}: {e.what}", e.node)

    def on_finished(self, done: RunDone):
        win = self.window
        self._set_running(False)
        self.last_done = done
        result = done.result
        last = None
        for nid, image in done.pictures.items():
            node = self.scene.node(nid)
            if node is not None:
                node.set_picture(image)
                last = nid
        self.layers.update(done.layers)
        self._offer_layers()
        sel = win.selected_nodes()
        show = sel[0].node_id if len(sel) == 1 and sel[0].node_id in done.pictures else last
        if show is not None:
            win.preview.show_image(show, done.pictures[show], "result")
        secs = time.perf_counter() - self._t0
        win.progress.setValue(win.progress.maximum())
        msg = f"ran {len(result.ran)} node(s), {len(result.cached)} from cache, in {secs:.1f} s"
        win.log.add("ok", msg)
        for p in done.written:
            win.log.add("ok", f"wrote {p}")
        win.status.setText(msg)
        win.run_finished.emit(done)

    def _stopped(self):
        """The run ended without a result: nodes that were queued or running say so."""
        self._set_running(False)
        for n in self.scene.dream_nodes():
            if n.state in ("queued", "running"):
                n.set_state("stopped" if n.state == "running" else "")

    def on_failed(self, exc):
        self._stopped()
        summary = self._show_problems(exc)
        self.window.log.add("error", f"the run failed: {summary}; nothing was written")
        self.window.run_failed.emit(exc)

    def on_cancelled(self):
        self._stopped()
        self.window.status.setText("stopped; nothing was written")
        self.window.log.add("warn", "run stopped; nothing was written")
        self.window.run_failed.emit(None)

    def _offer_layers(self):
        """Offer the layer paths of connected models in text fields that take a layer path."""
        for n in self.scene.dream_nodes():
            for sock in n.inputs:
                if sock.port is None or not issubclass(sock.port.type, Model):
                    continue
                for e in sock.edges:
                    other = e.getOtherSocket(sock)
                    paths = self.layers.get(getattr(other.node, "node_id", None)) if other else None
                    if paths:
                        for p in n.spec.params:
                            if p.kind == "str" and p.name in ("path", "layer", "layers"):
                                n.content.set_suggestions(p.name, paths)
