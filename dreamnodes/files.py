"""Files a run reads and writes: bundled samples, the folders a recipe may read, content hashes,
atomic writes.

A recipe comes from a stranger, so every file it names is resolved here and nowhere else:
`sample:NAME` means a photo bundled with scikit-image; any other path is tried against the
allowed folders (the recipe's own first, then those allowed with `--allow-read`), links
resolved first, and refused when it leads outside them. `resolve_input` is the one answer to
"which file will this parameter read": the runtime keys a node by the contents of that file
(`file_identity`, samples included) and the node opens that same file, so an edited photo is a
new input however it is named. Writes go
through `atomic_write`: a reader sees the old file or the whole new one, never half.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

SAMPLE_PREFIX = "sample:"
SAMPLE_SUFFIXES = (".png", ".jpg")
HASHED_INPUT_BYTES = 256 * 1024**2  # input files up to this size are keyed by their contents


class InputFileError(ValueError):
    """A file a recipe names cannot be read: outside the allowed folders, missing, not a file."""


# ---------------------------------------------------------------- samples
def sample_name(path: str) -> str | None:
    """NAME for `sample:NAME`, else None."""
    return path[len(SAMPLE_PREFIX):] if path.startswith(SAMPLE_PREFIX) else None


def sample_folder() -> Path | None:
    """scikit-image's data folder, found without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder if folder.is_dir() else None


def sample_names() -> list[str]:
    folder = sample_folder()
    if folder is None:
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in SAMPLE_SUFFIXES)


def sample_file(name: str) -> Path:
    """The bundled photo `name`; an InputFileError lists the samples there are."""
    folder = sample_folder()
    match = [p for p in (folder.iterdir() if folder else []) if p.stem == name and p.suffix in SAMPLE_SUFFIXES]
    if not match:
        raise InputFileError(f"there is no sample photo '{name}'; samples: {', '.join(sample_names()) or 'none'} "
                             "(they come with scikit-image)")
    return match[0]


# ---------------------------------------------------------------- allowed folders
def input_candidates(path: str, input_roots: Iterable) -> tuple[list[Path], list[Path], list[Path]]:
    """(the files `path` may mean, those of them inside the allowed folders, the folders).

    A relative path is tried against every allowed folder; links are resolved first, so a
    link inside an allowed folder that leads elsewhere is outside. With no folders given,
    the current folder is the one allowed. A root that is a file (one typed on the command line,
    `--set photo.source=~/rocket.jpg`) allows that file alone, named by its absolute path.
    """
    if "\x00" in path:
        return [], [], []
    p = Path(os.path.expanduser(path))
    given = [Path(r).resolve() for r in input_roots]
    files = [r for r in given if _is_file(r)]
    roots = [r for r in given if r not in files] or [Path.cwd().resolve()]
    candidates = [p.resolve()] if p.is_absolute() else [(r / p).resolve() for r in roots]
    inside = [c for c in candidates if c in files or any(c == r or r in c.parents for r in roots)]
    return candidates, inside, roots + files


def _is_file(path: Path) -> bool:
    """Whether `path` is a file (False for a name the file system refuses, such as one too long)."""
    try:
        return path.is_file()
    except OSError:
        return False


def first_existing(candidates: list[Path]) -> Path | None:
    """The file a path means: the first of its allowed candidates that exists."""
    return next((c for c in candidates if c.exists()), None)


def outside_message(path: str, roots) -> str:
    return (f"input file {path!r} is outside the folders a recipe may read "
            f"({', '.join(map(str, roots))}); move it next to the recipe or allow its "
            "folder with --allow-read DIR")


def outside_problem(path: str, input_roots) -> str | None:
    """For validation: why `path` may not be read (outside every allowed folder), or None."""
    if sample_name(path) is not None:
        return None
    _, inside, roots = input_candidates(path, input_roots)
    return None if inside else outside_message(path, roots)


def resolve_input(path: str, input_roots) -> Path:
    """The file a recipe's `path` means: a sample, or a regular file inside the allowed folders.
    The one place that decides which file a path parameter reads (the cache key and the node both
    use its answer)."""
    name = sample_name(path)
    if name is not None:
        return sample_file(name)
    _, inside, roots = input_candidates(path, input_roots)
    found = first_existing(inside)
    if found is not None:
        if not found.is_file():  # a folder, a device, a pipe that would block the run forever
            raise InputFileError(f"input {path!r} is not a regular file")
        return found
    if not inside:
        raise InputFileError(outside_message(path, roots))
    raise InputFileError(f"input file {path!r} does not exist (looked in {', '.join(str(c.parent) for c in inside)})")


