"""The result cache: in memory within a process, on disk across processes.

A result is stored under its node's cache key (see `executor.cache_key`).
Every result is kept in memory (bounded, least recently used first out);
results whose outputs are all disk-cacheable socket types (images, latents,
frames) are also written to disk, so another process, or tomorrow's run,
skips the work.

On disk an entry is `MAGIC + sha256(payload) + payload`, where the payload
is a `torch.save` of plain tensors, read back with `weights_only=True` (a
cache folder is never a way to run code). Entries are written to a
temporary file and renamed into place, so a crash leaves no half-written
entry and two processes can share the folder; an entry whose checksum does
not match is deleted and recomputed, never returned. The folder is kept
under a size bound by deleting the least recently used entries.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from dreamnodes.types import SOCKET_TYPES, Socket

MAGIC = b"DNC1"
DEFAULT_MAX_BYTES = 4 * 1024**3
_DISK_TYPES = {t.__name__: t for t in SOCKET_TYPES if t.disk_cacheable}


def default_cache_dir() -> Path:
    env = os.environ.get("DREAMNODES_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dreamnodes"))


def disk_cache_disabled_by_env() -> bool:
    return os.environ.get("DREAMNODES_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")


class Cache:
    """Memory + disk cache of node results, keyed by hex strings."""

    def __init__(self, folder: Path | str | None = None, *, disk: bool = True,
                 max_bytes: int | None = None, memory_items: int = 256):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.disk = disk
        env_max = os.environ.get("DREAMNODES_CACHE_MAX_MB")
        self.max_bytes = max_bytes if max_bytes is not None else (
            int(env_max) * 1024**2 if env_max else DEFAULT_MAX_BYTES)
        self.memory: OrderedDict[str, tuple] = OrderedDict()
        self.memory_items = memory_items
        self.corrupt_dropped = 0

    # memory -------------------------------------------------------------
    def get_memory(self, key: str) -> tuple | None:
        hit = self.memory.get(key)
        if hit is not None:
            self.memory.move_to_end(key)
        return hit

    def put_memory(self, key: str, outputs: tuple) -> None:
        self.memory[key] = outputs
        self.memory.move_to_end(key)
        while len(self.memory) > self.memory_items:
            self.memory.popitem(last=False)

    def clear_memory(self) -> None:
        self.memory.clear()

    # disk ---------------------------------------------------------------
    @staticmethod
    def storable(outputs: tuple) -> bool:
        return bool(outputs) and all(isinstance(o, Socket) and type(o).__name__ in _DISK_TYPES
                                     and type(o) is _DISK_TYPES[type(o).__name__] for o in outputs)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.dnc"

    def get_disk(self, key: str) -> tuple | None:
        if not self.disk:
            return None
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None
        payload = blob[len(MAGIC) + 32:]
        if blob[:len(MAGIC)] != MAGIC or hashlib.sha256(payload).digest() != blob[len(MAGIC):len(MAGIC) + 32]:
            self._drop(path)
            return None
        try:
            data = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
            outputs = tuple(_DISK_TYPES[t].from_state(s) for t, s in zip(data["types"], data["states"]))
        except Exception:  # a checksum-valid entry from an incompatible version
            self._drop(path)
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return outputs

    def _drop(self, path: Path) -> None:
        self.corrupt_dropped += 1
        try:
            path.unlink()
        except OSError:
            pass

    def put_disk(self, key: str, outputs: tuple) -> bool:
        if not self.disk or not self.storable(outputs):
            return False
        buf = io.BytesIO()
        torch.save({"types": [type(o).__name__ for o in outputs],
                    "states": [{k: (v.detach().cpu().contiguous() if isinstance(v, torch.Tensor) else v)
                                for k, v in o.to_state().items()} for o in outputs]}, buf)
        payload = buf.getvalue()
        if len(payload) > self.max_bytes:
            return False
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, MAGIC + hashlib.sha256(payload).digest() + payload)
        self._evict()
        return True

    def _evict(self) -> None:
        entries = []
        for p in self.folder.glob("*/*.dnc"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(e[1] for e in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                p.unlink()
                total -= size
            except OSError:
                pass


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
