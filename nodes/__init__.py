"""The built-in node families, one module each; importing registers them."""
from . import grid, image, model, objective, optimize, param, prior, render, transform, gan, latent, video, zoom  # noqa: F401
