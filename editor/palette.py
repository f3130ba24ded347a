"""The palette: every node type of the registry, by family, searchable.

Drag a type onto the canvas, double-click it, or type a few letters and
press Enter to add the best match. The list is the node registry itself
(built-in families and installed packs); the tooltips are the nodes' docs.
"""
from __future__ import annotations

from dreamnodes.registry import families

from .nodeview import socket_color
from .qt import QtCore, Qt, QtGui, QtWidgets, Signal

MIME = "application/x-dreamnodes-type"


def type_mime(type_name: str) -> QtCore.QMimeData:
    data = QtCore.QMimeData()
    data.setData(MIME, type_name.encode())
    data.setText(type_name)
    return data


class _Tree(QtWidgets.QTreeWidget):
    def mimeTypes(self):
        return [MIME]

    def mimeData(self, items):
        names = [i.data(0, Qt.ItemDataRole.UserRole) for i in items if i.data(0, Qt.ItemDataRole.UserRole)]
        return type_mime(names[0]) if names else None


def _dot(color: str) -> QtGui.QIcon:
    pix = QtGui.QPixmap(12, 12)
    pix.fill(Qt.GlobalColor.transparent)
    p = QtGui.QPainter(pix)
    p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    p.setBrush(QtGui.QColor(color))
    p.setPen(QtGui.QPen(QtGui.QColor("#101214"), 1))
    p.drawEllipse(1, 1, 10, 10)
    p.end()
    return QtGui.QIcon(pix)


class Palette(QtWidgets.QWidget):
    """Search field over a tree of families and node types."""

    chosen = Signal(str)  # a type to add at the centre of the canvas

    def __init__(self, parent=None):
        super().__init__(parent)
        box = QtWidgets.QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.setSpacing(4)
        self.search = QtWidgets.QLineEdit()
        self.search.setPlaceholderText("search nodes (Tab)\u2026")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.filter)
        self.search.returnPressed.connect(self._add_first)
        box.addWidget(self.search)
        self.tree = _Tree()
        self.tree.setHeaderHidden(True)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QtWidgets.QAbstractItemView.DragDropMode.DragOnly)
        self.tree.setIndentation(12)
        self.tree.itemActivated.connect(self._activated)
        box.addWidget(self.tree, 1)
        self.items: dict[str, QtWidgets.QTreeWidgetItem] = {}
        self.populate()

    def populate(self) -> None:
        self.tree.clear()
        self.items.clear()
        for family, specs in families().items():
            top = QtWidgets.QTreeWidgetItem([family])
            top.setFlags(Qt.ItemFlag.ItemIsEnabled)
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            self.tree.addTopLevelItem(top)
            for spec in specs:
                item = QtWidgets.QTreeWidgetItem([spec.type_name.split(".", 1)[1]])
                item.setData(0, Qt.ItemDataRole.UserRole, spec.type_name)
                item.setToolTip(0, f"{spec.type_name}\n\n{spec.doc}")
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled)
                ports = spec.outputs or spec.inputs
                if ports:
                    item.setIcon(0, _dot(socket_color(ports[0].type.socket_name())))
                top.addChild(item)
                self.items[spec.type_name] = item
            top.setExpanded(True)

    def filter(self, text: str) -> list[str]:
        """Show the types whose name or summary contains every word of `text`."""
        words = text.lower().split()
        shown = []
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            any_shown = False
            for k in range(top.childCount()):
                item = top.child(k)
                name = item.data(0, Qt.ItemDataRole.UserRole)
                hay = (name + " " + item.toolTip(0).split("\n\n", 1)[-1].split("\n")[0]).lower()
                ok = all(w in hay for w in words)
                item.setHidden(not ok)
                if ok:
                    shown.append(name)
                    any_shown = True
            top.setHidden(not any_shown)
        # best first: names matching at the start of the operation or family
        first = words[0] if words else ""
        shown.sort(key=lambda n: (not n.split(".", 1)[1].startswith(first), not n.startswith(first), n))
        if shown:
            self.tree.setCurrentItem(self.items[shown[0]])
        return shown

    def _add_first(self):
        shown = self.filter(self.search.text())
        cur = self.tree.currentItem()
        name = cur.data(0, Qt.ItemDataRole.UserRole) if cur is not None and not cur.isHidden() else None
        name = name or (shown[0] if shown else None)
        if name:
            self.chosen.emit(name)

    def _activated(self, item, _col):
        name = item.data(0, Qt.ItemDataRole.UserRole)
        if name:
            self.chosen.emit(name)

    def focus_search(self):
        self.search.setFocus()
        self.search.selectAll()
