"""The canvas: nodeeditor's editor widget with the dreamnodes scene, view and edge dragging.

The view refuses edges that `graph.edge_problem` rejects (and says why),
takes the keyboard back from node widgets on a click, hands a letter typed
on the canvas to `type_to_add`, lets node types dragged from the palette
move over it and can fit the whole graph on screen. What a typed letter or
a dropped type does is the window's business (it sets `type_to_add` and the
drop listeners); how nodes look is in `nodeview.py`, what they are in
`graph.py`.
"""
from __future__ import annotations

from nodeeditor.node_edge_dragging import EdgeDragging
from nodeeditor.node_editor_widget import NodeEditorWidget
from nodeeditor.node_graphics_socket import QDMGraphicsSocket
from nodeeditor.node_graphics_view import MODE_NOOP, QDMGraphicsView

from .graph import DreamScene, edge_problem
from .palette import MIME
from .qt import Qt, QtWidgets


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

    def fit(self, nodes) -> None:
        """Show all of `nodes` (DreamNodes), never magnified beyond 100 %."""
        if not nodes:
            return
        rect = nodes[0].grNode.sceneBoundingRect()
        for n in nodes[1:]:
            rect = rect.united(n.grNode.sceneBoundingRect())
        rect.adjust(-40, -40, 40, 40)
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        if self.transform().m11() > 1.0:
            self.resetTransform()
            self.centerOn(rect.center())


class Canvas(NodeEditorWidget):
    Scene_class = DreamScene
    GraphicsView_class = DreamView
