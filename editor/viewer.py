"""The preview dock: a picture viewed large, zoomed and saved.

Shows the live preview of the running node, or the picture of the selected
node. Wheel zooms (around the cursor), drag pans, "Fit" and "1:1" reset;
"Save..." writes the picture as PNG, JPEG or WebP.
"""
from __future__ import annotations

from .qt import Qt, QtGui, QtWidgets, Signal


class ImageView(QtWidgets.QGraphicsView):
    """A zoomable, pannable picture."""

    zoomed = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QtWidgets.QGraphicsScene(self))
        self.item = QtWidgets.QGraphicsPixmapItem()
        self.item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.item)
        self.setDragMode(QtWidgets.QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QtWidgets.QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(QtGui.QColor("#15171a"))
        self.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.fitting = True

    def set_image(self, image: QtGui.QImage | None) -> None:
        old = self.item.pixmap().size()
        self.item.setPixmap(QtGui.QPixmap() if image is None else QtGui.QPixmap.fromImage(image))
        self.scene().setSceneRect(self.item.boundingRect())
        if self.fitting or old != self.item.pixmap().size():
            self.fit()

    def fit(self) -> None:
        self.fitting = True
        if not self.item.pixmap().isNull():
            self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)
        self.zoomed.emit(self.transform().m11())

    def actual_size(self) -> None:
        self.fitting = False
        self.resetTransform()
        self.zoomed.emit(1.0)

    def wheelEvent(self, event):
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        self.fitting = False
        self.scale(factor, factor)
        self.zoomed.emit(self.transform().m11())

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self.fitting:
            self.fit()


class PreviewPanel(QtWidgets.QWidget):
    """The dock's content: title, the view, zoom and save buttons."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.image: QtGui.QImage | None = None
        self.node: str | None = None
        self.updates = 0  # how many pictures were shown (the tests watch it)
        box = QtWidgets.QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.setSpacing(4)
        bar = QtWidgets.QHBoxLayout()
        self.caption = QtWidgets.QLabel("no picture yet: run the graph (F5)")
        self.caption.setStyleSheet("color: #9aa3ad;")
        bar.addWidget(self.caption, 1)
        self.zoom_label = QtWidgets.QLabel("")
        self.zoom_label.setStyleSheet("color: #9aa3ad;")
        bar.addWidget(self.zoom_label)
        for text, tip, slot in (("Fit", "fit the picture to the panel", self._fit),
                                ("1:1", "actual size", self._actual),
                                ("Save\u2026", "save this picture", self.save)):
            b = QtWidgets.QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            bar.addWidget(b)
        box.addLayout(bar)
        self.view = ImageView()
        self.view.zoomed.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f}%"))
        box.addWidget(self.view, 1)

    def show_image(self, node: str, image: QtGui.QImage, note: str = "") -> None:
        self.image, self.node = image, node
        self.updates += 1
        self.caption.setText(f"{node}  \u00b7  {image.width()}\u00d7{image.height()}" + (f"  \u00b7  {note}" if note
                                                                                           else ""))
        self.view.set_image(image)

    def _fit(self):
        self.view.fit()

    def _actual(self):
        self.view.actual_size()

    def save(self, path: str | None = None) -> bool:
        if self.image is None:
            return False
        if not path:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save picture", f"{self.node or 'picture'}.png",
                                                            "PNG (*.png);;JPEG (*.jpg);;WebP (*.webp)")
        return bool(path) and self.image.save(path)
