"""The editor window: canvas, palette, inspector, preview, log, menus.

The window is a view of one recipe. It opens and saves the same YAML the
command line runs (layout under `editor:` only), opens PNGs made by
dreamnodes (their recipe is embedded), and runs the graph in a worker thread
through `dreamnodes.runtime.Runner`, drawing the runtime's events on the
nodes as they arrive. It holds no second list of node types, widgets or
rules: those come from the registry, the specs and `graphs.validate`.
"""
from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

from nodeeditor.node_edge_dragging import EdgeDragging
from nodeeditor.node_editor_widget import NodeEditorWidget
from nodeeditor.node_graphics_socket import QDMGraphicsSocket
from nodeeditor.node_graphics_view import MODE_NOOP, QDMGraphicsView

from dreamnodes import events as ev
from dreamnodes.errors import DreamError, RecipeError
from dreamnodes.graphs.recipe import Recipe, dump_recipe
from dreamnodes.graphs.validate import validate
from dreamnodes.registry import load_all
from dreamnodes.runtime.executor import Runner
from dreamnodes.types import Model

from .graph import DreamNode, DreamScene, edge_problem
from .palette import MIME, Palette
from .qt import QSettings, Qt, QThread, QtCore, QtGui, QtWidgets, Signal
from .viewer import PreviewPanel
from .worker import PreviewReady, RunDone, RunWorker, describe_error

APP = "dreamnodes editor"
RECIPE_FILTER = "Recipes (*.yaml *.yml);;Pictures made by dreamnodes (*.png);;All files (*)"
OPEN_FILTER = "Recipes and pictures (*.yaml *.yml *.png);;All files (*)"
NODES_MIME = "application/x-dreamnodes-nodes"
MAX_RECENT = 8
LOG_COLORS = {"info": "#aab2bd", "ok": "#6cc26c", "warn": "#e0b050", "error": "#ff6b6b"}


# -- the canvas -------------------------------------------------------------------
class DreamEdgeDragging(EdgeDragging):
    """Edge dragging that says why an edge is refused, and drops the dragged edge."""

    def edgeDragEnd(self, item):
        start = self.drag_start_socket
        if isinstance(item, QDMGraphicsSocket) and start is not None and item.socket is not start:
            problem = edge_problem(start, item.socket)
            if problem:
                self.cancel()
                self.grView.grScene.scene.refused(problem)
                return True
        return super().edgeDragEnd(item)

    def cancel(self):
        self.grView.mode = MODE_NOOP
        if self.drag_edge is not None:
            self.drag_edge.remove(silent=True)
            self.drag_edge = None
        self.drag_start_socket = None


class DreamView(QDMGraphicsView):
    def __init__(self, grScene, parent=None):
        super().__init__(grScene, parent)
        self.dragging = DreamEdgeDragging(self)
        self.type_to_add = None  # set by the window: starts a palette search

    def mousePressEvent(self, event):
        # a click on the canvas (not in a widget) takes the keyboard back from node widgets,
        # so Delete, Ctrl+C and friends act on the graph again
        item = self.itemAt(event.pos())
        if not isinstance(item, QtWidgets.QGraphicsProxyWidget):
            focus = self.grScene.focusItem()
            if focus is not None:
                focus.clearFocus()
        super().mousePressEvent(event)

    def keyPressEvent(self, event):
        # type to add: a letter typed on the canvas starts a search in the palette
        text = event.text()
        if text and text.isalpha() and not (event.modifiers() & ~Qt.KeyboardModifier.ShiftModifier) \
                and self.grScene.focusItem() is None and self.type_to_add is not None:
            self.type_to_add(text)
            return
        super().keyPressEvent(event)

    def dragMoveEvent(self, event):
        if event.mimeData().hasFormat(MIME):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)


class Canvas(NodeEditorWidget):
    Scene_class = DreamScene
    GraphicsView_class = DreamView


