"""The one place the editor picks its Qt binding.

The editor is written against QtPy, like nodeeditor itself; the `editor` extra
installs PySide6, so QtPy is told to prefer it (an explicit QT_API in the
environment still wins). Every editor module imports Qt through here.
"""
import os

# Import the heavy modules a run needs (torch, torchvision, every node family) before Qt:
# once PySide6 is loaded, its import hook inspects every later import, and imports of large
# packages from the worker thread then crashed the interpreter (a reference-count error in
# shiboken's hook). Imported here, in the main thread, they are done before the hook exists.
import torch  # noqa: E402,F401
import torchvision  # noqa: E402,F401

from dreamnodes.registry import load_all  # noqa: E402

load_all()

os.environ.setdefault("QT_API", "pyside6")

from qtpy import QtCore, QtGui, QtWidgets  # noqa: E402
from qtpy.QtCore import QObject, QPointF, QRectF, QSettings, Qt, QThread, QTimer, Signal, Slot  # noqa: E402

__all__ = ["QtCore", "QtGui", "QtWidgets", "QObject", "QPointF", "QRectF", "QSettings", "Qt", "QThread",
           "QTimer", "Signal", "Slot"]
