"""Checkpoints: values a node saves while it runs, so an interrupted run resumes.

A long node (a zoom of a hundred dreamed frames) saves each piece of work as
it finishes through `ctx.checkpoint(name, value)`; the runtime stores it in
the result cache under a key derived from the node's own cache key and the
name. If the run is cancelled or killed, the next run of the same node with
the same inputs and parameters (hence the same cache key) finds the pieces
with `ctx.restore(name)` and continues from the last one. Any change to the
node's inputs or parameters changes the key, so stale pieces are never used.
Values are socket values the disk cache can hold (Image, Frames, Latent).
On disk a piece is a cache entry like any other: it holds its own key under
its checksum, so another node's piece, or another piece of this node, copied
in its place is a miss (the piece is computed again), and it is read as
entries are (a regular file of bounded size, never blocking), so nothing put
in its place stalls a resumed run.
"""
from __future__ import annotations

import hashlib
from typing import Any

from .cache import Cache


class NodeCheckpoints:
    """The checkpoint store of one node run, keyed by its cache key."""

    def __init__(self, cache: Cache, node_key: str):
        self.cache = cache
        self.node_key = node_key

    def _key(self, name: str) -> str:
        return hashlib.sha256(f"{self.node_key}:checkpoint:{name}".encode()).hexdigest()

    def put(self, name: str, value: Any) -> None:
        # on disk when the disk cache is on (so a killed process resumes too, and hundreds of frames
        # do not push the models out of the in-memory cache); else in memory, for this process
        key = self._key(name)
        if not (self.cache.disk and self.cache.put_disk(key, (value,))):
            self.cache.put_memory(key, (value,))

    def get(self, name: str) -> Any:
        key = self._key(name)
        hit = self.cache.get_memory(key) or self.cache.get_disk(key)
        return hit[0] if hit else None
