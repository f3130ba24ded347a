"""The editor window: the canvas in the middle, the panels, menus and status bar around it.

The window is a view of one recipe. It opens and saves the same YAML the
command line runs (layout under `editor:` only), opens PNGs made by
dreamnodes (their recipe is embedded), and runs the graph in a worker thread
through `dreamnodes.runtime.Runner`, drawing the runtime's events on the
nodes as they arrive. It holds no second list of node types, widgets or
rules: those come from the registry, the specs and `graphs.validate`.

`MainWindow` only puts the pieces together and keeps what is between them
(selection, adding nodes, the title). The pieces: `canvas.py` (the view),
`panels.py` (log, inspector, docks, status bar), `menus.py` (actions, menus,
toolbar), `theme.py` (colours), `document.py` (the file: open, save, unsaved
changes), `editing.py` (undo, copy, paste, delete) and `runs.py` (check,
run, stop and the run's events).
"""
from __future__ import annotations

import os

from dreamnodes.registry import load_all
from dreamnodes.runtime.executor import Runner

from .canvas import Canvas, DreamView
from .document import APP, Document
from .editing import EditCommands
from .graph import DreamNode, DreamScene
from .menus import add_actions, add_menus
from .palette import MIME, Palette
from .panels import Inspector, LogPanel, add_docks, add_status_bar
from .qt import QSettings, QtWidgets, Signal
from .runs import RunController
from .theme import DARK_CSS
from .viewer import PreviewPanel


class Forward:
    """A window attribute that is the attribute `name` of one of its pieces: `win.save` is
    `win.document.save`, `win.running` is `win.runs.running`. Setting it sets the piece's
    attribute (tests give `win.ask_unsaved` an answer this way; `win.out_dir` is set so)."""

    def __init__(self, piece: str, name: str):
        self.piece, self.name = piece, name

    def __get__(self, win, owner=None):
        return self if win is None else getattr(getattr(win, self.piece), self.name)

    def __set__(self, win, value):
        setattr(getattr(win, self.piece), self.name, value)


