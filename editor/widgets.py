"""Parameter widgets, made from a node's `Param` specs.

`make_editor(param)` picks the widget from what the spec says about the
parameter, never from the node type: spin boxes for numbers (with a slider
when the range is closed), a dropdown for `Literal` choices, a check box for
booleans, a file picker for `InPath`, a colour picker for `Color`, a re-roll
button for seeds, a text field for the rest. Optional parameters (`None`
allowed) show "auto" at the bottom of the spin box. Every editor has the same
small interface: `value()`, `set_value(v)` (silent) and a `changed(object)`
signal carrying a value the node's spec accepts.

The widgets know nothing of the canvas, the recipe or the runtime.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

from dreamnodes.spec import Param

from .qt import QObject, Qt, QtCore, QtGui, QtWidgets, Signal

INT_LIMIT = 2**31 - 1
SLIDER_STEPS = 1000


class _WheelGuard(QObject):
    """Spin boxes, sliders and combos on the canvas ignore the wheel unless focused,
    so scrolling over a node pans the canvas instead of changing a value."""

    def eventFilter(self, obj, event):
        if event.type() == QtCore.QEvent.Type.Wheel and not obj.hasFocus():
            event.ignore()
            return True
        return False


_GUARD: _WheelGuard | None = None


def guard_wheel(w: QtWidgets.QWidget) -> None:
    global _GUARD
    if _GUARD is None:
        _GUARD = _WheelGuard()
    w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    w.installEventFilter(_GUARD)


class ParamEditor(QtWidgets.QWidget):
    """Base: one parameter's widget. `changed` carries the new value."""

    changed = Signal(object)

    def __init__(self, param: Param, parent=None):
        super().__init__(parent)
        self.param = param
        self._silent = False
        self.lay = QtWidgets.QHBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.lay.setSpacing(3)
        tip = param.doc or ""
        tip += ("\n" if tip else "") + f"{param.name}: {param.describe()}"
        if not param.required:
            tip += f" (default {param.default!r})"
        self.setToolTip(tip)

    def value(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        """Show `value` without emitting `changed`."""
        self._silent = True
        try:
            self._show(value)
        finally:
            self._silent = False

    def _show(self, value: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _emit(self, *_):
        if not self._silent:
            self.changed.emit(self.value())


def _decimals(p: Param) -> int:
    vals = [v for v in (p.default, p.range.lo if p.range else None, p.range.hi if p.range else None)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v]
    d = 2
    for v in vals:
        s = f"{abs(float(v)):g}"
        if "." in s:
            d = max(d, min(4, len(s.split(".")[1])))
    return d


class NumberEditor(ParamEditor):
    """Spin box (int or float), with a slider when the range is closed.

    An optional parameter uses the spin box's lowest value, shown as "auto",
    for None.
    """

    def __init__(self, param: Param, parent=None):
        super().__init__(param, parent)
        self.is_int = param.kind == "int"
        rng = param.range
        lo = rng.lo if rng and rng.lo is not None else None
        hi = rng.hi if rng and rng.hi is not None else None
        if self.is_int:
            self.spin = QtWidgets.QSpinBox()
            self.step = 1
            lo_v = int(lo) if lo is not None else -INT_LIMIT
            hi_v = int(hi) if hi is not None else INT_LIMIT
        else:
            self.spin = QtWidgets.QDoubleSpinBox()
            self.spin.setDecimals(_decimals(param))
            span = (hi - lo) if lo is not None and hi is not None else None
            self.step = 0.01 if span is not None and span <= 2 else 0.1 if span is not None and span <= 20 else 1.0
            self.spin.setSingleStep(self.step)
            lo_v = float(lo) if lo is not None else -1e9
            hi_v = float(hi) if hi is not None else 1e9
        self.none_value = None
        if param.optional:  # the spin box's lowest value, shown as "auto", means None
            if lo is not None:
                self.none_value = lo_v - self.step
            elif self.is_int:  # unbounded below (a seed): -1 is "auto", negatives are not offered
                self.none_value = -1
            else:
                self.none_value = lo_v
            self.spin.setSpecialValueText("auto")
            self.spin.setMinimum(self.none_value)
        else:
            self.spin.setMinimum(lo_v)
        self.spin.setMaximum(hi_v)
        self.spin.setKeyboardTracking(False)
        self.spin.setAccelerated(True)
        self.spin.setAlignment(Qt.AlignmentFlag.AlignRight)
        guard_wheel(self.spin)
        self.slider = None
        if lo is not None and hi is not None and (not self.is_int or hi - lo <= 64):
            self.lo, self.hi = float(lo), float(hi)
            self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
            self.slider.setRange(0, int(hi - lo) if self.is_int else SLIDER_STEPS)
            guard_wheel(self.slider)
            self.slider.valueChanged.connect(self._from_slider)
            self.lay.addWidget(self.slider, 3)
            self.spin.setMinimumWidth(64)
            self.lay.addWidget(self.spin, 2)
        else:
            self.lay.addWidget(self.spin, 1)
        self.spin.valueChanged.connect(self._from_spin)

    def value(self) -> Any:
        v = self.spin.value()
        if self.none_value is not None and v <= self.none_value:
            return None
        return int(v) if self.is_int else float(round(v, self.spin.decimals()))

    def _show(self, value: Any) -> None:
        if value is None:
            self.spin.setValue(self.none_value if self.none_value is not None else self.spin.minimum())
        else:
            self.spin.setValue(value)
        self._sync_slider()

    def _sync_slider(self):
        if self.slider is None:
            return
        v = self.value()
        self.slider.blockSignals(True)
        if v is None:
            self.slider.setValue(0)
        elif self.is_int:
            self.slider.setValue(int(v - self.lo))
        else:
            self.slider.setValue(round((v - self.lo) / (self.hi - self.lo) * SLIDER_STEPS))
        self.slider.blockSignals(False)

    def _from_slider(self, pos: int):
        v = self.lo + pos if self.is_int else self.lo + (self.hi - self.lo) * pos / SLIDER_STEPS
        if not self.is_int:
            v = round(v, self.spin.decimals())
        self.spin.setValue(v)  # emits through _from_spin

    def _from_spin(self, _v):
        self._sync_slider()
        self._emit()


class SeedEditor(NumberEditor):
    """A seed: a number, "auto" (derived from the recipe's seed) and a re-roll button."""

    def __init__(self, param: Param, parent=None):
        super().__init__(param, parent)
        self.roll = QtWidgets.QToolButton()
        self.roll.setText("\u21bb")  # re-roll
        self.roll.setToolTip("re-roll: draw a new random seed")
        self.roll.clicked.connect(self.reroll)
        self.lay.addWidget(self.roll)

    def reroll(self):
        self.spin.setValue(random.randint(0, 2**31 - 2))


class BoolEditor(ParamEditor):
    def __init__(self, param: Param, parent=None):
        super().__init__(param, parent)
        self.box = QtWidgets.QCheckBox()
        self.box.toggled.connect(self._emit)
        self.lay.addWidget(self.box)
        self.lay.addStretch(1)

    def value(self):
        return self.box.isChecked()

    def _show(self, value):
        self.box.setChecked(bool(value))


class ChoiceEditor(ParamEditor):
    """A dropdown of the `Literal` choices (plus "auto" when None is allowed)."""

    def __init__(self, param: Param, parent=None):
        super().__init__(param, parent)
        self.combo = QtWidgets.QComboBox()
        self.values = ([None] if param.optional else []) + list(param.choices)
        for v in self.values:
            self.combo.addItem("auto" if v is None else str(v))
        guard_wheel(self.combo)
        self.combo.currentIndexChanged.connect(self._emit)
        self.lay.addWidget(self.combo, 1)

    def value(self):
        i = self.combo.currentIndex()
        return self.values[i] if 0 <= i < len(self.values) else None

    def _show(self, value):
        self.combo.setCurrentIndex(self.values.index(value) if value in self.values else -1)


class TextEditor(ParamEditor):
    """Free text; for an optional parameter an empty field means None.

    `set_suggestions` offers completions (layer paths of the connected model).
    """

    def __init__(self, param: Param, parent=None):
        super().__init__(param, parent)
        self.edit = QtWidgets.QLineEdit()
        if param.optional:
            self.edit.setPlaceholderText("auto")
        self.edit.editingFinished.connect(self._finished)
        self.lay.addWidget(self.edit, 1)
        self._last = None

    def set_suggestions(self, words: list[str]) -> None:
        comp = QtWidgets.QCompleter(words, self.edit)
        comp.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        comp.setFilterMode(Qt.MatchFlag.MatchContains)
        comp.activated.connect(lambda _t: self._finished())
        self.edit.setCompleter(comp)

    def value(self):
        t = self.edit.text()
        return None if (t == "" and self.param.optional) else t

    def _show(self, value):
        self.edit.setText("" if value is None else str(value))
        self._last = self.value()

    def _finished(self):
        v = self.value()
        if v != self._last:
            self._last = v
            self._emit()


class PathEditor(TextEditor):
    """A file the node reads: text field, completions for bundled samples, and a file picker."""

    def __init__(self, param: Param, parent=None, base_folder: Callable[[], Path | None] = lambda: None,
                 samples: list[str] = ()):
        super().__init__(param, parent)
        self.base_folder = base_folder
        if samples:
            self.set_suggestions([f"sample:{s}" for s in samples])
        self.pick = QtWidgets.QToolButton()
        self.pick.setText("\u2026")
        self.pick.setToolTip("choose a file")
        self.pick.clicked.connect(self.choose)
        self.lay.addWidget(self.pick)

    def choose(self):
        base = self.base_folder() or Path.cwd()
        name, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, f"Choose {self.param.name}", str(base), "Pictures (*.png *.jpg *.jpeg *.webp);;All files (*)")
        if name:
            self.choose_file(name)

    def choose_file(self, name: str) -> None:
        """Set a chosen file, relative to the recipe's folder when it is inside it."""
        p = Path(name).resolve()
        base = self.base_folder()
        if base is not None:
            try:
                name = p.relative_to(base.resolve()).as_posix()
            except ValueError:
                name = str(p)
        self.edit.setText(name)
        self._finished()


class ColorEditor(ParamEditor):
    """A colour swatch button that opens a colour picker; the value is '#rrggbb'."""

    def __init__(self, param: Param, parent=None):
        super().__init__(param, parent)
        self.button = QtWidgets.QPushButton()
        self.button.clicked.connect(self.choose)
        self.lay.addWidget(self.button, 1)
        self._value = "#000000"

    def choose(self):
        c = QtWidgets.QColorDialog.getColor(QtGui.QColor(self._value), self, f"Choose {self.param.name}")
        if c.isValid():
            self.set_color(c.name())

    def set_color(self, hex_color: str) -> None:
        self._show(hex_color)
        self._emit()

    def value(self):
        return self._value

    def _show(self, value):
        self._value = value if isinstance(value, str) else "#000000"
        c = QtGui.QColor(self._value)
        text = "#000000" if c.lightnessF() > 0.55 else "#ffffff"
        self.button.setText(self._value)
        self.button.setStyleSheet(f"QPushButton {{ background: {self._value}; color: {text}; "
                                  "border: 1px solid #111; border-radius: 3px; padding: 1px; }")


class ListEditor(ParamEditor):
    """A list of numbers or words, written comma-separated."""

    def __init__(self, param: Param, parent=None):
        super().__init__(param, parent)
        self.item_kind = param.kind[5:-1]
        self.edit = QtWidgets.QLineEdit()
        self.edit.setPlaceholderText("a, b, c")
        self.edit.editingFinished.connect(self._finished)
        self.lay.addWidget(self.edit, 1)
        self._last = None

    def _parse(self) -> tuple[Any, bool]:
        text = self.edit.text().strip()
        if not text:
            return (None if self.param.optional else []), True
        out = []
        for part in text.split(","):
            part = part.strip()
            try:
                out.append(int(part) if self.item_kind == "int" else float(part) if self.item_kind == "float"
                           else part)
            except ValueError:
                return None, False
        return out, True

    def value(self):
        return self._parse()[0]

    def _show(self, value):
        self.edit.setText("" if value is None else ", ".join(f"{v:g}" if isinstance(v, float) else str(v)
                                                              for v in value))
        self._last = self.value()

    def _finished(self):
        v, ok = self._parse()
        self.edit.setStyleSheet("" if ok else "border: 1px solid #e05050;")
        if ok and v != self._last:
            self._last = v
            self._emit()


def make_editor(param: Param, parent=None, *, base_folder: Callable[[], Path | None] = lambda: None,
                samples: list[str] = ()) -> ParamEditor:
    """The widget for one parameter, chosen from its spec."""
    kind = param.kind
    if kind in ("int", "float"):
        if param.name == "seed" and kind == "int":
            return SeedEditor(param, parent)
        return NumberEditor(param, parent)
    if kind == "bool":
        return BoolEditor(param, parent)
    if kind == "choice":
        return ChoiceEditor(param, parent)
    if kind == "color":
        return ColorEditor(param, parent)
    if kind == "path":
        return PathEditor(param, parent, base_folder=base_folder, samples=samples)
    if kind.startswith("list["):
        return ListEditor(param, parent)
    return TextEditor(param, parent)  # str, outpath


def shown_value(param: Param, params: dict) -> Any:
    """What a widget shows: the recipe's value, else the default, else a neutral value."""
    if param.name in params:
        return params[param.name]
    if not param.required:
        return param.default
    if param.kind in ("int", "float"):
        lo = param.range.lo if param.range and param.range.lo is not None else 0
        return int(lo) if param.kind == "int" else float(lo)
    return {"bool": False, "choice": param.choices[0] if param.choices else None, "color": "#808080"}.get(
        param.kind, [] if param.kind.startswith("list[") else "")

