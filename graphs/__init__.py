"""The recipe format: YAML load/save, the recipe model, validation, migration.

A recipe is data, never code: it is read with a safe YAML loader under size
and nesting bounds, and everything in it is checked against the node specs
before anything runs. This package knows nothing of execution.
"""
from .recipe import Recipe, RecipeNode, Ref, SCHEMA_VERSION, dump_recipe, load_recipe, parse_recipe
from .validate import validate

__all__ = ["Recipe", "RecipeNode", "Ref", "SCHEMA_VERSION", "dump_recipe", "load_recipe", "parse_recipe", "validate"]