# -- panels -----------------------------------------------------------------------
class LogPanel(QtWidgets.QListWidget):
    """Messages of the editor and the runs; a click on one naming a node selects it."""

    node_clicked = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.itemClicked.connect(self._clicked)

    def add(self, level: str, text: str, node: str | None = None) -> None:
        stamp = time.strftime("%H:%M:%S")
        item = QtWidgets.QListWidgetItem(f"{stamp}  {text}")
        item.setForeground(QtGui.QColor(LOG_COLORS.get(level, LOG_COLORS["info"])))
        item.setData(Qt.ItemDataRole.UserRole, node)
        item.setData(Qt.ItemDataRole.UserRole + 1, level)
        self.addItem(item)
        while self.count() > 2000:
            self.takeItem(0)
        self.scrollToBottom()

    def messages(self, level: str | None = None) -> list[str]:
        return [self.item(i).text().split("  ", 1)[1] for i in range(self.count())
                if level is None or self.item(i).data(Qt.ItemDataRole.UserRole + 1) == level]

    def _clicked(self, item):
        node = item.data(Qt.ItemDataRole.UserRole)
        if node:
            self.node_clicked.emit(node)


class Inspector(QtWidgets.QWidget):
    """The selected node (id, type, docs), or the recipe itself when nothing is selected."""

    def __init__(self, window: "MainWindow"):
        super().__init__()
        self.window = window
        self.node: DreamNode | None = None
        self.stack = QtWidgets.QStackedLayout(self)
        # recipe page
        page = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(page)
        self.name = QtWidgets.QLineEdit()
        self.name.setPlaceholderText("untitled")
        self.name.editingFinished.connect(self._meta_changed)
        self.desc = QtWidgets.QPlainTextEdit()
        self.desc.setFixedHeight(70)
        self.desc.textChanged.connect(self._meta_changed)
        seed_row = QtWidgets.QHBoxLayout()
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.valueChanged.connect(self._meta_changed)
        roll = QtWidgets.QToolButton()
        roll.setText("\u21bb")
        roll.setToolTip("re-roll the recipe's seed")
        roll.clicked.connect(lambda: self.seed.setValue(int.from_bytes(os.urandom(4), "big") % (2**31 - 1)))
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(roll)
        self.out = QtWidgets.QLabel()
        self.out.setWordWrap(True)
        self.out.setStyleSheet("color: #9aa3ad;")
        form.addRow("name", self.name)
        form.addRow("description", self.desc)
        form.addRow("seed", seed_row)
        form.addRow("output", self.out)
        self.stack.addWidget(page)
        # node page
        page = QtWidgets.QWidget()
        box = QtWidgets.QVBoxLayout(page)
        form = QtWidgets.QFormLayout()
        self.node_id = QtWidgets.QLineEdit()
        self.node_id.editingFinished.connect(self._rename)
        self.node_type = QtWidgets.QLabel()
        form.addRow("id", self.node_id)
        form.addRow("type", self.node_type)
        box.addLayout(form)
        self.doc = QtWidgets.QTextBrowser()
        self.doc.setOpenExternalLinks(False)
        box.addWidget(self.doc, 1)
        self.stack.addWidget(page)
        self._loading = False

    def show_recipe(self):
        self.node = None
        meta = self.window.scene.meta
        self._loading = True
        self.name.setText(meta.name)
        if self.desc.toPlainText() != meta.description:
            self.desc.setPlainText(meta.description)
        self.seed.setValue(meta.seed)
        self.out.setText(str(self.window.output_folder()))
        self._loading = False
        self.stack.setCurrentIndex(0)

    def show_node(self, node: DreamNode):
        self.node = node
        spec = node.spec
        self.node_id.setText(node.node_id)
        self.node_type.setText(spec.type_name)
        e = html.escape
        rows = [(i.name, i.describe(), i.doc) for i in spec.inputs]
        rows += [(p.name, p.describe() + ("" if p.required else f" = {p.default!r}"), p.doc) for p in spec.params]
        rows += [(o.name, f"output: {o.type.socket_name()}", "") for o in spec.outputs]
        table = "".join(f"<tr><td><b>{e(a)}</b></td><td>{e(b)}</td><td>{e(c)}</td></tr>" for a, b, c in rows)
        problems = "".join(f"<p style='color:#ff6b6b'>{e(p)}</p>" for p in node.problems)
        doc = e(spec.doc).replace("\n\n", "<br><br>")
        self.doc.setHtml(f"<p>{doc}</p>{problems}<table cellspacing=4>{table}</table>")
        self.stack.setCurrentIndex(1)

    def _meta_changed(self, *_):
        if self._loading:
            return
        meta = self.window.scene.meta
        new = (self.name.text(), self.desc.toPlainText(), self.seed.value())
        if new != (meta.name, meta.description, meta.seed):
            seed_changed = new[2] != meta.seed
            meta.name, meta.description, meta.seed = new
            self.window.scene.has_been_modified = True
            if seed_changed:
                for n in self.window.scene.dream_nodes():
                    if n.spec.random:
                        self.window.scene.mark_stale(n)
            self.window.update_title()

    def _rename(self):
        if self.node is None:
            return
        problem = self.node.rename(self.node_id.text().strip())
        if problem:
            self.window.log.add("warn", problem, self.node.node_id)
            self.node_id.setText(self.node.node_id)


