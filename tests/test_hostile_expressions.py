"""Hostile expressions: latent.arithmetic's parser is bounded in length and nesting, so an
expression from a stranger's recipe is a message, never a RecursionError or a flood of text."""
from __future__ import annotations

import pytest
from hostile import Case, check_case

from dreamnodes.errors import NodeError

pytestmark = pytest.mark.slow  # loads the packaged DCGAN generator (small, offline)


def _recipe(expression: str):
    def make(box):
        text = ("dreamnodes: 1\nnodes:\n  gen: {type: gan.load}\n"
                "  z: {type: latent.sample, inputs: {generator: gen}, params: {count: 2}}\n"
                "  mix: {type: latent.arithmetic, inputs: {a: z, b: z}, params: {expression: '"
                + expression + "'}}\n"
                "  pic: {type: gan.generate, inputs: {generator: gen, latents: mix}}\n"
                "  out: {type: image.save, inputs: {image: pic}, params: {path: out.png}}\n")
        return box.write("expr.yaml", text)
    return make


DEEP = ("nested deeper than 40 levels", "write it flatter")
LONG = ("more than 400 names, numbers and operators", "write it shorter")

CASES = [
    Case("expression_deep_parentheses", _recipe("(" * 5000 + "a" + ")" * 5000), NodeError, LONG),
    Case("expression_parentheses_just_too_deep", _recipe("(" * 41 + "a" + ")" * 41), NodeError, DEEP),
    Case("expression_signs_too_deep", _recipe("-" * 100 + "a"), NodeError, DEEP),
    Case("expression_long_chain", _recipe(" + ".join(["a"] * 5000)), NodeError, LONG),
    Case("expression_deep_but_allowed", _recipe("(" * 40 + "a - b" + ")" * 40), None, writes=("out.png",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_expression(case, sandbox, capsys):
    err = check_case(case, sandbox, capsys)
    assert len(err) < 600, err  # the expression is shown cut short, not whole
