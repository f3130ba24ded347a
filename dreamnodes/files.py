"""Files a run reads and writes: bundled samples, the folders a recipe may read, content hashes,
atomic writes.

A recipe comes from a stranger, so every file it names is resolved here and nowhere else:
`sample:NAME` means a photo bundled with scikit-image; any other path is tried against the
allowed folders (the recipe's own first, then those allowed with `--allow-read`), links
resolved first, and refused when it leads outside them. The cache keys a node by the
contents of the files it reads (`identity`), so an edited photo is a new input. Writes go
through `atomic_write`: a reader sees the old file or the whole new one, never half.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

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
    the current folder is the one allowed.
    """
    if "\x00" in path:
        return [], [], []
    p = Path(os.path.expanduser(path))
    roots = [Path(r).resolve() for r in input_roots] or [Path.cwd().resolve()]
    candidates = [p.resolve()] if p.is_absolute() else [(r / p).resolve() for r in roots]
    inside = [c for c in candidates if any(c == r or r in c.parents for r in roots)]
    return candidates, inside, roots


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
    """The file a recipe's `path` means: a sample, or a regular file inside the allowed folders."""
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
    """What the file a recipe's `path` names is, for a cache key.

    The same `photo.png` in two folders is two pictures, and an edited file is a new one: the
    identity is the file's SHA-256 (above HASHED_INPUT_BYTES, its resolved path, size and
    modification time), found as `resolve_input` finds it. A missing or unreadable file is keyed
    so that it can never match a cached result (the node itself says what is wrong). Bundled
    samples are keyed by name.
    """
    if sample_name(path) is not None:
        return None
    found = first_existing(input_candidates(path, input_roots)[1])
    if found is None or not found.is_file():
        return "missing"
    try:
        st = found.stat()
        return sha256_of(found) if st.st_size <= HASHED_INPUT_BYTES else [str(found), st.st_size, st.st_mtime_ns]
    except OSError:
        return ["unreadable", str(found)]


# ---------------------------------------------------------------- writes
def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
