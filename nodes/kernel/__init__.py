"""The machinery the render nodes share; it defines no nodes.

- `steps`: the transform pipeline (stages scheduled once), the objective's gradient (a
  picture rendered whole is one tile), the named seed salts, the DeepDream octave loop;
- `tiles`: the tile grid and the positional-objective rule;
- `memory`: what a render needs, measured and estimated before it runs;
- `frames`: the checkpointed frame loop of zooms and videos, and the camera motion;
- `guide`: scoring features against a guide picture's;
- `masks`: boxes and regions as per-cell coverage;
- `hooks`: module output shapes and captured activations.
"""
