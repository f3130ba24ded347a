"""The editor's look: the dark style sheet, the application palette and the Run/Stop icons.

Only colours and drawn icons live here. How a node card looks on the canvas
is in `nodeview.py`; this module builds no widgets and knows nothing of
recipes or runs.
"""
from __future__ import annotations

from .qt import Qt, QtCore, QtGui, QtWidgets

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


def icon(kind: str) -> QtGui.QIcon:
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
    """The Fusion style with the editor's dark palette, for the whole application."""
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    for role, color in ((QtGui.QPalette.ColorRole.Window, "#1e2126"), (QtGui.QPalette.ColorRole.WindowText, "#d8dce2"),
                        (QtGui.QPalette.ColorRole.Base, "#16181c"), (QtGui.QPalette.ColorRole.Text, "#d8dce2"),
                        (QtGui.QPalette.ColorRole.Button, "#2a2f36"), (QtGui.QPalette.ColorRole.ButtonText, "#d8dce2"),
                        (QtGui.QPalette.ColorRole.Highlight, "#3d6fa8"), (QtGui.QPalette.ColorRole.ToolTipBase, "#23272d"),
                        (QtGui.QPalette.ColorRole.ToolTipText, "#d8dce2"), (QtGui.QPalette.ColorRole.AlternateBase, "#23272d")):
        pal.setColor(role, QtGui.QColor(color))
    app.setPalette(pal)
