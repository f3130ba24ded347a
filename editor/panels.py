"""The panels around the canvas: the log, the inspector, their docks and the status bar.

`LogPanel` lists the messages of the editor and the runs; `Inspector` shows
the selected node's id, type and documentation, or the recipe's name,
description, seed and output folder when nothing is selected. `add_docks`
and `add_status_bar` place these (and the palette and preview, which live in
their own modules) on the window. Panels show things and edit recipe
metadata; they do not open, save or run recipes.
"""
from __future__ import annotations

import html
import os
import time

from .graph import DreamNode
from .qt import Qt, QtGui, QtWidgets, Signal

LOG_COLORS = {"info": "#aab2bd", "ok": "#6cc26c", "warn": "#e0b050", "error": "#ff6b6b"}


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

    def __init__(self, window):
        super().__init__()
        self.window = window  # the MainWindow: its scene, log, output folder and title
        self.node: DreamNode | None = None
        self._loading = False
        self.stack = QtWidgets.QStackedLayout(self)
        self.stack.addWidget(self._recipe_page())
        self.stack.addWidget(self._node_page())

    def _recipe_page(self) -> QtWidgets.QWidget:
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
        return page

    def _node_page(self) -> QtWidgets.QWidget:
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
        return page

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


def add_docks(window: QtWidgets.QMainWindow, palette, preview, inspector, log) -> dict[str, QtWidgets.QDockWidget]:
    """Dock the palette (left), preview and inspector (right) and log (bottom); the docks by key."""
    docks = {}
    for key, title, widget, area in (("palette", "Nodes", palette, Qt.DockWidgetArea.LeftDockWidgetArea),
                                     ("preview", "Preview", preview, Qt.DockWidgetArea.RightDockWidgetArea),
                                     ("inspector", "Inspector", inspector, Qt.DockWidgetArea.RightDockWidgetArea),
                                     ("log", "Log", log, Qt.DockWidgetArea.BottomDockWidgetArea)):
        dock = QtWidgets.QDockWidget(title, window)
        dock.setObjectName(f"dock_{key}")
        dock.setWidget(widget)
        window.addDockWidget(area, dock)
        docks[key] = dock
    window.resizeDocks([docks["palette"]], [190], Qt.Orientation.Horizontal)
    window.resizeDocks([docks["preview"]], [380], Qt.Orientation.Horizontal)
    window.resizeDocks([docks["preview"], docks["inspector"]], [420, 220], Qt.Orientation.Vertical)
    window.resizeDocks([docks["log"]], [120], Qt.Orientation.Vertical)
    return docks


def add_status_bar(window: QtWidgets.QMainWindow) -> tuple[QtWidgets.QLabel, QtWidgets.QProgressBar]:
    """The status line and the run's progress bar, placed in the window's status bar."""
    status = QtWidgets.QLabel("loading the runtime\u2026")
    progress = QtWidgets.QProgressBar()
    progress.setFixedWidth(220)
    progress.setRange(0, 1)
    progress.setValue(0)
    window.statusBar().addWidget(status, 1)
    window.statusBar().addPermanentWidget(progress)
    return status, progress
