"""The built-in node families: one module per family (`image.py` holds the `image.*` nodes).

The registry imports every module here whose name does not start with `_`, so a new
family is one new file. `kernel/` holds the machinery the render nodes share (the step
loop, tiles, memory estimates, frame loops); it defines no nodes.
"""
