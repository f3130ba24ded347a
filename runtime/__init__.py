"""Executing recipes: the networkx scheduler, the cache, device policy,
events and the `dreamnodes` command line. No Qt here.
"""
from .cache import Cache
from .executor import RunResult, Runner

__all__ = ["Cache", "Runner", "RunResult", "run_recipe"]


def run_recipe(path, **kwargs) -> RunResult:
    """Load and run a recipe file: `run_recipe("examples/deepdream.yaml", out_dir="out")`."""
    from dreamnodes.graphs import load_recipe

    run_kwargs = {k: kwargs.pop(k) for k in ("only", "seed") if k in kwargs}
    return Runner(**kwargs).run(load_recipe(path), **run_kwargs)
