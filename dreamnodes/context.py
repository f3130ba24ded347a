"""What a node sees of the run: its seed, device, output folder, and a way
to report progress and previews. The runtime makes one per node; nodes never
import the runtime.
"""
from __future__ import annotations

import errno
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Iterator

from .lazy import torch

from . import events as ev
from .errors import Cancelled, NodeError, shorten
from .files import InputFileError, atomic_path, atomic_write, resolve_input
from .limits import DEFAULT_LIMITS, Limits

#: how many folders deep an output may go: a recipe from a stranger could ask for thousands, more
#: than the file system's path length allows (and deep trees are slow to make, check and delete)
MAX_OUTPUT_FOLDERS = 64


@contextmanager
def _write_errors(relpath: str, node: str) -> Iterator[None]:
    """An OSError while an output is written, as a NodeError naming the output and what to change."""
    try:
        yield
    except OSError as exc:
        shown = shorten(relpath)
        if exc.errno == errno.ENAMETOOLONG:
            raise NodeError(f"output path {shown!r} is too long for the file system here (a name may have at most "
                            "255 bytes, a whole path about 4,000): shorten it", node) from None
        hint = "; a file may stand where a folder should" if exc.errno in (errno.EEXIST, errno.ENOTDIR) else ""
        raise NodeError(f"cannot write {shown!r} into the output folder ({exc.strerror or exc}){hint}", node) from None


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
    #: the files this node's cache key was made from, as the runtime resolved them: {path parameter's
    #: value: the file, or the InputFileError resolving it raised}; None (a node called outside a
    #: run): any path is resolved when asked for
    files: dict[str, Any] | None = None
    #: the run's resource bounds (`--limit KIND=N`): what a node sizes from its inputs (a picture's
    #: declared size, a contact sheet, held frames) is checked against them before it is allocated
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def progress(self, step: int, total: int, label: str = "", work: float | None = None) -> None:
        """Report step `step` of `total`; raises Cancelled if the run was stopped. `work`: the share
        of the node's work done (0 to 1) when steps differ in cost (octaves of growing area), so
        bars and ETAs follow time rather than steps."""
        self.check_cancelled()
        self.emit(ev.Progress(self.node_id, step, total, label, work))

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
        with _write_errors(relpath, self.node_id):
            target = self._target(relpath)
            atomic_write(target, data)
        return self._record(target)

    @contextmanager
    def writing(self, relpath: str) -> Iterator[Path]:
        """For a writer that needs a file name (another program, e.g. ffmpeg): a temporary file in
        the output folder, next to where `relpath` goes, to write it into. It becomes `relpath`
        (atomically, and recorded) when the block ends, and is deleted when the block raises; it is
        never in the system's temporary folder, so a killed run leaves nothing outside its staging
        folder."""
        with _write_errors(relpath, self.node_id):
            target = self._target(relpath)
            with atomic_path(target) as tmp:
                yield tmp
        self._record(target)

    def _target(self, relpath: str) -> Path:
        """The file `relpath` names in the output folder, its folders made one level at a time (no
        recursion), at most MAX_OUTPUT_FOLDERS deep."""
        folders = len(PurePath(relpath).parts) - 1
        if folders > MAX_OUTPUT_FOLDERS:
            raise NodeError(f"output path {shorten(relpath)!r} has {folders} folders in it; an output may be at "
                            f"most {MAX_OUTPUT_FOLDERS} folders deep: choose a shorter path", self.node_id)
        target = self.output_path(relpath)
        here = root = self.out_dir.resolve()
        root.mkdir(parents=True, exist_ok=True)  # the output folder itself: the user's, not the recipe's
        for part in target.relative_to(root).parts[:-1]:
            here = here / part
            if not here.is_dir():
                here.mkdir(exist_ok=True)
        return target

    def _record(self, target: Path) -> Path:
        rel = target.relative_to(self.out_dir.resolve()).as_posix()
        if rel not in self.written:
            self.written.append(rel)
        return target

    def input_path(self, path: str) -> Path:
        """The file a recipe's `path` names: `sample:NAME`, or a regular file in the allowed folders.

        Resolved by `resolve_input`, the function the runtime's cache key is made with, and, in a
        run, only for the files that key covers (the values of the node's path parameters): a node
        reads no file its cached result does not depend on."""
        keyed = self.files.get(path) if self.files is not None else None
        if isinstance(keyed, InputFileError):
            raise NodeError(str(keyed), self.node_id)
        if self.files is not None and keyed is None:
            raise NodeError(f"input {path!r} is not one of the node's path parameters, so its cache key "
                            "would not cover it (a bug in the node: declare the parameter as InPath)",
                            self.node_id)
        try:
            found = resolve_input(path, self.input_roots)
        except InputFileError as exc:
            raise NodeError(str(exc), self.node_id) from None
        if keyed is not None and found != keyed:
            raise NodeError(f"input {path!r} changed while the run started (it was {keyed}, now {found}); "
                            "run again", self.node_id)
        return found
