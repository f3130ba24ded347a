"""The one place the editor picks its Qt binding.

The editor is written against QtPy, like nodeeditor itself; the `editor` extra
installs PySide6, so QtPy is told to prefer it (an explicit QT_API in the
environment still wins). Every editor module imports Qt through here.
"""
import os

os.environ.setdefault("QT_API", "pyside6")

from qtpy import QtCore, QtGui, QtWidgets  # noqa: E402
from qtpy.QtCore import QObject, QPointF, QRectF, QSettings, Qt, QThread, QTimer, Signal, Slot  # noqa: E402

__all__ = ["QtCore", "QtGui", "QtWidgets", "QObject", "QPointF", "QRectF", "QSettings", "Qt", "QThread",
           "QTimer", "Signal", "Slot"]
