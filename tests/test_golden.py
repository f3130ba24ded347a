"""Every example recipe (made small) gives the pictures it gave before the last refactor.

The references were made by `python tests/golden/cases.py --write` before the code they
guard was restructured; a change meant to keep behaviour must keep them bit for bit. Float
rounding on the CPU depends on the thread count and the instruction set, so on a machine
unlike the one that made them the pictures are compared within a few 8-bit levels instead.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import cases  # noqa: E402

REFS = json.loads((Path(__file__).parent / "golden" / "refs.json").read_text())
LEVELS = np.load(Path(__file__).parent / "golden" / "refs.npz")
SAME_MACHINE = cases.environment() == REFS["environment"]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_example_makes_the_same_pictures(name):
    got = cases.run_case(name)
    expected = {k.split("/", 1)[1]: h for k, h in REFS["hashes"].items() if k.startswith(name + "/")}
    assert sorted(got) == sorted(expected), "the recipe's nodes made other outputs than before"
    for key, t in got.items():
        if SAME_MACHINE:
            assert cases.fingerprint(t) == expected[key], f"{name}: {key} differs from the reference"
        elif f"{name}/{key}" in LEVELS:
            diff = np.abs(cases.as_levels(t).astype(int) - LEVELS[f"{name}/{key}"].astype(int))
            assert diff.mean() < 8, f"{name}: {key} differs by {diff.mean():.2f} levels on average"
