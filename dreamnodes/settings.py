"""The settings dreamnodes reads from the environment: one table, each with what it holds and the
values it takes.

Every command checks them all when it starts (`check_settings`), so a bad value is an error
naming the setting (exit code 2) before any recipe is opened, not a surprise when a render
node finally reads it. Code reads a setting through `setting(name)`, which parses it the same
way. A setting parsed above the vocabulary (the cache's size bound, by `runtime/cache.py`) is
listed here too, and its parser handed to `check_settings`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import UsageError


@dataclass(frozen=True)
class Setting:
    name: str
    doc: str
    example: str  # a good value, for the message
    #: the text (stripped, not empty) -> its value; a ValueError says what is allowed.
    #: None: parsed elsewhere (see check_settings), or any text.
    parse: Callable[[str], Any] | None = None


def megabytes(above_zero: bool) -> Callable[[str], int]:
    """A parser of a size in megabytes (a finite number; `above_zero`: 0 is refused) -> bytes."""
    def parse(text: str) -> int:
        try:
            mb = float(text.replace("_", ""))
        except ValueError:
            mb = math.nan
        if not (math.isfinite(mb) and (mb > 0 if above_zero else mb >= 0)) or mb > 2**40:
            raise ValueError("a number of megabytes above 0" if above_zero else "a number of megabytes, 0 or more")
        return int(mb * 1024**2)

    return parse


SWITCH = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def switch(text: str) -> bool:
    value = SWITCH.get(text.lower())
    if value is None:
        raise ValueError("one of 1, true, yes, 0, false or no")
    return value


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError("one of " + ", ".join(repr(c) for c in choices))
        return text.lower()

    return parse


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("DREAMNODES_MEMORY_LIMIT_MB", "the memory a render may plan to use; unset: what the machine has "
            "free", "8000", megabytes(above_zero=True)),
    Setting("DREAMNODES_CACHE_MAX_MB", "the size bound of the disk cache (parsed by runtime/cache.py)", "4096"),
    Setting("DREAMNODES_CACHE_DIR", "the cache folder; unset: the user's cache folder", "~/.cache/dreamnodes"),
    Setting("DREAMNODES_NO_CACHE", "1: never read or write the disk cache (as --no-cache)", "1", switch),
    Setting("DREAMNODES_OFFLINE", "1: never download weights", "1", switch),
    Setting("DREAMNODES_NO_CATALOG", "any value: read node specs by importing every family, not from the "
            "catalog (dreamnodes/catalog.py)", "1"),
    Setting("DREAMNODES_CPU_ALLOCATOR", "system: leave the C allocator as it is (see runtime/device.py)", "system",
            choice("tuned", "system")),
)}


def setting(name: str) -> Any:
    """The value of setting `name` (None when unset or empty); a UsageError names what is wrong."""
    spec = SETTINGS[name]
    raw = os.environ.get(name, "").strip()
    if not raw or spec.parse is None:
        return raw or None
    try:
        return spec.parse(raw)
    except ValueError as exc:
        raise UsageError(f"the setting {name} must be {exc}, got {raw[:40]!r}; set it to, say, {spec.example}, "
                           f"or unset it ({name}: {spec.doc})") from None


def check_settings(parsers: Mapping[str, Callable[[], Any]] = {}) -> None:
    """Parse every setting once, as a command starts; raises the UsageError of the first bad one.
    `parsers`: the settings parsed above the vocabulary, each by a function of no arguments that
    reads it and raises a UsageError naming it."""
    for name in SETTINGS:
        if name in parsers:
            parsers[name]()
        else:
            setting(name)
