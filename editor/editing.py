"""The Edit menu: undo, redo, cut, copy, paste, delete and select all.

Each command goes to the text field or spin box that has the keyboard when
there is one (typing Delete in a number field must not delete the node), and
to the graph otherwise: undo and redo step the scene's history, copy and
paste move nodes (with the wires between them) through the system clipboard
as JSON. Nothing here opens or saves files or runs the graph.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .qt import Qt, QtCore, QtGui, QtWidgets

if TYPE_CHECKING:
    from .window import MainWindow

NODES_MIME = "application/x-dreamnodes-nodes"
TEXT_FIELDS = (QtWidgets.QLineEdit, QtWidgets.QAbstractSpinBox, QtWidgets.QPlainTextEdit, QtWidgets.QTextEdit,
               QtWidgets.QComboBox)


class EditCommands:
    """The Edit menu's commands for one window's scene."""

    def __init__(self, window: MainWindow):
        self.window = window
        self.scene = window.scene

    def focused_field(self):
        """The text field or spin box that has the keyboard, if any."""
        w = QtWidgets.QApplication.focusWidget()
        if isinstance(w, TEXT_FIELDS):
            return w
        item = self.scene.grScene.focusItem()
        if isinstance(item, QtWidgets.QGraphicsProxyWidget) and item.widget() is not None:
            inner = item.widget().focusWidget()
            if isinstance(inner, TEXT_FIELDS):
                return inner
        return None

    @staticmethod
    def _send_key(widget, key, mods=Qt.KeyboardModifier.NoModifier):
        for kind in (QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.KeyRelease):
            QtWidgets.QApplication.sendEvent(widget, QtGui.QKeyEvent(kind, key, mods))

    # -- history ------------------------------------------------------------------------
    def undo(self):
        self._step("undo")

    def redo(self):
        self._step("redo")

    def _step(self, which: str):
        """Undo or redo (`which`) in the line edit being typed in if it can, else in the graph."""
        w = self.focused_field()
        if isinstance(w, QtWidgets.QLineEdit) and (w.isUndoAvailable() if which == "undo" else w.isRedoAvailable()):
            getattr(w, which)()
            return
        getattr(self.scene.history, which)()
        for n in self.scene.dream_nodes():  # the widgets show the restored parameters
            n.content.refresh()
        self.scene.changed()
        self.window.on_selection()

    # -- selection ----------------------------------------------------------------------
    def delete(self):
        w = self.focused_field()
        if w is not None:
            self._send_key(w, Qt.Key.Key_Delete)
            return
        if self.scene.getSelectedItems():
            self.window.view.deleteSelected()
            self.scene.changed()

    def select_all(self):
        w = self.focused_field()
        if w is not None and hasattr(w, "selectAll"):
            w.selectAll()
            return
        for n in self.scene.dream_nodes():
            n.grNode.setSelected(True)

    # -- the clipboard ------------------------------------------------------------------
    def copy(self, cut: bool = False) -> bool:
        """Copy (or cut) the selected nodes; False when a text field took it or nothing was chosen."""
        w = self.focused_field()
        if w is not None:
            if hasattr(w, "cut") and cut:
                w.cut()
            elif hasattr(w, "copy"):
                w.copy()
            return False
        chosen = set(self.window.selected_nodes())
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
        w = self.focused_field()
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
