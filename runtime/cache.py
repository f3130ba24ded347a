"""The result cache: in memory within a process, on disk across processes.

A result is stored under its node's cache key (see `executor.cache_key`).
Every result is kept in memory (bounded, least recently used first out);
results whose outputs are all disk-cacheable socket types (images, latents,
frames) are also written to disk, so another process, or tomorrow's run,
skips the work.

On disk an entry is `MAGIC + len(key) + key + sha256(MAGIC, key, payload) +
payload`, where the payload is a `torch.save` of plain tensors, read back
with `weights_only=True` (a cache folder is never a way to run code). An
entry proves which key it belongs to: one whose key is not the one asked
for (a valid entry copied over another key's file), whose checksum does
not match, or of an older format is a miss, deleted and recomputed, never
returned. An entry is read only when it is a regular file (not a link, a
FIFO, a device) no larger than the folder's size bound, opened without
blocking and read with that bound (`dreamnodes.files.read_bounded`).
Entries are written to a temporary file and renamed into place, so a crash
leaves no half-written entry and two processes can share the folder. The
folder is kept under a size bound by deleting the least recently used
entries.

A process killed while writing leaves a temporary file (`.KEY.dnc.PID.*.tmp`)
that no reader ever opens (readers only open `KEY.dnc`); the next process that
uses the folder deletes the temporary files of writers that are no longer
running (and any older than a day, for folders shared between machines).
Failing to write the cache (a full disk, a read-only folder) is never fatal:
the run goes on without it.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import stat
import struct
import time
import warnings
from collections import OrderedDict
from pathlib import Path

from dreamnodes.errors import UsageError
from dreamnodes.files import InputFileError, atomic_write, read_bounded
from dreamnodes.lazy import torch
from dreamnodes.settings import setting
from dreamnodes.types import SOCKET_TYPES, Socket

MAGIC = b"DNC2"  # DNC1 entries (no key inside) are misses
DEFAULT_MAX_BYTES = 4 * 1024**3
_DISK_TYPES = {t.__name__: t for t in SOCKET_TYPES if t.disk_cacheable}
_KEY_LEN = struct.Struct(">H")


def _head(key: str) -> bytes:
    k = key.encode("utf-8")
    return MAGIC + _KEY_LEN.pack(len(k)) + k


def _digest(head: bytes, payload: bytes | memoryview) -> bytes:
    h = hashlib.sha256(head)
    h.update(payload)
    return h.digest()


def pack_entry(key: str, payload: bytes) -> bytes:
    """An entry on disk: it names its key, and its checksum covers the key and the payload."""
    head = _head(key)
    return head + _digest(head, payload) + payload


def unpack_entry(blob: bytes, key: str) -> bytes | None:
    """The payload of an entry that proves it belongs to `key`; None for anything else (another
    key's entry, a damaged one, an older format)."""
    head = _head(key)
    if not blob.startswith(head) or len(blob) < len(head) + 32:
        return None
    view = memoryview(blob)
    if _digest(head, view[len(head) + 32:]) != blob[len(head):len(head) + 32]:
        return None
    return blob[len(head) + 32:]


def default_cache_dir() -> Path:
    env = os.environ.get("DREAMNODES_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dreamnodes"))


def disk_cache_disabled_by_env() -> bool:
    return bool(setting("DREAMNODES_NO_CACHE"))


