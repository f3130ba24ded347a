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
    #: the node's estimated share of the run's work, relative to the other nodes' (full-size
    #: render steps); 0 for nodes that report no progress (loads, saves, wiring)
    work: float = 0.0


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
    #: the share of the node's work done, in [0, 1], when its steps differ in cost (a DeepDream
    #: octave of four times the pixels takes four times as long); None: steps cost the same
    work: float | None = None

    @property
    def fraction(self) -> float:
        """The share of the node's work done, in [0, 1]: what a bar and an ETA should follow."""
        if self.work is not None:
            return min(max(self.work, 0.0), 1.0)
        return min(max(self.step / self.total, 0.0), 1.0) if self.total > 0 else 0.0


@dataclass(frozen=True)
class Preview(Event):
    image: Any  # an Image


@dataclass(frozen=True)
class Drew(Event):
    """A random node reports what it drew (seed and a summary)."""

    what: str


class RunProgress:
    """A listener that keeps the state of a whole run for a progress display: which node runs, how
    far it is (by work, not steps, where the node says), the nodes done of those queued, and an ETA
    once it means something. Rates are measured from the node's first report (its set-up and any
    work restored from checkpoints left out) and shown only after `settle` seconds and three reports,
    so the first updates show no absurd rate."""

    def __init__(self, clock=None, settle: float = 1.0):
        import time

        self.clock = clock or time.monotonic
        self.settle = settle
        self.queued: list[str] = []
        self.work: dict[str, float] = {}  # estimated work of each queued node (NodeQueued.work)
        self.finished: set[str] = set()
        self.current: str | None = None
        self.type_name = ""
        self.fraction = 0.0
        self.label = ""
        self._base: tuple[float, float] | None = None  # (time, fraction) the rate is measured from
        self._first = 0.0  # when the running node first reported
        self._reports = 0

    def __call__(self, e: Event) -> None:
        if isinstance(e, NodeQueued) and e.node not in self.queued:
            self.queued.append(e.node)
            self.work[e.node] = e.work
        elif isinstance(e, NodeStarted):
            self.current, self.type_name, self.fraction, self.label = e.node, e.type_name, 0.0, ""
            self._base, self._reports = None, 0
        elif isinstance(e, Progress):
            self._progress(e)
        elif isinstance(e, (NodeFinished, NodeFailed)):
            self.finished.add(e.node)
            if self.current == e.node:
                self.current = None

    def _progress(self, e: Progress) -> None:
        now = self.clock()
        self.fraction, self.label = e.fraction, e.label
        if self._base is None or now - self._first < 0.25:  # a burst at the start: restored work
            if self._base is None:
                self._first = now
            self._base, self._reports = (now, self.fraction), 0
        else:
            self._reports += 1

    @property
    def position(self) -> int:
        """The running node's number in the run (1-based), or the nodes done."""
        done = len(self.finished)
        return min(done + 1, len(self.queued)) if self.current else done

    def run_fraction(self) -> float:
        """The share of the run done, each node weighted by its estimated work (the renders); a run
        with no estimate (every node light) counts nodes."""
        total = sum(self.work.values())
        weight = self.work.get if total > 0 else (lambda n, d=0.0: 1.0)
        total = total if total > 0 else len(self.queued)
        if not total:
            return 0.0
        done = sum(weight(n, 0.0) for n in self.finished)
        if self.current and self.current not in self.finished:
            done += weight(self.current, 0.0) * self.fraction
        return min(done / total, 1.0)

    def eta(self) -> float | None:
        """Seconds left in the running node, or None while there is too little to go on."""
        if self._base is None or self._reports < 3:
            return None
        t0, f0 = self._base
        elapsed, gained = self.clock() - t0, self.fraction - f0
        if elapsed < self.settle or gained <= 0:
            return None
        return (1.0 - self.fraction) * elapsed / gained
