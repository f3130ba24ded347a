"""What a node sees of the run: its seed, device, output folder, and a way
to report progress and previews. The runtime makes one per node; nodes never
import the runtime.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .lazy import torch

from . import events as ev
from .errors import Cancelled, NodeError
from .files import InputFileError, atomic_write, resolve_input
from .limits import DEFAULT_LIMITS, Limits


@dataclass
class Context:
    node_id: str = "node"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    out_dir: Path = field(default_factory=lambda: Path("out"))
    #: folders input files may be read from (the recipe's folder first)
    input_roots: tuple[Path, ...] = ()
    emit: Callable[[ev.Event], None] = lambda e: None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: the recipe as YAML text and provenance, for embedding into outputs
    recipe_text: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    #: files this node wrote (paths relative to out_dir)
    written: list[str] = field(default_factory=list)
    #: the user trusts this run's files (`--trust`): formats that can run code when
    #: loaded (TorchScript, full pickles) may be loaded
    trust: bool = False
    #: where checkpoints go (get(name) / put(name, value), keyed by this node's cache key); None: nowhere
    checkpoints: Any = None
    #: the run's resource bounds (`--limit KIND=N`): what a node sizes from its inputs (a picture's
    #: declared size, a contact sheet, held frames) is checked against them before it is allocated
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def progress(self, step: int, total: int, label: str = "") -> None:
        """Report step `step` of `total`; raises Cancelled if the run was stopped."""
        self.check_cancelled()
        self.emit(ev.Progress(self.node_id, step, total, label))

    def preview(self, image: Any) -> None:
        self.emit(ev.Preview(self.node_id, image))

    def drew(self, what: str) -> None:
        self.emit(ev.Drew(self.node_id, what))

    def checkpoint(self, name: str, value: Any) -> None:
        """Save a piece of finished work (an Image, Frames...) so an interrupted run resumes after it."""
        if self.checkpoints is not None:
            self.checkpoints.put(name, value)

    def restore(self, name: str) -> Any:
        """The value an earlier, interrupted run of this same node (same inputs and parameters)
        saved under `name`, or None."""
        return self.checkpoints.get(name) if self.checkpoints is not None else None

    def generator(self, device: torch.device | str | None = None, salt: int = 0) -> torch.Generator:
        """A torch.Generator seeded from this node's seed (plus `salt`)."""
        g = torch.Generator(device=device or "cpu")
        g.manual_seed((self.seed + salt) % (2**63))
        return g

    def output_path(self, relpath: str) -> Path:
        """Where to write `relpath`: always inside the output folder.

        Absolute paths, `..` and symlinks leading out are refused, since a
        recipe may come from a stranger.
        """
        rel = Path(relpath)
        if rel.is_absolute() or relpath.startswith(("/", "\\")) or ".." in rel.parts or not rel.parts:
            raise NodeError(f"output path {relpath!r} must be a relative path inside the output "
                            "folder, without '..' (use --out to choose the folder)", self.node_id)
        root = self.out_dir.resolve()
        target = (root / rel).resolve()
        if root != target and root not in target.parents:
            raise NodeError(f"output path {relpath!r} leads outside the output folder {root}", self.node_id)
        return target

    def write_file(self, relpath: str, data: bytes) -> Path:
        """Write a file into the output folder (atomically) and record it."""
        target = self.output_path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        rel = target.relative_to(self.out_dir.resolve()).as_posix()
        if rel not in self.written:
            self.written.append(rel)
        return target

    def input_path(self, path: str) -> Path:
        """The file a recipe's `path` names: `sample:NAME`, or a regular file in the allowed folders."""
        try:
            return resolve_input(path, self.input_roots)
        except InputFileError as exc:
            raise NodeError(str(exc), self.node_id) from None
