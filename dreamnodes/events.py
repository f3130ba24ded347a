"""Events a run emits, for progress bars (CLI) and live previews (editor).

Plain frozen dataclasses; a listener is any callable taking one event.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    node: str


@dataclass(frozen=True)
class NodeQueued(Event):
    pass


@dataclass(frozen=True)
class NodeStarted(Event):
    type_name: str


@dataclass(frozen=True)
class NodeFinished(Event):
    cached: bool  # the result came from the cache; the node did not run
    seconds: float = 0.0


@dataclass(frozen=True)
class NodeFailed(Event):
    message: str


@dataclass(frozen=True)
class Progress(Event):
    step: int
    total: int
    label: str = ""


@dataclass(frozen=True)
class Preview(Event):
    image: Any  # an Image


@dataclass(frozen=True)
class Drew(Event):
    """A random node reports what it drew (seed and a summary)."""

    what: str
