"""How a node, its sockets and its edges look on the canvas.

A node is drawn as a dark card: a title with its id and type, a status strip
(queued, running with step progress, cached, done, failed), one row per
socket with the socket's name, the parameter widgets from `widgets.py`, the
latest picture it made and, when something is wrong, the problem in red.
Sockets and edges take the colour of their socket type (`Socket.color` in
`dreamnodes.types`), so what fits where can be seen at a glance.

Only looks live here; what a node *is* (its spec, id, parameters) is in
`graph.py`.
"""
from __future__ import annotations

from functools import partial
from html import escape

from nodeeditor.node_content_widget import QDMNodeContentWidget
from nodeeditor.node_graphics_edge import QDMGraphicsEdge
from nodeeditor.node_graphics_node import QDMGraphicsNode
from nodeeditor.node_graphics_socket import QDMGraphicsSocket

from dreamnodes import files
from dreamnodes.types import SOCKET_TYPES, Socket

from .qt import QRectF, Qt, QtGui, QtWidgets
from .widgets import TextEditor, make_editor, shown_value

NODE_W = 270
TITLE_H = 26
STATUS_H = 16
PAD = 8
ROW_H = 22
PREVIEW_MAX_H = 200

STATE_COLORS = {
    "queued": "#8a8f98",
    "running": "#4aa3ff",
    "cached": "#35b8a8",
    "done": "#5cc25c",
    "failed": "#e05555",
    "stopped": "#c89a3c",
    "stale": "#8a7a50",
}
STATE_WORDS = {"stale": "changed: will run again"}

BODY = QtGui.QColor("#262a30")
TITLE = QtGui.QColor("#1c1f24")
STRIP = QtGui.QColor("#20242a")
TEXT = "#e6e8eb"
DIM = "#9aa3ad"
ERROR = "#ff6b6b"

_COLORS = {t.socket_name(): t.color for t in SOCKET_TYPES}


def socket_color(type_name: str) -> str:
    """The colour of a socket type, by name (node packs may add types; unknown ones are grey)."""
    if type_name not in _COLORS:
        todo = list(Socket.__subclasses__())
        while todo:
            t = todo.pop()
            _COLORS.setdefault(t.socket_name(), t.color)
            todo.extend(t.__subclasses__())
    return _COLORS.get(type_name, Socket.color)


class DreamGraphicsSocket(QDMGraphicsSocket):
    """A socket filled with its socket type's colour."""

    def getSocketColor(self, key):
        return QtGui.QColor(socket_color(key) if isinstance(key, str) else Socket.color)

    def initAssets(self):
        super().initAssets()
        self.radius = 7
        self._pen = QtGui.QPen(QtGui.QColor("#101214"))
        self._pen.setWidthF(1.5)


class DreamGraphicsEdge(QDMGraphicsEdge):
    """An edge drawn in the colour of the data it carries."""

    def paint(self, painter, option, widget=None):
        edge = self.edge
        sock = edge.start_socket
        if sock is not None and sock.is_input and edge.end_socket is not None:
            sock = edge.end_socket
        if sock is not None:
            color = QtGui.QColor(socket_color(sock.socket_type))
            if self._pen.color() != color:
                self._pen = QtGui.QPen(color)
                self._pen.setWidthF(3.0)
                self._pen_dragging = QtGui.QPen(color)
                self._pen_dragging.setWidthF(2.5)
                self._pen_dragging.setStyle(Qt.PenStyle.DashLine)
        super().paint(painter, option, widget)


