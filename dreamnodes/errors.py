"""Errors a user can cause or meet, each carrying what to change.

`RecipeError` (exit code 2) gathers every problem validation found, so a user
fixes a recipe in one pass; `NodeError` (exit code 1) is a failure while a
node ran. Nothing here imports torch, the runtime or Qt.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

#: what printable() escapes: control (C0, C1), format (bidi overrides and isolates, zero-width),
#: surrogate, and line / paragraph separator characters
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str, line: bool = False) -> str:
    """Text from a recipe, a picture, a model or a file name, safe to print on a terminal: control
    and format characters (escape sequences, C1 controls such as NEL and CSI, bidi overrides) are
    shown as escapes instead of acting on the terminal. Messages keep their newlines and tabs;
    `line=True` (a name, a path) escapes those too, so one name is always one line."""
    keep = "" if line else "\n\t"
    return "".join(c if c in keep or unicodedata.category(c) not in _UNSAFE else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def shorten(text: str, most: int = 80) -> str:
    """`text`, or its start and end around '...' when it is longer than `most` characters (a path
    of 5000 folders is not repeated in full in a message)."""
    if len(text) <= most:
        return text
    head = most * 2 // 3
    return text[:head] + "..." + text[-(most - head - 3):]


class DreamError(Exception):
    """Base of every error dreamnodes raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None
    node: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file or "<recipe>"
        if self.line:
            where += f":{self.line}"
        subject = []
        if self.node:
            subject.append(f"node '{self.node}'")
        if self.field:
            subject.append(f"field '{self.field}'")
        head = f"{where}: " + (", ".join(subject) + ": " if subject else "")
        return head + self.message


class RecipeError(DreamError):
    """A recipe (or a command-line override of it) is invalid; nothing ran."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        n = len(self.problems)
        head = "1 problem" if n == 1 else f"{n} problems"
        shown = [f"  {p}" for p in self.problems[:self.SHOWN]]
        if n > self.SHOWN:
            shown.append(f"  ... and {n - self.SHOWN} more; fix these first")
        super().__init__(f"{head} in the recipe:\n" + "\n".join(shown))

    #: problems listed in the message (all of them stay in `problems`)
    SHOWN = 100


class UsageError(DreamError):
    """A command-line argument or an input file is wrong; nothing ran."""

    exit_code = 2


class NodeError(DreamError):
    """A node failed while running. The message says what to change."""

    def __init__(self, message: str, node: str | None = None):
        self.node = node
        self.detail = message
        super().__init__(f"node '{node}': {message}" if node else message)


class Cancelled(DreamError):
    """The run was cancelled; nothing partial was written."""

    exit_code = 130

    def __init__(self, message: str = "the run was cancelled"):
        super().__init__(message)


class Interrupted(KeyboardInterrupt):
    """A signal that ends a command as Ctrl-C does (SIGTERM, SIGHUP; see runtime/cli.py): raised
    where the program is, and handled wherever KeyboardInterrupt is (a run is cancelled and its
    staging folder deleted). The exit code is 128 + the signal's number, as a shell reports it."""

    def __init__(self, signum: int, name: str):
        self.signum = signum
        self.name = name
        self.exit_code = 128 + signum
        super().__init__(name)