class MainWindow(QtWidgets.QMainWindow):
    """The editor. `open_path`, `save_as`, `run` and friends are the same code the menus call."""

    run_finished = Signal(object)  # RunDone
    run_failed = Signal(object)    # the exception, or None when cancelled

    def __init__(self, settings: QSettings | None = None, runner: Runner | None = None):
        super().__init__()
        self.settings = settings if settings is not None else QSettings("dreamnodes", "editor")
        self.registry = load_all()
        self.canvas = Canvas(self)
        self.scene: DreamScene = self.canvas.scene
        self.view: DreamView = self.canvas.view
        self.setCentralWidget(self.canvas)
        self.setStyleSheet(DARK_CSS)
        self._add_panels()
        self.document = Document(self)
        self.editing = EditCommands(self)
        self.runs = RunController(self, runner)
        add_actions(self)
        add_menus(self)
        self.document.recent_menu = self.recent_menu
        self.document.fill_recent()
        self._listen()
        self.runs.start()
        geom = self.settings.value("geometry")
        if geom is not None:
            self.restoreGeometry(geom)
        else:
            self.resize(1500, 900)
        self.new_recipe(ask=False)

    def _add_panels(self):
        self.palette = Palette()
        self.palette.chosen.connect(self.add_at_center)
        self.inspector = Inspector(self)
        self.preview = PreviewPanel()
        self.log = LogPanel()
        self.log.node_clicked.connect(self.select_node)
        self.docks = add_docks(self, self.palette, self.preview, self.inspector, self.log)
        self.status, self.progress = add_status_bar(self)

    def _listen(self):
        """Follow the scene: changes retitle the window, selections fill the inspector."""
        self.scene.on_refused.append(self.refused)
        self.scene.on_changed.append(self.update_title)
        self.scene.on_param.append(self._param_changed)
        self.scene.addHasBeenModifiedListener(self.update_title)
        self.scene.history.addHistoryModifiedListener(self._history_changed)
        self.scene.addItemSelectedListener(self.on_selection)
        self.scene.addItemsDeselectedListener(self.on_selection)
        self.view.addDragEnterListener(self.on_drag_enter)
        self.view.addDropListener(self.on_drop)
        self.view.type_to_add = self._type_to_add

    # -- the pieces' state, under the window's names -----------------------------------
    filename = Forward("document", "filename")  # the YAML file the recipe is saved in (None until it is)
    out_dir = Forward("document", "out_dir")  # where runs write when chosen, else output_folder() decides
    running = Forward("runs", "running")
    ready = Forward("runs", "ready")  # the worker has warmed up
    runner = Forward("runs", "runner")
    worker = Forward("runs", "worker")
    last_done = Forward("runs", "last_done")

    # -- titles, selection --------------------------------------------------------
    def update_title(self):
        name = self.scene.meta.name or "untitled"
        where = os.path.basename(self.filename) if self.filename else "not saved"
        star = "*" if self.scene.isModified() else ""
        self.setWindowTitle(f"{name} \u2014 {where}{star} \u2014 {APP}")
        self.act_undo.setEnabled(self.scene.history.canUndo())
        self.act_redo.setEnabled(self.scene.history.canRedo())

    def _history_changed(self):
        self.update_title()
        self.on_selection()

    def selected_nodes(self) -> list[DreamNode]:
        return [n for n in self.scene.getSelectedNodes() if isinstance(n, DreamNode)] \
            if hasattr(self.scene, "getSelectedNodes") else \
            [i.node for i in self.scene.grScene.selectedItems() if isinstance(getattr(i, "node", None), DreamNode)]

    def on_selection(self):
        nodes = self.selected_nodes()
        if len(nodes) == 1:
            node = nodes[0]
            self.inspector.show_node(node)
            if node.image is not None and not self.running:
                self.preview.show_image(node.node_id, node.image)
        else:
            self.inspector.show_recipe()

    def _select_only(self, node: DreamNode):
        for n in self.scene.dream_nodes():
            n.grNode.setSelected(n is node)

    def select_node(self, node_id: str):
        node = self.scene.node(node_id)
        if node is None:
            return
        self._select_only(node)
        self.view.centerOn(node.grNode)
        self.on_selection()

    def fit_view(self):
        self.view.fit(self.scene.dream_nodes())

    def refused(self, reason: str):
        self.status.setText(f"edge refused: {reason}")
        self.log.add("warn", f"edge refused: {reason}")

    def _param_changed(self, node: DreamNode, name: str):
        if node.problems:
            node.set_problems([])

    # -- adding nodes -------------------------------------------------------------
    def on_drag_enter(self, event):
        if event.mimeData().hasFormat(MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def on_drop(self, event):
        """A palette drop: add the dragged node type where it was dropped."""
        data = event.mimeData()
        if not data.hasFormat(MIME):
            event.ignore()
            return
        type_name = bytes(data.data(MIME)).decode()
        pos = event.position().toPoint() if hasattr(event, "position") else event.pos()
        sp = self.view.mapToScene(pos)
        self.add_node(type_name, sp.x(), sp.y())
        event.acceptProposedAction()

    def _type_to_add(self, text: str):
        self.palette.search.setFocus()
        self.palette.search.setText(text)

    def add_node(self, type_name: str, x: float, y: float) -> DreamNode:
        node = self.scene.add_node(type_name, x, y)
        self._select_only(node)
        self.log.add("info", f"added {node.node_id} ({type_name})", node.node_id)
        self.on_selection()
        return node

    def add_at_center(self, type_name: str) -> DreamNode:
        c = self.view.mapToScene(self.view.viewport().rect().center())
        node = self.add_node(type_name, c.x() - 120, c.y() - 60)
        self.view.setFocus()
        return node

    # -- the commands, as the menus, tests and scripts call them -----------------------
    ask_unsaved = Forward("document", "ask_unsaved")  # 'save', 'discard' or 'cancel' (tests replace this)
    maybe_save = Forward("document", "maybe_save")
    new_recipe = Forward("document", "new_recipe")
    open_dialog = Forward("document", "open_dialog")
    open_path = Forward("document", "open_path")
    save = Forward("document", "save")
    save_as = Forward("document", "save_as")
    recent_files = Forward("document", "recent_files")
    output_folder = Forward("document", "output_folder")
    choose_output_folder = Forward("document", "choose_output_folder")
    _editing = Forward("editing", "focused_field")
    undo = Forward("editing", "undo")
    redo = Forward("editing", "redo")
    cut = Forward("editing", "cut")
    copy = Forward("editing", "copy")
    paste = Forward("editing", "paste")
    delete = Forward("editing", "delete")
    select_all = Forward("editing", "select_all")
    check = Forward("runs", "check")
    run = Forward("runs", "run")
    stop = Forward("runs", "stop")
    shutdown = Forward("runs", "shutdown")  # stop a run and the worker thread (also done on close)

    # -- closing ------------------------------------------------------------------
    def closeEvent(self, event):
        if not self.maybe_save():
            event.ignore()
            return
        self.settings.setValue("geometry", self.saveGeometry())
        self.shutdown()
        event.accept()
