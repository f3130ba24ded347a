"""torch, imported when first used: the vocabulary names it, but reading specs, recipes and
the command line's help must not pay for importing it (about 2.5 s)."""
from __future__ import annotations

import importlib
from typing import Any


class _Lazy:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<{self._name}, imported when first used>"


torch: Any = _Lazy("torch")
