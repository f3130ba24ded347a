"""Schema versions of the recipe format and the steps between them.

A recipe states its version in the top-level key `dreamnodes`. Older
versions are upgraded in memory by the steps in `MIGRATIONS` (version n ->
n + 1), so recipes shared years ago keep running; saving writes the current
version.

A migration only rewrites the mapping; it checks nothing (that is done after,
by `recipe` and `validate`, on the upgraded data).
"""
from __future__ import annotations

from typing import Any, Callable

SCHEMA_VERSION = 1

#: MIGRATIONS[n] turns a version-n recipe mapping into a version n+1 one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate(data: dict[str, Any], version: int) -> dict[str, Any]:
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ValueError(f"no migration from schema version {version}")
        data = step(dict(data))
        version += 1
        data["dreamnodes"] = version
    return data
