"""Where a recipe comes from: a YAML file, a PNG that dreamnodes made, or the built-in default.

The command line, the editor and (later) the server open recipes the same way, through
`open_recipe`; every way it can fail is a UsageError that says what to give instead.
It only finds and reads the recipe: checking it against the node specs is `validate`'s job.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from dreamnodes.errors import UsageError
from dreamnodes.meta import NoRecipeInImage, recipe_from_png

from .recipe import Recipe, load_recipe, parse_recipe

DEFAULT_RECIPE = "deepdream.yaml"


def builtin_recipe_text(name: str = DEFAULT_RECIPE) -> str:
    """The text of a recipe shipped with the package (examples/NAME)."""
    return resources.files("dreamnodes.examples").joinpath(name).read_text("utf-8")


def open_recipe(source: str | None) -> Recipe:
    """A recipe from a YAML file, a PNG made by dreamnodes, or (None) the built-in default."""
    if source is None:
        return parse_recipe(builtin_recipe_text(), f"<built-in {DEFAULT_RECIPE}>")
    path = Path(source)
    if not path.exists():
        raise UsageError(f"no such file: {source}")
    if path.is_dir():
        raise UsageError(f"{source} is a folder; give a recipe (.yaml) or a picture dreamnodes made (.png)")
    try:
        if path.suffix.lower() == ".png":
            try:
                text = recipe_from_png(path)
            except (NoRecipeInImage, ValueError) as exc:
                raise UsageError(str(exc)) from None
            return parse_recipe(text, str(path))
        return load_recipe(path)
    except OSError as exc:
        raise UsageError(f"{source} cannot be read: {exc.strerror or exc}") from None
