"""The built-in node families, one module each; importing registers them."""
from . import grid, image, model, objective, optimize, param, prior, render, transform  # noqa: F401