class Cache:
    """Memory + disk cache of node results, keyed by hex strings."""

    def __init__(self, folder: Path | str | None = None, *, disk: bool = True,
                 max_bytes: int | None = None, memory_items: int = 256):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.disk = disk
        self.max_bytes = max_bytes if max_bytes is not None else _env_max_bytes()
        self.memory: OrderedDict[str, tuple] = OrderedDict()
        self.memory_items = memory_items
        self.corrupt_dropped = 0
        self._swept = False

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
        self._sweep_once()
        path = self._path(key)
        blob = self._read(path)
        if blob is None:
            return None
        payload = unpack_entry(blob, key)
        if payload is None:  # damaged, older, or another key's entry under this key's name
            self._drop(path)
            return None
        try:
            with warnings.catch_warnings():  # torch's notes about odd pickles: the entry is dropped anyway
                warnings.simplefilter("ignore")
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

    def _read(self, path: Path, drop: bool = True) -> bytes | None:
        """An entry's bytes: read only from a regular file (lstat: a link is not followed) no larger
        than the size bound, opened without blocking and read with that bound. None for anything
        else (with `drop`, deleted: a link, a FIFO, a device, a file too large), so nothing put in an
        entry's place blocks a run or fills the memory."""
        try:
            st = path.lstat()
        except OSError:  # missing, unreadable, or the folder is not a folder
            return None
        if stat.S_ISREG(st.st_mode) and st.st_size <= self.max_bytes:
            try:
                return read_bounded(path, self.max_bytes, "the cache entry")
            except (OSError, InputFileError):  # replaced meanwhile, or unreadable
                return None
        if drop and not stat.S_ISDIR(st.st_mode):
            self._drop(path)
        return None

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
        blob = pack_entry(key, buf.getvalue())
        if len(blob) > self.max_bytes:  # an entry is never larger than the bound it is read with
            return False
        self._sweep_once()
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, blob)
        except OSError as exc:  # the cache is an optimisation: a run never fails because of it
            warnings.warn(f"the disk cache {self.folder} cannot be written ({exc}); going on without it",
                          stacklevel=2)
            self.disk = False
            return False
        self._evict()
        return True

    def _sweep_once(self) -> None:
        if not self._swept:
            self._swept = True
            sweep_stale_temp(self.folder)

    def verify(self) -> list[Path]:
        """The entries on disk that do not prove they belong to the key they are named after: a bad
        checksum, another key's entry, an older format, or no regular file of bounded size."""
        bad = []
        for p in sorted(self.folder.glob("*/*.dnc")):
            blob = self._read(p, drop=False)
            if (blob is None or unpack_entry(blob, p.stem) is None) and (p.exists() or p.is_symlink()):
                bad.append(p)
        return bad

    def _evict(self) -> None:
        entries = []
        for p in self.folder.glob("*/*.dnc"):
            try:
                st = p.lstat()
            except OSError:
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


def _env_max_bytes() -> int:
    """DREAMNODES_CACHE_MAX_MB: the disk cache's size bound, in megabytes (a finite number >= 0)."""
    env = os.environ.get("DREAMNODES_CACHE_MAX_MB", "").strip()
    if not env:
        return DEFAULT_MAX_BYTES
    try:
        mb = float(env)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and mb >= 0):  # inf, 1e400, nan, -1, abc
        raise UsageError(f"DREAMNODES_CACHE_MAX_MB must be a number of megabytes (finite, >= 0: the disk "
                         f"cache's size bound), got {env!r}; set it like DREAMNODES_CACHE_MAX_MB=4096, or unset "
                         f"it for the default of {DEFAULT_MAX_BYTES // 1024**2}")
    return int(mb * 1024**2)


TEMP_STALE_SECONDS = 24 * 3600


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # elsewhere os.kill(pid, 0) is not a question: rely on age
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid we can ask about): leave it alone
    return True


def _stale(path: Path, pid_text: str) -> bool:
    """A temporary file or folder is stale when its writer is gone (or it is very old)."""
    try:
        if time.time() - path.lstat().st_mtime > TEMP_STALE_SECONDS:
            return True
    except OSError:
        return False
    return pid_text.isdigit() and not _pid_alive(int(pid_text))


def sweep_stale_temp(folder: Path) -> int:
    """Delete the temporary files killed writers left in a cache folder; return how many."""
    n = 0
    for p in Path(folder).glob("*/.*.tmp"):
        # .KEY.dnc.PID.RANDOM.tmp
        parts = p.name.split(".")
        if len(parts) >= 5 and _stale(p, parts[-3]):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


def sweep_stale_staging(out_dir: Path, prefix: str) -> int:
    """Delete the staging folders killed runs left in an output folder (`PREFIX PID-RANDOM`)."""
    n = 0
    try:
        entries = list(Path(out_dir).iterdir())
    except OSError:
        return 0
    for p in entries:
        if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink():
            if _stale(p, p.name[len(prefix):].split("-", 1)[0]):
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n