# -- the window -------------------------------------------------------------------
DARK_CSS = """
QMainWindow, QDockWidget, QWidget { background: #1e2126; color: #d8dce2; }
QDockWidget::title { background: #262a30; padding: 4px 6px; color: #c3c9d0; }
QTreeWidget, QListWidget, QTextBrowser, QPlainTextEdit, QLineEdit, QSpinBox {
    background: #16181c; border: 1px solid #30353c; color: #d8dce2; }
QTreeWidget::item:selected, QListWidget::item:selected { background: #2f4a6a; }
QToolBar { background: #23272d; border-bottom: 1px solid #121417; spacing: 4px; }
QToolButton { color: #d8dce2; padding: 3px 8px; }
QToolButton:hover { background: #343a42; }
QMenuBar { background: #23272d; } QMenuBar::item:selected, QMenu::item:selected { background: #2f4a6a; }
QMenu { background: #23272d; border: 1px solid #121417; }
QStatusBar { background: #23272d; color: #aab2bd; }
QProgressBar { background: #16181c; border: 1px solid #30353c; border-radius: 3px; text-align: center;
    color: #d8dce2; max-height: 14px; }
QProgressBar::chunk { background: #3d7cc0; }
"""


def _icon(kind: str) -> QtGui.QIcon:
    """Run (a green triangle) and Stop (a red square), drawn rather than shipped."""
    pix = QtGui.QPixmap(32, 32)
    pix.fill(Qt.GlobalColor.transparent)
    p = QtGui.QPainter(pix)
    p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    if kind == "run":
        p.setBrush(QtGui.QColor("#5cc25c"))
        p.drawPolygon(QtGui.QPolygonF([QtCore.QPointF(8, 5), QtCore.QPointF(27, 16), QtCore.QPointF(8, 27)]))
    else:
        p.setBrush(QtGui.QColor("#e05555"))
        p.drawRoundedRect(QtCore.QRectF(7, 7, 18, 18), 3, 3)
    p.end()
    return QtGui.QIcon(pix)


def apply_theme(app: QtWidgets.QApplication) -> None:
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    for role, color in ((QtGui.QPalette.ColorRole.Window, "#1e2126"), (QtGui.QPalette.ColorRole.WindowText, "#d8dce2"),
                        (QtGui.QPalette.ColorRole.Base, "#16181c"), (QtGui.QPalette.ColorRole.Text, "#d8dce2"),
                        (QtGui.QPalette.ColorRole.Button, "#2a2f36"), (QtGui.QPalette.ColorRole.ButtonText, "#d8dce2"),
                        (QtGui.QPalette.ColorRole.Highlight, "#3d6fa8"), (QtGui.QPalette.ColorRole.ToolTipBase, "#23272d"),
                        (QtGui.QPalette.ColorRole.ToolTipText, "#d8dce2"), (QtGui.QPalette.ColorRole.AlternateBase, "#23272d")):
        pal.setColor(role, QtGui.QColor(color))
    app.setPalette(pal)