class DreamGraphicsNode(QDMGraphicsNode):
    """The card of a node: title, status strip, content widget, outline."""

    def initSizes(self):
        super().initSizes()
        self.width = NODE_W
        self.title_height = TITLE_H
        self.edge_padding = PAD
        self.edge_roundness = 7.0
        self.header = TITLE_H + STATUS_H
        self.height = self.content_height()

    def content_height(self) -> float:
        content = self.node.content
        lay = content.layout() if content is not None else None
        if lay is not None:
            lay.invalidate()
        h = lay.sizeHint().height() if lay is not None else 0
        return self.header + PAD + h + PAD

    def initAssets(self):
        super().initAssets()
        font = QtWidgets.QApplication.font()
        self._title_font = QtGui.QFont(font.family(), 10)
        self._status_font = QtGui.QFont(font.family(), 8)
        self._title_color = QtGui.QColor(TEXT)

    def initTitle(self):
        self.title_item = QtWidgets.QGraphicsTextItem(self)
        self.title_item.node = self.node
        self.title_item.setDefaultTextColor(self._title_color)
        self.title_item.setFont(self._title_font)
        self.title = self.node.title

    @property
    def title(self):
        return self._title

    @title.setter
    def title(self, value):
        self._title = value
        spec = getattr(self.node, "spec", None)
        kind = spec.type_name if spec is not None else ""
        self.title_item.setHtml(f"<span style='color:{TEXT}; font-weight:600'>{escape(str(value))}</span>"
                                f"&nbsp;&nbsp;<span style='color:{DIM}'>{escape(kind)}</span>")
        self.title_item.setPos(PAD, (TITLE_H - self.title_item.boundingRect().height()) / 2)
        doc = getattr(spec, "doc", "") if spec is not None else ""
        self.title_item.setToolTip(f"{kind}\n\n{doc}" if doc else kind)

    def initContent(self):
        content = self.content
        if content is not None:
            content.setGeometry(PAD, self.header + PAD, self.width - 2 * PAD, self.height - self.header - 2 * PAD)
        self.grContent = self.node.scene.grScene.addWidget(content)
        self.grContent.node = self.node
        self.grContent.setParentItem(self)

    def fit(self) -> None:
        """Resize the card to its content (after a picture or a message appeared)."""
        h = self.content_height()
        if h == self.height:
            return
        self.prepareGeometryChange()
        self.height = h
        self.content.setGeometry(PAD, self.header + PAD, self.width - 2 * PAD, self.height - self.header - 2 * PAD)
        self.node.updateConnectedEdges()
        self.update()

    def accent(self) -> QtGui.QColor:
        spec = self.node.spec
        ports = spec.outputs or spec.inputs
        return QtGui.QColor(socket_color(ports[0].type.socket_name()) if ports else Socket.color)

    def paint(self, painter, option, widget=None):
        node = self.node
        w, h, r = self.width, self.height, self.edge_roundness
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        body = QtGui.QPainterPath()
        body.addRoundedRect(QRectF(0, 0, w, h), r, r)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.fillPath(body, BODY)
        painter.save()
        painter.setClipPath(body)
        painter.fillRect(QRectF(0, 0, w, TITLE_H), TITLE)
        painter.fillRect(QRectF(0, 0, w, 3), self.accent())
        painter.fillRect(QRectF(0, TITLE_H, w, STATUS_H), STRIP)
        state = getattr(node, "state", "")
        if state:
            color = QtGui.QColor(STATE_COLORS.get(state, DIM))
            prog = getattr(node, "progress", None)
            frac = 1.0 if state in ("done", "cached") else 0.0
            if prog and prog[1]:
                frac = max(0.0, min(1.0, prog[0] / prog[1]))
            painter.fillRect(QRectF(0, TITLE_H + STATUS_H - 3, w * frac, 3), color)
            painter.setFont(self._status_font)
            painter.setPen(color)
            painter.drawText(QRectF(PAD, TITLE_H, w - 2 * PAD, STATUS_H - 2),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, node.status_text())
        painter.restore()
        problems = bool(getattr(node, "problems", None)) or state == "failed"
        if self.isSelected():
            pen = QtGui.QPen(QtGui.QColor("#ffb347"), 2.0)
        elif problems:
            pen = QtGui.QPen(QtGui.QColor(ERROR), 2.0)
        elif state == "running":
            pen = QtGui.QPen(QtGui.QColor(STATE_COLORS["running"]), 2.0)
        elif self.hovered:
            pen = QtGui.QPen(QtGui.QColor("#6a7380"), 1.5)
        else:
            pen = QtGui.QPen(QtGui.QColor("#0c0d0f"), 1.2)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(body)


_SAMPLES: list[str] | None = None


def sample_names() -> list[str]:
    global _SAMPLES
    if _SAMPLES is None:
        _SAMPLES = files.sample_names()
    return _SAMPLES


CONTENT_CSS = f"""
QWidget#nodeContent {{ background: transparent; }}
QLabel {{ color: {TEXT}; background: transparent; }}
QLabel[role="port"] {{ color: {DIM}; }}
QLabel[role="optional"] {{ color: #737b85; font-style: italic; }}
QLabel[role="param"] {{ color: #c3c9d0; }}
QLabel[role="message"] {{ color: {ERROR}; }}
QSpinBox, QDoubleSpinBox, QLineEdit, QComboBox {{
    background: #16181c; color: {TEXT}; border: 1px solid #3a4048; border-radius: 3px;
    padding: 1px 3px; selection-background-color: #3d6fa8; min-height: 18px; }}
QSpinBox:focus, QDoubleSpinBox:focus, QLineEdit:focus, QComboBox:focus {{ border-color: #4aa3ff; }}
QToolButton {{ background: #2f343b; color: {TEXT}; border: 1px solid #3a4048; border-radius: 3px;
    min-width: 18px; min-height: 18px; }}
QToolButton:hover {{ background: #3a414a; }}
QCheckBox {{ color: {TEXT}; background: transparent; }}
QSlider::groove:horizontal {{ height: 4px; background: #3a4048; border-radius: 2px; }}
QSlider::sub-page:horizontal {{ background: #4a7fb8; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: #cfd6de; width: 10px; margin: -4px 0; border-radius: 5px; }}
"""


