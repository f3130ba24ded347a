"""Where a recipe comes from: a YAML file, a PNG that dreamnodes made, or the built-in default.

The command line, the editor and (later) the server open recipes the same way, through
`open_recipe`; every way it can fail is a UsageError that says what to give instead.
It only finds and reads the recipe: checking it against the node specs is `validate`'s job.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from dreamnodes.errors import Problem, RecipeError, UsageError
from dreamnodes.meta import RECIPE_KEY, NoRecipeInImage, read_embedded_text, recipe_from_png

from .recipe import Recipe, load_recipe, parse_recipe
from .yamlio import read_yaml

DEFAULT_RECIPE = "deepdream.yaml"
#: the files whose embedded recipe `open_recipe` reads (by name; the reader then checks the content)
MADE_FILES = (".png", ".gif", ".mp4")


def builtin_recipe_text(name: str = DEFAULT_RECIPE) -> str:
    """The text of a recipe shipped with the package (examples/NAME)."""
    return resources.files("dreamnodes.examples").joinpath(name).read_text("utf-8")


def open_recipe(source: str | None) -> Recipe:
    """A recipe from a YAML file, a PNG, GIF or MP4 made by dreamnodes, or (None) the built-in default."""
    if source is None:
        return parse_recipe(builtin_recipe_text(), f"<built-in {DEFAULT_RECIPE}>")
    path = Path(source)
    if not path.exists():
        raise UsageError(f"no such file: {source}")
    if path.is_dir():
        raise UsageError(f"{source} is a folder; give a recipe (.yaml) or a picture dreamnodes made (.png)")
    try:
        if path.suffix.lower() in MADE_FILES:
            try:
                text = recipe_from_png(path) if path.suffix.lower() == ".png" else _recipe_from_animation(path)
            except (NoRecipeInImage, ValueError) as exc:
                raise UsageError(str(exc)) from None
            return parse_recipe(text, str(path))
        return load_recipe(path)
    except OSError as exc:
        raise UsageError(f"{source} cannot be read: {exc.strerror or exc}") from None


def _recipe_from_animation(path: Path) -> str:
    """The recipe in the comment of a GIF or MP4 dreamnodes made (meta.read_embedded_text: read as data)."""
    text = read_embedded_text(path)
    if RECIPE_KEY not in text:
        raise NoRecipeInImage(f"{path} holds no dreamnodes recipe (it was not saved by dreamnodes, or its "
                              "metadata was stripped)")
    return text[RECIPE_KEY]


def parse_set(item: str, recipe: Recipe, what: str = "--set") -> tuple[str, str, Any] | Problem:
    """'node.param=value' (the value read as YAML: 256, true, [1, 2], text) -> (node, param, value), or
    the Problem that says what to change. The core of `--set` and of `run_recipe(set=...)`."""
    target, eq, raw = item.partition("=")
    if not eq:
        return Problem(f"{what} {item!r} must look like node.param=value")
    try:
        value, _, _ = read_yaml(raw, what)
    except RecipeError:
        value = raw
    return _override(target, value, recipe, what)


def _override(target: str, value: Any, recipe: Recipe, what: str) -> tuple[str, str, Any] | Problem:
    nid, dot, param = target.strip().partition(".")
    if not dot or not nid or not param:
        return Problem(f"{what} {target!r} must name node.param (e.g. photo.size)")
    if nid not in recipe.nodes:
        return Problem(f"{what} names node '{nid}', which is not in the recipe (nodes: {', '.join(recipe.nodes)})")
    return nid, param, value


def apply_overrides(recipe: Recipe, overrides: Any, what: str = "set") -> None:
    """Change parameters of `recipe`: {"photo.size": 256} (values as they are) or ["photo.size=256"]
    (values read as YAML, as `--set` reads them). Every problem at once, as a RecipeError; nothing is
    changed unless all of them apply. Validation then checks the values against the node specs."""
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, dict):
        parsed = [_override(str(k), v, recipe, what) for k, v in overrides.items()]
    elif isinstance(overrides, (list, tuple)) and all(isinstance(i, str) for i in overrides):
        parsed = [parse_set(i, recipe, what) for i in overrides]
    else:
        raise UsageError(f"{what} must be a dict {{'node.param': value}} or a list of 'node.param=value' "
                         f"strings, not {type(overrides).__name__}")
    problems = [p for p in parsed if isinstance(p, Problem)]
    if problems:
        raise RecipeError(problems)
    for nid, param, value in parsed:
        recipe.nodes[nid].params[param] = value
