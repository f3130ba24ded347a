"""Executing recipes: the networkx scheduler, the cache, device policy,
events and the `dreamnodes` command line. No Qt here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cache import Cache
    from .executor import RunResult, Runner

__all__ = ["Cache", "Runner", "RunResult", "run_recipe"]


def __getattr__(name: str):
    """Cache, Runner and RunResult, imported when first asked for: the command line imports this
    package for commands that never run a recipe, and the executor brings torch (about 2.5 s)."""
    if name == "Cache":
        from .cache import Cache

        return Cache
    if name in ("Runner", "RunResult"):
        from . import executor

        return getattr(executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_recipe(path, set=None, **kwargs) -> RunResult:  # noqa: A002 (`set`, as the command line's --set)
    """Load and run a recipe: `run_recipe("examples/deepdream.yaml", out_dir="out")`. `path`: a recipe
    file, or a PNG, GIF or MP4 dreamnodes made (its embedded recipe). `set` overrides parameters, as
    `--set` does: `set={"photo.size": 256}` or `set=["photo.size=256"]`. The other keywords go to
    `Runner` (out_dir, device, use_cache, listeners, input_roots, ...) and `Runner.run` (only, seed)."""
    from dreamnodes.graphs.sources import apply_overrides, open_recipe

    from .executor import Runner

    recipe = open_recipe(str(path))
    if set is not None:
        apply_overrides(recipe, set)
    run_kwargs = {k: kwargs.pop(k) for k in ("only", "seed") if k in kwargs}
    return Runner(**kwargs).run(recipe, **run_kwargs)