class NodeContent(QDMNodeContentWidget):
    """The widgets inside a node: socket names, parameter editors, picture, problems."""

    def initUI(self):
        spec = self.node.spec
        self.setObjectName("nodeContent")
        self.setAttribute(Qt.WidgetAttribute.WA_TranslucentBackground)
        self.setStyleSheet(CONTENT_CSS)
        box = QtWidgets.QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(4)
        if spec.inputs or spec.outputs:
            box.addWidget(self._ports())
        self.editors = {}
        if spec.params:
            box.addLayout(self._param_form())
        self.extra = self._hidden_label(box, "port", wrap=True)
        self.picture = self._hidden_label(box)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message = self._hidden_label(box, "message", wrap=True)
        self.refresh()

    def _ports(self) -> QtWidgets.QWidget:
        """The socket names: inputs on the left, outputs on the right, one row a socket."""
        spec = self.node.spec
        ports = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(ports)
        grid.setContentsMargins(4, 0, 4, 0)
        grid.setSpacing(0)
        for r in range(max(len(spec.inputs), len(spec.outputs))):
            if r < len(spec.inputs):
                i = spec.inputs[r]
                name = i.name + (" [ ]" if i.is_list else "")
                lab = self._port_label(name, f"{i.name}: {i.describe()}" + (f"\n{i.doc}" if i.doc else ""))
                if i.optional and not i.is_list:  # may stay unconnected
                    lab.setProperty("role", "optional")
                grid.addWidget(lab, r, 0, Qt.AlignmentFlag.AlignLeft)
            if r < len(spec.outputs):
                o = spec.outputs[r]
                lab = self._port_label(o.name, f"{o.name}: {o.type.socket_name()}")
                grid.addWidget(lab, r, 1, Qt.AlignmentFlag.AlignRight)
            grid.setRowMinimumHeight(r, ROW_H)
        return ports

    def _param_form(self) -> QtWidgets.QFormLayout:
        """A labelled editor for each parameter, made from its spec (kept in `self.editors`)."""
        node = self.node
        form = QtWidgets.QFormLayout()
        form.setContentsMargins(0, 2, 0, 0)
        form.setHorizontalSpacing(6)
        form.setVerticalSpacing(3)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        scene = node.scene
        for p in node.spec.params:
            ed = make_editor(p, base_folder=lambda: scene.meta.folder, samples=sample_names())
            ed.set_value(shown_value(p, node.params))
            ed.changed.connect(partial(self._changed, p.name))
            lab = QtWidgets.QLabel(p.name.replace("_", " "))
            lab.setProperty("role", "param")
            lab.setToolTip(ed.toolTip())
            form.addRow(lab, ed)
            self.editors[p.name] = ed
        return form

    @staticmethod
    def _hidden_label(box: QtWidgets.QVBoxLayout, role: str | None = None, wrap: bool = False) -> QtWidgets.QLabel:
        """A label shown only when there is something in it (extra inputs, the picture, a problem)."""
        lab = QtWidgets.QLabel()
        if wrap:
            lab.setWordWrap(True)
        if role is not None:
            lab.setProperty("role", role)
        lab.hide()
        box.addWidget(lab)
        return lab

    def _port_label(self, text: str, tip: str) -> QtWidgets.QLabel:
        lab = QtWidgets.QLabel(text)
        lab.setProperty("role", "port")
        lab.setFixedHeight(ROW_H)
        lab.setToolTip(tip)
        return lab

    def _changed(self, name: str, value):
        self.node.set_param(name, value)

    # -- updates from the node ------------------------------------------------
    def refresh(self) -> None:
        """Show the node's parameters (after undo, paste or a load)."""
        node = self.node
        for p in node.spec.params:
            ed = self.editors.get(p.name)
            if ed is not None:
                ed.set_value(shown_value(p, node.params))
        unknown = {k: v for k, v in node.params.items() if node.spec.param(k) is None}
        lines = [f"{k}: {v!r}" for k, v in unknown.items()]
        lines += [f"{k} \u2190 {v}" for k, v in node.extra_inputs.items()]
        self.extra.setText("\n".join(lines))
        self.extra.setVisible(bool(lines))
        self._refit()

    def set_suggestions(self, name: str, words: list[str]) -> None:
        ed = self.editors.get(name)
        if isinstance(ed, TextEditor):
            ed.set_suggestions(words)

    def show_picture(self, image: QtGui.QImage | None) -> None:
        if image is None or image.isNull():
            self.picture.clear()
            self.picture.hide()
        else:
            width = NODE_W - 2 * PAD
            pix = QtGui.QPixmap.fromImage(image).scaled(width, PREVIEW_MAX_H, Qt.AspectRatioMode.KeepAspectRatio,
                                                         Qt.TransformationMode.SmoothTransformation)
            self.picture.setPixmap(pix)
            self.picture.show()
        self._refit()

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self._refit()

    def _refit(self):
        gr = getattr(self.node, "grNode", None)
        if gr is not None and hasattr(gr, "fit"):
            gr.fit()

    def serialize(self):
        return self.node.to_data()

    def deserialize(self, data, hashmap={}, restore_id=True):  # noqa: B006 - nodeeditor's signature
        self.node.from_data(data)
        return True