class MainWindow(QtWidgets.QMainWindow):
    """The editor. `open_path`, `save_as`, `run` and friends are the same code the menus call."""

    start_run = Signal(object, str)
    warm_up = Signal()
    run_finished = Signal(object)  # RunDone
    run_failed = Signal(object)    # the exception, or None when cancelled

    def __init__(self, settings: QSettings | None = None, runner: Runner | None = None):
        super().__init__()
        self.settings = settings if settings is not None else QSettings("dreamnodes", "editor")
        self.registry = load_all()
        self.filename: str | None = None
        self.out_dir: Path | None = None
        self.running = False
        self.last_done: RunDone | None = None
        self.layers: dict[str, list[str]] = {}
        self._run_t0 = 0.0
        self._run_total = 0
        self._run_finished_nodes = 0

        self.canvas = Canvas(self)
        self.scene: DreamScene = self.canvas.scene
        self.view: DreamView = self.canvas.view
        self.setCentralWidget(self.canvas)
        self.setStyleSheet(DARK_CSS)

        self.palette = Palette()
        self.palette.chosen.connect(self.add_at_center)
        self.inspector = Inspector(self)
        self.preview = PreviewPanel()
        self.log = LogPanel()
        self.log.node_clicked.connect(self.select_node)
        self.docks = {}
        for key, title, widget, area in (("palette", "Nodes", self.palette, Qt.DockWidgetArea.LeftDockWidgetArea),
                                         ("preview", "Preview", self.preview, Qt.DockWidgetArea.RightDockWidgetArea),
                                         ("inspector", "Inspector", self.inspector,
                                          Qt.DockWidgetArea.RightDockWidgetArea),
                                         ("log", "Log", self.log, Qt.DockWidgetArea.BottomDockWidgetArea)):
            dock = QtWidgets.QDockWidget(title, self)
            dock.setObjectName(f"dock_{key}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[key] = dock
        self.resizeDocks([self.docks["palette"]], [190], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["preview"]], [380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["preview"], self.docks["inspector"]], [420, 220], Qt.Orientation.Vertical)
        self.resizeDocks([self.docks["log"]], [120], Qt.Orientation.Vertical)

        self.status = QtWidgets.QLabel("loading the runtime\u2026")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.statusBar().addWidget(self.status, 1)
        self.statusBar().addPermanentWidget(self.progress)

        self._make_actions()
        self._make_menus()

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

        # one Runner for the life of the window: its cache makes re-runs incremental
        self.runner = runner if runner is not None else Runner()
        self.thread = QThread(self)
        self.worker = RunWorker(self.runner)
        self.worker.moveToThread(self.thread)
        self.start_run.connect(self.worker.run)
        self.worker.event.connect(self.on_event)
        self.worker.finished.connect(self.on_finished)
        self.worker.failed.connect(self.on_failed)
        self.worker.cancelled.connect(self.on_cancelled)
        self.worker.ready.connect(self._ready)
        self.warm_up.connect(self.worker.warm_up)
        self.ready = False
        self.thread.start()
        self.warm_up.emit()

        geom = self.settings.value("geometry")
        if geom is not None:
            self.restoreGeometry(geom)
        else:
            self.resize(1500, 900)
        self.new_recipe(ask=False)

    # -- setup ---------------------------------------------------------------------
    def _action(self, text, slot, shortcut=None, tip=""):
        a = QtGui.QAction(text, self)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QtGui.QKeySequence(k) for k in keys])
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.triggered.connect(lambda checked=False: slot())
        self.addAction(a)
        return a

    def _make_actions(self):
        K = QtGui.QKeySequence.StandardKey
        self.act_new = self._action("&New", self.new_recipe, K.New, "start an empty recipe")
        self.act_open = self._action("&Open\u2026", self.open_dialog, K.Open, "open a recipe or a picture made by dreamnodes")
        self.act_save = self._action("&Save", self.save, K.Save, "save the recipe")
        self.act_save_as = self._action("Save &As\u2026", self.save_as, K.SaveAs, "save the recipe under a new name")
        self.act_quit = self._action("&Quit", self.close, K.Quit)
        self.act_undo = self._action("&Undo", self.undo, K.Undo)
        self.act_redo = self._action("&Redo", self.redo, [QtGui.QKeySequence(K.Redo), "Ctrl+Y"])
        self.act_cut = self._action("Cu&t", self.cut, K.Cut)
        self.act_copy = self._action("&Copy", self.copy, K.Copy)
        self.act_paste = self._action("&Paste", self.paste, K.Paste)
        self.act_delete = self._action("&Delete", self.delete, K.Delete, "delete the selected nodes and edges")
        self.act_select_all = self._action("Select &All", self.select_all, K.SelectAll)
        self.act_add = self._action("&Add Node\u2026", self.palette.focus_search, "Ctrl+K",
                                    "type to find a node type, Enter adds it (or just start typing on the canvas)")
        self.act_run = self._action("&Run", self.run, ["F5", "Ctrl+Return"], "run the graph (only what changed)")
        self.act_stop = self._action("&Stop", self.stop, ["Shift+F5", "Ctrl+."], "stop the run")
        self.act_validate = self._action("&Check Recipe", self.check, "Ctrl+Shift+K", "validate without running")
        self.act_fit = self._action("&Fit Graph", self.fit_view, "Home", "show the whole graph")
        self.act_out = self._action("&Output Folder\u2026", self.choose_output_folder, None,
                                    "where image.save and video.save write")
        self.act_stop.setEnabled(False)

    def _make_menus(self):
        mb = self.menuBar()
        f = mb.addMenu("&File")
        for a in (self.act_new, self.act_open):
            f.addAction(a)
        self.recent_menu = f.addMenu("Open &Recent")
        f.addSeparator()
        for a in (self.act_save, self.act_save_as):
            f.addAction(a)
        f.addSeparator()
        f.addAction(self.act_out)
        f.addSeparator()
        f.addAction(self.act_quit)
        e = mb.addMenu("&Edit")
        for a in (self.act_undo, self.act_redo, None, self.act_cut, self.act_copy, self.act_paste, self.act_delete,
                  None, self.act_select_all, self.act_add):
            e.addSeparator() if a is None else e.addAction(a)
        r = mb.addMenu("&Run")
        for a in (self.act_run, self.act_stop, self.act_validate):
            r.addAction(a)
        v = mb.addMenu("&View")
        v.addAction(self.act_fit)
        for dock in self.docks.values():
            v.addAction(dock.toggleViewAction())
        self.act_run.setIcon(_icon("run"))
        self.act_stop.setIcon(_icon("stop"))
        tb = self.addToolBar("main")
        tb.setObjectName("toolbar_main")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for a in (self.act_new, self.act_open, self.act_save, None, self.act_undo, self.act_redo, None,
                  self.act_run, self.act_stop, None, self.act_fit):
            tb.addSeparator() if a is None else tb.addAction(a)
        self._fill_recent()

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

    def select_node(self, node_id: str):
        node = self.scene.node(node_id)
        if node is None:
            return
        for n in self.scene.dream_nodes():
            n.grNode.setSelected(n is node)
        self.view.centerOn(node.grNode)
        self.on_selection()

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
        for n in self.scene.dream_nodes():
            n.grNode.setSelected(n is node)
        self.log.add("info", f"added {node.node_id} ({type_name})", node.node_id)
        self.on_selection()
        return node

    def add_at_center(self, type_name: str) -> DreamNode:
        c = self.view.mapToScene(self.view.viewport().rect().center())
        node = self.add_node(type_name, c.x() - 120, c.y() - 60)
        self.view.setFocus()
        return node

    # -- files --------------------------------------------------------------------
    def ask_unsaved(self) -> str:
        """'save', 'discard' or 'cancel' (tests replace this)."""
        box = QtWidgets.QMessageBox(self)
        box.setWindowTitle(APP)
        box.setText(f"The recipe '{self.scene.meta.name or 'untitled'}' has unsaved changes.")
        box.setInformativeText("Save them first?")
        box.setStandardButtons(QtWidgets.QMessageBox.StandardButton.Save | QtWidgets.QMessageBox.StandardButton.Discard
                               | QtWidgets.QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {QtWidgets.QMessageBox.StandardButton.Save: "save",
                QtWidgets.QMessageBox.StandardButton.Discard: "discard"}.get(
            QtWidgets.QMessageBox.StandardButton(answer), "cancel")

    def maybe_save(self) -> bool:
        """True when it is fine to throw the current recipe away."""
        if not self.scene.isModified():
            return True
        answer = self.ask_unsaved()
        if answer == "save":
            return self.save()
        return answer == "discard"

    def new_recipe(self, ask: bool = True) -> bool:
        if ask and not self.maybe_save():
            return False
        self.scene.load(Recipe({}))
        self.filename = None
        self.preview.caption.setText("no picture yet: run the graph (F5)")
        self.update_title()
        self.on_selection()
        return True

    def open_dialog(self):
        if not self.maybe_save():
            return
        start = str(Path(self.filename).parent) if self.filename else str(Path.cwd())
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open recipe", start, OPEN_FILTER)
        if path:
            self.open_path(path, ask=False)

    def open_path(self, path: str | None, ask: bool = True) -> bool:
        """Open a recipe (YAML), a PNG made by dreamnodes, or (None) the built-in DeepDream."""
        from dreamnodes.graphs.sources import open_recipe  # YAML, PNG or the default

        if ask and not self.maybe_save():
            return False
        try:
            recipe = open_recipe(path)
        except DreamError as exc:
            self.log.add("error", f"cannot open {path}: {exc}")
            self.status.setText(f"cannot open {path}")
            if self.isVisible():
                QtWidgets.QMessageBox.warning(self, APP, f"Cannot open {path}:\n\n{exc}")
            return False
        notes = self.scene.load(recipe)
        is_picture = path is not None and Path(path).suffix.lower() == ".png"
        # a picture is not where its recipe is saved: Save asks for a name
        self.filename = None if (path is None or is_picture) else str(Path(path).resolve())
        if path is not None and not is_picture:
            self._remember(self.filename)
        what = "the built-in DeepDream recipe" if path is None else \
            (f"the recipe inside {path}" if is_picture else path)
        self.log.add("ok", f"opened {what} ({len(recipe.nodes)} nodes)")
        for p in recipe.problems:
            self.log.add("warn", str(p), p.node)
        for note in notes:
            self.log.add("warn", note)
        for n in self.scene.dream_nodes():
            n.set_state("")
        self.update_title()
        self.on_selection()
        QtCore.QTimer.singleShot(0, self.fit_view)
        return True

    def save(self) -> bool:
        if not self.filename:
            return self.save_as()
        return self._write(self.filename)

    def save_as(self, path: str | None = None) -> bool:
        if not path:
            start = self.filename or str(Path.cwd() / f"{(self.scene.meta.name or 'recipe').replace(' ', '_')}.yaml")
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save recipe", start, RECIPE_FILTER)
            if not path:
                return False
            if not Path(path).suffix:
                path += ".yaml"
        if Path(path).suffix.lower() == ".png":
            self.log.add("error", "recipes are saved as YAML; pictures get their recipe when a run saves them")
            return False
        path = str(Path(path).resolve())
        self.scene.meta.file = path
        if not self._write(path):
            return False
        self.filename = path
        self._remember(path)
        self.update_title()
        return True

    def _write(self, path: str) -> bool:
        text = dump_recipe(self.scene.to_recipe())
        tmp = Path(path).with_name(f".{Path(path).name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.log.add("error", f"cannot save {path}: {exc}")
            return False
        self.scene.has_been_modified = False
        self.log.add("ok", f"saved {path}")
        self.update_title()
        return True

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember(self, path: str):
        files = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", files[:MAX_RECENT])
        self._fill_recent()

    def _fill_recent(self):
        self.recent_menu.clear()
        files = self.recent_files()
        for i, path in enumerate(files):
            a = self.recent_menu.addAction(f"&{i + 1}  {path}")
            a.triggered.connect(lambda checked=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(files))

    def output_folder(self) -> Path:
        if self.out_dir is not None:
            return self.out_dir
        folder = self.scene.meta.folder
        return (folder if folder is not None else Path.cwd()) / "out"

    def choose_output_folder(self):
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Output folder", str(self.output_folder()))
        if path:
            self.out_dir = Path(path)
            self.inspector.show_recipe()

    # -- editing ------------------------------------------------------------------
    def _editing(self):
        """The text field or spin box that has the keyboard, if any."""
        kinds = (QtWidgets.QLineEdit, QtWidgets.QAbstractSpinBox, QtWidgets.QPlainTextEdit, QtWidgets.QTextEdit,
                 QtWidgets.QComboBox)
        w = QtWidgets.QApplication.focusWidget()
        if isinstance(w, kinds):
            return w
        item = self.scene.grScene.focusItem()
        if isinstance(item, QtWidgets.QGraphicsProxyWidget) and item.widget() is not None:
            inner = item.widget().focusWidget()
            if isinstance(inner, kinds):
                return inner
        return None

    def _send_key(self, widget, key, mods=Qt.KeyboardModifier.NoModifier):
        for kind in (QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.KeyRelease):
            QtWidgets.QApplication.sendEvent(widget, QtGui.QKeyEvent(kind, key, mods))

    def undo(self):
        w = self._editing()
        if isinstance(w, QtWidgets.QLineEdit) and w.isUndoAvailable():
            w.undo()
            return
        self.scene.history.undo()
        self._after_restore()

    def redo(self):
        w = self._editing()
        if isinstance(w, QtWidgets.QLineEdit) and w.isRedoAvailable():
            w.redo()
            return
        self.scene.history.redo()
        self._after_restore()

    def _after_restore(self):
        for n in self.scene.dream_nodes():
            n.content.refresh()
        self.scene.changed()
        self.on_selection()

    def delete(self):
        w = self._editing()
        if w is not None:
            self._send_key(w, Qt.Key.Key_Delete)
            return
        if self.scene.getSelectedItems():
            self.view.deleteSelected()
            self.scene.changed()

    def select_all(self):
        w = self._editing()
        if w is not None and hasattr(w, "selectAll"):
            w.selectAll()
            return
        for n in self.scene.dream_nodes():
            n.grNode.setSelected(True)

    def copy(self, cut: bool = False) -> bool:
        w = self._editing()
        if w is not None:
            if hasattr(w, "cut") and cut:
                w.cut()
            elif hasattr(w, "copy"):
                w.copy()
            return False
        chosen = set(self.selected_nodes())
        for e in self.scene.edges:  # wires between copied nodes go with them
            if e.start_socket is not None and e.end_socket is not None \
                    and e.start_socket.node in chosen and e.end_socket.node in chosen:
                e.grEdge.setSelected(True)
        data = self.scene.clipboard.serializeSelected(delete=cut)
        if not data.get("nodes"):
            return False
        mime = QtCore.QMimeData()
        blob = json.dumps(data, default=str)
        mime.setData(NODES_MIME, blob.encode())
        mime.setText(blob)
        QtWidgets.QApplication.clipboard().setMimeData(mime)
        if cut:
            self.scene.changed()
        return True

    def cut(self):
        self.copy(cut=True)

    def paste(self):
        w = self._editing()
        if w is not None:
            if hasattr(w, "paste"):
                w.paste()
            return
        mime = QtWidgets.QApplication.clipboard().mimeData()
        raw = bytes(mime.data(NODES_MIME)).decode() if mime.hasFormat(NODES_MIME) else mime.text()
        try:
            data = json.loads(raw)
        except (ValueError, TypeError):
            return
        if not isinstance(data, dict) or "nodes" not in data:
            return
        self.scene.clipboard.deserializeFromClipboard(data)
        self.scene.changed()

    def _param_changed(self, node: DreamNode, name: str):
        if node.problems:
            node.set_problems([])

    def refused(self, reason: str):
        self.status.setText(f"edge refused: {reason}")
        self.log.add("warn", f"edge refused: {reason}")

    def fit_view(self):
        nodes = self.scene.dream_nodes()
        if not nodes:
            return
        rect = nodes[0].grNode.sceneBoundingRect()
        for n in nodes[1:]:
            rect = rect.united(n.grNode.sceneBoundingRect())
        rect.adjust(-40, -40, 40, 40)
        self.view.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        if self.view.transform().m11() > 1.0:
            self.view.resetTransform()
            self.view.centerOn(rect.center())

    # -- running ------------------------------------------------------------------
    def _show_problems(self, exc: BaseException) -> str:
        items, summary = describe_error(exc)
        by_node: dict[str, list[str]] = {}
        for node, msg in items:
            self.log.add("error", msg if node is None else f"{node}: {msg}", node)
            if node is not None:
                by_node.setdefault(node, []).append(msg)
        for n in self.scene.dream_nodes():
            n.set_problems(by_node.get(n.node_id, []))
        self.status.setText(summary)
        return summary

    def check(self) -> bool:
        """Validate the recipe; show every problem on its node and in the log."""
        try:
            validate(self.scene.to_recipe(), self.registry)
        except RecipeError as exc:
            self._show_problems(exc)
            return False
        for n in self.scene.dream_nodes():
            n.set_problems([])
        self.status.setText("the recipe is valid")
        return True

    def run(self) -> bool:
        """Start a run in the worker thread (False if the recipe is invalid or a run is going)."""
        if self.running:
            return False
        recipe = self.scene.to_recipe()
        if not recipe.nodes:
            self.status.setText("nothing to run: add nodes from the palette")
            return False
        if not self.check():
            self.log.add("error", "nothing ran: fix the problems above")
            return False
        for n in self.scene.dream_nodes():
            n.set_state("")
        self.running = True
        self.act_run.setEnabled(False)
        self.act_stop.setEnabled(True)
        self._run_t0 = time.perf_counter()
        self._run_total = 0
        self._run_finished_nodes = 0
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        out = self.output_folder()
        self.status.setText("running\u2026")
        self.log.add("info", f"run started (output folder {out})")
        self.start_run.emit(recipe, str(out))
        return True

    def _ready(self):
        self.ready = True
        if not self.running:
            self.status.setText("ready")

    def stop(self):
        if self.running:
            self.runner.cancel()
            self.status.setText("stopping\u2026")

    def on_event(self, e):
        node = self.scene.node(e.node)
        if isinstance(e, PreviewReady):
            if node is not None:
                node.set_picture(e.image)
            self.preview.show_image(e.node, e.image, "final" if e.final else "live")
            return
        if node is None:
            return
        if isinstance(e, ev.NodeQueued):
            node.set_state("queued")
            self._run_total += 1
            self.progress.setRange(0, self._run_total)
        elif isinstance(e, ev.NodeStarted):
            node.set_state("running")
            self.status.setText(f"running {e.node} ({e.type_name})")
        elif isinstance(e, ev.Progress):
            node.set_state("running", (e.step, e.total, e.label))
        elif isinstance(e, ev.NodeFinished):
            node.set_state("cached" if e.cached else "done", seconds=None if e.cached else e.seconds)
            self._run_finished_nodes += 1
            self.progress.setValue(self._run_finished_nodes)
        elif isinstance(e, ev.NodeFailed):
            node.set_state("failed")
        elif isinstance(e, ev.Drew):
            self.log.add("info", f"{e.node}: {e.what}", e.node)

    def _run_ended(self):
        self.running = False
        self.act_run.setEnabled(True)
        self.act_stop.setEnabled(False)

    def on_finished(self, done: RunDone):
        self._run_ended()
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
        sel = self.selected_nodes()
        show = sel[0].node_id if len(sel) == 1 and sel[0].node_id in done.pictures else last
        if show is not None:
            self.preview.show_image(show, done.pictures[show], "result")
        secs = time.perf_counter() - self._run_t0
        self.progress.setValue(self.progress.maximum())
        msg = f"ran {len(result.ran)} node(s), {len(result.cached)} from cache, in {secs:.1f} s"
        self.log.add("ok", msg)
        for p in done.written:
            self.log.add("ok", f"wrote {p}")
        self.status.setText(msg)
        self.run_finished.emit(done)

    def on_failed(self, exc):
        self._run_ended()
        for n in self.scene.dream_nodes():
            if n.state in ("queued", "running"):
                n.set_state("stopped" if n.state == "running" else "")
        summary = self._show_problems(exc)
        self.log.add("error", f"the run failed: {summary}; nothing was written")
        self.run_failed.emit(exc)

    def on_cancelled(self):
        self._run_ended()
        for n in self.scene.dream_nodes():
            if n.state in ("queued", "running"):
                n.set_state("stopped" if n.state == "running" else "")
        self.status.setText("stopped; nothing was written")
        self.log.add("warn", "run stopped; nothing was written")
        self.run_failed.emit(None)

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

    # -- closing ------------------------------------------------------------------
    def shutdown(self):
        """Stop a run and the worker thread (also done on close)."""
        self.runner.cancel()
        self.thread.quit()
        self.thread.wait(10000)

    def closeEvent(self, event):
        if not self.maybe_save():
            event.ignore()
            return
        self.settings.setValue("geometry", self.saveGeometry())
        self.shutdown()
        event.accept()
