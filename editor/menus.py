"""The window's commands as actions, and the menus and toolbar that show them.

`add_actions` makes one `QAction` per command (text, shortcuts, tip) as
`window.act_*`; `add_menus` puts them in the File, Edit, Run and View menus
and the toolbar. The actions only call the window's methods: what a command
does is in `document.py`, `editing.py`, `runs.py` and `window.py`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .qt import Qt, QtGui
from .theme import icon

if TYPE_CHECKING:
    from .window import MainWindow


def _action(win: MainWindow, text, slot, shortcut=None, tip=""):
    a = QtGui.QAction(text, win)
    if shortcut is not None:
        keys = shortcut if isinstance(shortcut, list) else [shortcut]
        a.setShortcuts([QtGui.QKeySequence(k) for k in keys])
    if tip:
        a.setStatusTip(tip)
        a.setToolTip(tip)
    a.triggered.connect(lambda checked=False: slot())
    win.addAction(a)
    return a


def add_actions(win: MainWindow) -> None:
    """The window's `act_*` actions, with their shortcuts and tips."""
    K = QtGui.QKeySequence.StandardKey
    win.act_new = _action(win, "&New", win.new_recipe, K.New, "start an empty recipe")
    win.act_open = _action(win, "&Open\u2026", win.open_dialog, K.Open, "open a recipe or a picture made by dreamnodes")
    win.act_save = _action(win, "&Save", win.save, K.Save, "save the recipe")
    win.act_save_as = _action(win, "Save &As\u2026", win.save_as, K.SaveAs, "save the recipe under a new name")
    win.act_quit = _action(win, "&Quit", win.close, K.Quit)
    win.act_undo = _action(win, "&Undo", win.undo, K.Undo)
    win.act_redo = _action(win, "&Redo", win.redo, [QtGui.QKeySequence(K.Redo), "Ctrl+Y"])
    win.act_cut = _action(win, "Cu&t", win.cut, K.Cut)
    win.act_copy = _action(win, "&Copy", win.copy, K.Copy)
    win.act_paste = _action(win, "&Paste", win.paste, K.Paste)
    win.act_delete = _action(win, "&Delete", win.delete, K.Delete, "delete the selected nodes and edges")
    win.act_select_all = _action(win, "Select &All", win.select_all, K.SelectAll)
    win.act_add = _action(win, "&Add Node\u2026", win.palette.focus_search, "Ctrl+K",
                          "type to find a node type, Enter adds it (or just start typing on the canvas)")
    win.act_run = _action(win, "&Run", win.run, ["F5", "Ctrl+Return"], "run the graph (only what changed)")
    win.act_stop = _action(win, "&Stop", win.stop, ["Shift+F5", "Ctrl+."], "stop the run")
    win.act_validate = _action(win, "&Check Recipe", win.check, "Ctrl+Shift+K", "validate without running")
    win.act_fit = _action(win, "&Fit Graph", win.fit_view, "Home", "show the whole graph")
    win.act_out = _action(win, "&Output Folder\u2026", win.choose_output_folder, None,
                          "where image.save and video.save write")
    win.act_overwrite = _action(win, "&Overwrite Existing Files", lambda: None, None,
                                "let a run replace files earlier runs wrote (else it refuses; or put {n} in "
                                "the output path)")
    win.act_overwrite.setCheckable(True)
    win.act_stop.setEnabled(False)


def add_menus(win: MainWindow) -> None:
    """The menu bar and the toolbar; the Open Recent menu becomes `win.recent_menu`."""
    mb = win.menuBar()
    f = mb.addMenu("&File")
    for a in (win.act_new, win.act_open):
        f.addAction(a)
    win.recent_menu = f.addMenu("Open &Recent")
    f.addSeparator()
    for a in (win.act_save, win.act_save_as):
        f.addAction(a)
    f.addSeparator()
    f.addAction(win.act_out)
    f.addSeparator()
    f.addAction(win.act_quit)
    e = mb.addMenu("&Edit")
    for a in (win.act_undo, win.act_redo, None, win.act_cut, win.act_copy, win.act_paste, win.act_delete,
              None, win.act_select_all, win.act_add):
        e.addSeparator() if a is None else e.addAction(a)
    r = mb.addMenu("&Run")
    for a in (win.act_run, win.act_stop, win.act_validate, None, win.act_overwrite):
        r.addSeparator() if a is None else r.addAction(a)
    v = mb.addMenu("&View")
    v.addAction(win.act_fit)
    for dock in win.docks.values():
        v.addAction(dock.toggleViewAction())
    win.act_run.setIcon(icon("run"))
    win.act_stop.setIcon(icon("stop"))
    tb = win.addToolBar("main")
    tb.setObjectName("toolbar_main")
    tb.setMovable(False)
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for a in (win.act_new, win.act_open, win.act_save, None, win.act_undo, win.act_redo, None,
              win.act_run, win.act_stop, None, win.act_fit):
        tb.addSeparator() if a is None else tb.addAction(a)
