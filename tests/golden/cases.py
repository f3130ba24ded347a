"""Every example recipe, made small, and the pictures it made before a refactor.

`python tests/golden/cases.py --write` runs each example of examples/ with the
overrides below (small pictures, few steps, the same code paths: octaves, tiles,
guides, frames, latents) and stores every picture, frame and latent the nodes
produced, as 8-bit pixels plus a hash of the exact float values, in
tests/golden/refs.npz and refs.json. tests/test_golden.py re-runs them and
compares: a change that should not alter behaviour must leave them identical.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
EXAMPLES = HERE.parent.parent / "examples"

#: example -> (recipe file, overrides); several cases may share a recipe
CASES: dict[str, tuple[str, dict[str, object]]] = {
    "deepdream": ("deepdream.yaml", {"photo.size": 96, "dream.octaves": 2, "dream.steps": 3}),
    "guided": ("guided.yaml", {"photo.size": 96, "guide.size": 64, "dream.octaves": 2, "dream.steps": 3}),
    "big_print": ("big_print.yaml", {"photo.width": 192, "photo.height": 160, "dream.octaves": 2,
                                     "dream.steps": 2, "dream.tile": 64, "dream.tile_overlap": 32}),
    "class_vis": ("class_vis.yaml", {"vis.steps": 6, "vis.width": 64, "vis.height": 64}),
    "class_vis_tiled": ("class_vis.yaml", {"vis.steps": 3, "vis.width": 128, "vis.height": 96, "vis.tile": 64,
                                           "vis.tile_overlap": 32}),
    "channel_atlas": ("channel_atlas.yaml", {"channels.count": 4, "vis.batch": 4, "vis.steps": 4,
                                             "vis.width": 48, "vis.height": 48, "sheet.labels": ["0", "1", "2", "3"]}),
    "split_targets": ("split_targets.yaml", {"vis.steps": 4, "vis.width": 64, "vis.height": 64}),
    "student_t": ("student_t.yaml", {"vis.steps": 8, "vis.width": 64, "vis.height": 64}),
    "dgn_sunglasses": ("dgn_sunglasses.yaml", {"start_z.count": 2, "dgn.batch": 2, "dgn.steps": 4,
                                               "dgn.frames_every": 2, "dgn.width": 64, "dgn.height": 64}),
    "face_arithmetic": ("face_arithmetic.yaml", {}),
    "filter_dropout": ("filter_dropout.yaml", {}),
    "latent_walk": ("latent_walk.yaml", {"walk.frames": 6}),
    "infinite_zoom": ("infinite_zoom.yaml", {"photo.width": 96, "photo.height": 64, "zoom.frames": 3,
                                             "zoom.steps": 2, "zoom.between": 2}),
    "video_dream": ("video_dream.yaml", {"clip.frames": 3, "clip.size": 64, "dream.steps": 2}),
}


def _cpu_model() -> str:
    """The processor's name (kernels of the same instruction set still round differently on
    another maker's or generation's chip)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def environment() -> dict:
    """What decides the float rounding of a run on the CPU."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": torch.backends.cpu.get_cpu_capability(), "cpu_model": _cpu_model()}


def run_case(name: str) -> dict[str, torch.Tensor]:
    """{node.output: tensor} of every picture, frame stack and latent the case's nodes made."""
    from dreamnodes.graphs.recipe import load_recipe
    from dreamnodes.runtime.executor import Runner
    from dreamnodes.types import Frames, Image, Latent

    file, sets = CASES[name]
    recipe = load_recipe(EXAMPLES / file)
    for target, value in sets.items():
        nid, param = target.split(".", 1)
        recipe.nodes[nid].params[param] = value
    with tempfile.TemporaryDirectory() as out:
        result = Runner(use_cache=False, device="cpu", out_dir=out).run(recipe)
    tensors = {}
    for nid, outs in result.outputs.items():
        for oname, v in outs.items():
            if isinstance(v, (Image, Frames)):
                tensors[f"{nid}.{oname}"] = v.pixels
            elif isinstance(v, Latent):
                tensors[f"{nid}.{oname}"] = v.z
    return tensors


def fingerprint(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()[:16]


def as_levels(t: torch.Tensor) -> np.ndarray:
    return (t.detach().to(torch.float32).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def write() -> None:
    arrays, meta = {}, {"environment": environment(), "hashes": {}}
    for name in CASES:
        for key, t in run_case(name).items():
            meta["hashes"][f"{name}/{key}"] = fingerprint(t)
            if key.endswith((".image", ".frames")) or t.dim() == 4 and t.shape[1] == 3:
                arrays[f"{name}/{key}"] = as_levels(t)
        print(name, "done", file=sys.stderr)
    np.savez_compressed(HERE / "refs.npz", **arrays)
    (HERE / "refs.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/golden/cases.py --write   (remakes the reference pictures)")
    write()