# ---------------------------------------------------------------- hashes
@lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, remembered while its modification time and size stay the same."""
    st = path.stat()
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


def identity(path: str, input_roots) -> Any:
    """What the file a recipe's `path` names is, for a cache key: `file_identity` of the file
    `resolve_input` finds (the very function `Context.input_path` opens it with), however it is
    named: a path or `sample:NAME` (a sample is keyed by its contents too, wherever the samples
    were found). A path that names no readable file is keyed "missing" (the node says what is
    wrong, so nothing is cached under it)."""
    try:
        return file_identity(resolve_input(path, input_roots))
    except InputFileError:
        return "missing"


def file_identity(found: Path) -> Any:
    """What a file is, for a cache key: the same `photo.png` in two folders is two pictures, and an
    edited file is a new one. Its SHA-256 (above HASHED_INPUT_BYTES, its resolved path, size and
    modification time); an unreadable file is keyed by its path, never matching a cached result."""
    try:
        st = found.stat()
        return sha256_of(found) if st.st_size <= HASHED_INPUT_BYTES else [str(found), st.st_size, st.st_mtime_ns]
    except OSError:
        return ["unreadable", str(found)]


# ---------------------------------------------------------------- bounded reads
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe (FIFO)"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


class FileTooLarge(InputFileError):
    """A file holds more bytes than it may (`size`, or None when it grew while read; `limit`)."""

    def __init__(self, message: str, size: int | None, limit: int):
        super().__init__(message)
        self.size, self.limit = size, limit


def _refusal(st: os.stat_result, shown: str, limit: int | None, what: str) -> InputFileError | None:
    if not stat.S_ISREG(st.st_mode):
        return InputFileError(f"{what} {shown} is {_not_regular(st.st_mode)}, not a regular file; give a file")
    if limit is not None and st.st_size > limit:
        return FileTooLarge(f"{what} {shown} is {st.st_size:,} bytes; it may be at most {limit:,}", st.st_size, limit)
    return None


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


def open_regular(path: str | os.PathLike, limit: int | None = None, what: str = "the file") -> BinaryIO:
    """`path` opened for reading, refused (InputFileError naming `what`) when it is not a regular file
    or holds more than `limit` bytes (a FileTooLarge). The type and size are checked before opening and again on the
    open file (fstat), which is opened non-blocking: a FIFO never blocks. OSError when it cannot be
    opened (missing, denied)."""
    shown = os.fspath(path)
    problem = _refusal(os.stat(shown), shown, limit, what)
    if problem:
        raise problem
    f = os.fdopen(os.open(shown, _READ_FLAGS | getattr(os, "O_CLOEXEC", 0)), "rb")
    problem = _refusal(os.fstat(f.fileno()), shown, limit, what)
    if problem:
        f.close()
        raise problem
    return f


def read_bounded(path: str | os.PathLike, limit: int, what: str = "the file") -> bytes:
    """The bytes of the regular file `path`, refused (InputFileError naming `what`) when it is not a
    regular file or holds more than `limit` bytes, before anything is read (see `open_regular`).

    At most `limit` + 1 bytes are ever read: a file that grows while it is read is refused too.
    OSError when it cannot be opened (missing, denied)."""
    with open_regular(path, limit, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{what} {os.fspath(path)} holds more than {limit:,} bytes (it grew while it "
                           f"was read); it may be at most {limit:,}", None, limit)
    return data


# ---------------------------------------------------------------- writes
@lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask (read by setting it, so once, and put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file next to `path` (`.NAME.PID.RANDOM.tmp`, made empty) for a writer that needs
    a name, such as another program (ffmpeg); renamed to `path` when the block ends, deleted when
    it raises (Ctrl-C too). Readers see the old file or the whole new one, and the temporary file
    is in `path`'s folder, never in the system's temporary folder: in a run that is the staging
    folder, which a killed run's successor deletes."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:  # mkstemp makes the file private (0600); a saved picture gets the mode any new file would
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:  # a file system without modes
        pass
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
