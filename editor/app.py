"""Starting the editor: `dreamnodes edit [RECIPE.yaml | PICTURE.png]`."""
from __future__ import annotations

import sys

from .qt import QtCore, QtWidgets


def _quiet_qt_messages() -> None:
    """Drop the offscreen platform's harmless 'propagateSizeHints' chatter."""

    def handler(mode, context, message):
        if "propagateSizeHints" in message:
            return
        sys.stderr.write(message + "\n")

    QtCore.qInstallMessageHandler(handler)


def application(argv: list[str] | None = None) -> QtWidgets.QApplication:
    from .theme import apply_theme

    app = QtWidgets.QApplication.instance()
    if app is None:
        _quiet_qt_messages()
        app = QtWidgets.QApplication(list(argv or [sys.argv[0]]))
        app.setApplicationName("dreamnodes editor")
        app.setOrganizationName("dreamnodes")
        apply_theme(app)
    return app


def open_window(path: str | None = None, *, default: bool = True):
    """A shown editor window with `path` open (the built-in DeepDream when None and `default`)."""
    from .window import MainWindow

    win = MainWindow()
    if path is not None or default:
        win.open_path(path, ask=False)
    win.show()
    return win


def main(argv: list[str] | None = None) -> int:
    """Open the editor; `argv` is [RECIPE.yaml | PICTURE.png] or empty."""
    argv = list(sys.argv[1:] if argv is None else argv)
    app = application([sys.argv[0]])
    win = open_window(argv[0] if argv else None)
    code = app.exec()
    del win
    return code


if __name__ == "__main__":
    sys.exit(main())
