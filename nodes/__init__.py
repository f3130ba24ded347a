"""The built-in node families, one module each; importing registers them."""
from . import image, model, render, transform  # noqa: F401
