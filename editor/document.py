"""The recipe as a file: new, open, save, unsaved changes, recent files and the output folder.

`Document` keeps which file the canvas shows (`filename`, None until it is
saved as YAML) and where runs write (`out_dir`, else the recipe's folder's
`out/`). It opens YAML recipes, PNGs made by dreamnodes and the built-in
DeepDream through `dreamnodes.graphs.sources.open_recipe`, writes YAML
atomically, asks before unsaved changes are thrown away and keeps the
Open Recent list in the window's settings. It does not edit the graph (the
scene does) and does not run it (`runs.py` does).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dreamnodes.errors import DreamError
from dreamnodes.graphs.recipe import Recipe, dump_recipe

from .qt import QtCore, QtWidgets

if TYPE_CHECKING:
    from .window import MainWindow

APP = "dreamnodes editor"
RECIPE_FILTER = "Recipes (*.yaml *.yml);;Pictures made by dreamnodes (*.png);;All files (*)"
OPEN_FILTER = "Recipes and pictures (*.yaml *.yml *.png);;All files (*)"
MAX_RECENT = 8


class Document:
    """The file behind the window's scene; the File menu's commands."""

    def __init__(self, window: MainWindow):
        self.window = window
        self.scene = window.scene
        self.filename: str | None = None
        self.out_dir: Path | None = None
        self.recent_menu: QtWidgets.QMenu | None = None  # set once the menus exist

    # -- unsaved changes ------------------------------------------------------------
    def ask_unsaved(self) -> str:
        """'save', 'discard' or 'cancel', asked in a message box."""
        box = QtWidgets.QMessageBox(self.window)
        box.setWindowTitle(APP)
        box.setText(f"The recipe '{self.scene.meta.name or 'untitled'}' has unsaved changes.")
        box.setInformativeText("Save them first?")
        box.setStandardButtons(QtWidgets.QMessageBox.StandardButton.Save | QtWidgets.QMessageBox.StandardButton.Discard
                               | QtWidgets.QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {QtWidgets.QMessageBox.StandardButton.Save: "save",
                QtWidgets.QMessageBox.StandardButton.Discard: "discard"}.get(
            QtWidgets.QMessageBox.StandardButton(answer), "cancel")

    def maybe_save(self) -> bool:
        """True when it is fine to throw the current recipe away."""
        if not self.scene.isModified():
            return True
        answer = self.ask_unsaved()  # tests replace it (through the window's `ask_unsaved`)
        if answer == "save":
            return self.save()
        return answer == "discard"

    # -- new and open -----------------------------------------------------------------
    def new_recipe(self, ask: bool = True) -> bool:
        if ask and not self.maybe_save():
            return False
        win = self.window
        self.scene.load(Recipe({}))
        self.filename = None
        win.preview.caption.setText("no picture yet: run the graph (F5)")
        win.update_title()
        win.on_selection()
        return True

    def open_dialog(self):
        if not self.maybe_save():
            return
        start = str(Path(self.filename).parent) if self.filename else str(Path.cwd())
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Open recipe", start, OPEN_FILTER)
        if path:
            self.open_path(path, ask=False)

    def open_path(self, path: str | None, ask: bool = True) -> bool:
        """Open a recipe (YAML), a PNG made by dreamnodes, or (None) the built-in DeepDream."""
        from dreamnodes.graphs.sources import open_recipe  # YAML, PNG or the default

        if ask and not self.maybe_save():
            return False
        win = self.window
        try:
            recipe = open_recipe(path)
        except DreamError as exc:
            win.log.add("error", f"cannot open {path}: {exc}")
            win.status.setText(f"cannot open {path}")
            if win.isVisible():
                QtWidgets.QMessageBox.warning(win, APP, f"Cannot open {path}:\n\n{exc}")
            return False
        notes = self.scene.load(recipe)
        is_picture = path is not None and Path(path).suffix.lower() == ".png"
        # a picture is not where its recipe is saved: Save asks for a name
        self.filename = None if (path is None or is_picture) else str(Path(path).resolve())
        if path is not None and not is_picture:
            self._remember(self.filename)
        what = "the built-in DeepDream recipe" if path is None else \
            (f"the recipe inside {path}" if is_picture else path)
        self._log_opened(what, recipe, notes)
        return True

    def _log_opened(self, what: str, recipe: Recipe, notes: list[str]) -> None:
        win = self.window
        win.log.add("ok", f"opened {what} ({len(recipe.nodes)} nodes)")
        for p in recipe.problems:
            win.log.add("warn", str(p), p.node)
        for note in notes:
            win.log.add("warn", note)
        for n in self.scene.dream_nodes():
            n.set_state("")
        win.update_title()
        win.on_selection()
        QtCore.QTimer.singleShot(0, win.fit_view)

    # -- save -------------------------------------------------------------------------
    def save(self) -> bool:
        if not self.filename:
            return self.save_as()
        return self._write(self.filename)

    def save_as(self, path: str | None = None) -> bool:
        if not path:
            start = self.filename or str(Path.cwd() / f"{(self.scene.meta.name or 'recipe').replace(' ', '_')}.yaml")
            path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Save recipe", start, RECIPE_FILTER)
            if not path:
                return False
            if not Path(path).suffix:
                path += ".yaml"
        if Path(path).suffix.lower() == ".png":
            self.window.log.add("error", "recipes are saved as YAML; pictures get their recipe when a run saves them")
            return False
        path = str(Path(path).resolve())
        self.scene.meta.file = path
        if not self._write(path):
            return False
        self.filename = path
        self._remember(path)
        self.window.update_title()
        return True

    def _write(self, path: str) -> bool:
        text = dump_recipe(self.scene.to_recipe())
        tmp = Path(path).with_name(f".{Path(path).name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.window.log.add("error", f"cannot save {path}: {exc}")
            return False
        self.scene.has_been_modified = False
        self.window.log.add("ok", f"saved {path}")
        self.window.update_title()
        return True

    # -- recent files -----------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.window.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember(self, path: str):
        files = [path] + [p for p in self.recent_files() if p != path]
        self.window.settings.setValue("recent", files[:MAX_RECENT])
        self.fill_recent()

    def fill_recent(self):
        """Rebuild the Open Recent menu from the settings."""
        menu = self.recent_menu
        menu.clear()
        files = self.recent_files()
        for i, path in enumerate(files):
            a = menu.addAction(f"&{i + 1}  {path}")
            a.triggered.connect(lambda checked=False, p=path: self.open_path(p))
        menu.setEnabled(bool(files))

    # -- where runs write -------------------------------------------------------------
    def output_folder(self) -> Path:
        if self.out_dir is not None:
            return self.out_dir
        folder = self.scene.meta.folder
        return (folder if folder is not None else Path.cwd()) / "out"

    def choose_output_folder(self):
        path = QtWidgets.QFileDialog.getExistingDirectory(self.window, "Output folder", str(self.output_folder()))
        if path:
            self.out_dir = Path(path)
            self.window.inspector.show_recipe()
