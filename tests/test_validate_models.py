"""`validate` knows the model (issue 14, points 4 and 8).

Validation catches, before any weights load, what a run would refuse seconds in: a layer path
the model has not, a channel past a layer's width, a misspelt class name, a missing input file;
all at once, each at its line and field. The facts of a model come from its architecture alone
(built on the meta device), kept in the catalogue folder, so a second `validate` imports no torch.
`dreamnodes layers` lists an architecture the same way: no weights, so none downloaded.

googlenet's weights are not on this machine (DREAMNODES_OFFLINE is set by conftest): a check
on it that passes shows that nothing tried to load them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dreamnodes import catalog
from dreamnodes.errors import RecipeError
from dreamnodes.graphs import load_recipe, validate
from dreamnodes.registry import load_all
from dreamnodes.runtime.cli import main

ROOT = Path(__file__).resolve().parent.parent


def recipe(tmp_path: Path, nodes: str):
    text = "dreamnodes: 1\nnodes:\n" + textwrap.indent(textwrap.dedent(nodes).strip("\n"), "  ") + "\n"
    (tmp_path / "r.yaml").write_text(text)
    return load_recipe(tmp_path / "r.yaml"), text.splitlines()


def problems(tmp_path: Path, nodes: str) -> list:
    r, _ = recipe(tmp_path, nodes)
    with pytest.raises(RecipeError) as info:
        validate(r, load_all(), input_roots=(tmp_path,), facts_folder=tmp_path / "catalog")
    return info.value.problems


def line(lines: list[str], needle: str) -> int:
    return next(i for i, text in enumerate(lines, 1) if needle in text)


EVERYTHING = """
net: {type: model.load, params: {arch: mobilenet_v2, weights: IMAGENET1K_V1}}
deep:
  type: model.layer
  inputs: {model: net}
  params: {path: features.100}
wide:
  type: objective.channel
  inputs: {model: net}
  params: {path: features.12.conv.0, channel: 5000}
frog:
  type: objective.class_logit
  inputs: {model: net}
  params: {label: tree frgo}
photo:
  type: image.load
  params: {source: rocket.jpg}
"""


def test_every_model_mistake_and_a_missing_file_are_reported_at_once(tmp_path):
    found = problems(tmp_path, EVERYTHING)
    _, lines = recipe(tmp_path, EVERYTHING)
    by_node = {p.node: p for p in found}
    assert sorted(by_node) == ["deep", "frog", "photo", "wide"], [str(p) for p in found]
    assert by_node["deep"].field == "path" and by_node["deep"].line == line(lines, "features.100")
    assert "no layer 'features.100'" in by_node["deep"].message and "dreamnodes layers mobilenet_v2" in \
        by_node["deep"].message
    assert by_node["wide"].field == "channel" and "576 channels" in by_node["wide"].message
    assert by_node["frog"].field == "label" and "Did you mean 'tree frog'?" in by_node["frog"].message
    assert by_node["photo"].field == "source" and "'rocket.jpg' does not exist" in by_node["photo"].message


def test_the_command_line_says_it_too_and_the_second_time_without_torch(tmp_path):
    (tmp_path / "bad.yaml").write_text("dreamnodes: 1\nnodes:\n" + textwrap.indent(EVERYTHING.strip(), "  "))
    code = ("import sys, json; from dreamnodes.runtime.cli import main; rc = main(['validate', sys.argv[1]]); "
            "print(json.dumps([rc, 'torch' in sys.modules]))")
    env = dict(os.environ, DREAMNODES_CACHE_DIR=str(tmp_path / "cache"), DREAMNODES_OFFLINE="1")
    runs = [subprocess.run([sys.executable, "-c", code, str(tmp_path / "bad.yaml")], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120) for _ in range(2)]
    for run in runs:
        assert "4 problems" in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert "Did you mean 'features.10'?" in run.stderr and "576 channels" in run.stderr
    assert json.loads(runs[1].stdout.splitlines()[-1]) == [2, False]  # exit 2, and no torch imported


def test_layers_and_channels_of_an_architecture_whose_weights_are_not_here(tmp_path):
    found = problems(tmp_path, """
        net: {type: model.load, params: {arch: googlenet, weights: IMAGENET1K_V1}}
        a: {type: objective.channel, inputs: {model: net}}
        b: {type: objective.channels, inputs: {model: net}, params: {path: inception5b, first: 1020}}
        c: {type: model.layer, inputs: {model: net}, params: {path: inception4c, channel: 511}}
        d: {type: objective.class_map, inputs: {model: net}, params: {labels: [goldfish, flamingoo]}}
        e: {type: objective.neuron, inputs: {model: net}, params: {path: inception4c, channel: 512}}
        """)
    by_node = {p.node: p for p in found}
    assert sorted(by_node) == ["a", "b", "d", "e"], [str(p) for p in found]
    assert "googlenet has no layer 'features.12.conv.0' (the default)" in by_node["a"].message
    assert by_node["b"].field == "first" and "1024 channels" in by_node["b"].message and "1024, 1025" in \
        by_node["b"].message
    assert by_node["d"].field == "labels" and "'flamingoo' is not a class of googlenet" in by_node["d"].message
    assert by_node["e"].field == "channel" and "512 channels (0 to 511)" in by_node["e"].message


def test_names_of_architectures_and_weights_and_targets_without_class_names(tmp_path):
    found = problems(tmp_path, """
        a: {type: model.load, params: {arch: mobilenet_v3}}
        b: {type: model.load, params: {arch: googlenet, weights: IMAGENET}}
        c: {type: model.load, params: {arch: mobilenet_v2, weights: none}}
        d: {type: objective.class_logit, inputs: {model: c}, params: {label: goldfish}}
        e: {type: objective.class_logit, inputs: {model: c}, params: {class_index: 1000}}
        f: {type: objective.guide, inputs: {model: c, guide: g}, params: {path: logits}}
        g: {type: image.solid}
        h: {type: objective.class_logit, inputs: {model: c}}
        i: {type: model.layer, inputs: {model: c}, params: {x: 3}}
        """)
    by_node = {p.node: p for p in found}
    assert sorted(by_node) == ["a", "b", "d", "e", "f", "h", "i"], [str(p) for p in found]
    assert "give a class target" in by_node["h"].message and by_node["i"].field == "y"
    assert by_node["a"].field == "arch" and "mobilenet_v3_large" in by_node["a"].message
    assert by_node["b"].field == "weights" and "IMAGENET1K_V1" in by_node["b"].message
    assert "no class names; give class_index" in by_node["d"].message
    assert by_node["e"].field == "class_index" and "1000 classes" in by_node["e"].message
    assert by_node["f"].field == "path" and "not the logits" in by_node["f"].message


def test_what_cannot_be_known_is_left_to_the_run_and_good_recipes_pass(tmp_path):
    (tmp_path / "mine.pth").write_bytes(b"not read by validation")
    r, _ = recipe(tmp_path, """
        net: {type: model.load, params: {arch: resnet18, checkpoint: mine.pth}}
        a: {type: objective.channel, inputs: {model: net}, params: {path: scripted.anything, channel: 9999}}
        """)
    assert "a" in validate(r, load_all(), input_roots=(tmp_path,), facts_folder=None)
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        assert main(["validate", str(example)]) == 0, example


def test_a_run_is_refused_before_anything_loads(tmp_path):
    from dreamnodes.runtime.executor import Runner

    r, _ = recipe(tmp_path, """
        net: {type: model.load, params: {arch: googlenet}}
        a: {type: objective.channel, inputs: {model: net}, params: {path: inception4c, channel: 600}}
        """)
    with pytest.raises(RecipeError, match="512 channels"):  # not the NodeError of weights not on this machine
        Runner(out_dir=tmp_path / "out").run(r)


def test_the_catalogue_keeps_the_check_hook_by_name():
    registry = load_all()
    back = catalog.decode(json.loads(json.dumps(catalog.encode(registry))))
    assert catalog.encode(registry)["specs"][0].get("check", "absent") != "absent"
    hooked = sorted(n for n, s in registry.items() if s.check is not None)
    assert {"model.load", "model.layer", "objective.channel", "objective.class_logit"} <= set(hooked)
    assert all(back[n].check == registry[n].check for n in hooked)
    assert back["model.layer"].check.__module__ == "dreamnodes.nodes._facts"


def test_a_check_hook_must_be_a_module_function():
    from dreamnodes.spec import SpecError, build_spec
    from dreamnodes.types import Image

    def solid(width: int = 4) -> Image:
        """A doc."""

    with pytest.raises(SpecError, match="check must be a function defined at the top of a module"):
        build_spec(solid, "test.hooked", check=lambda c: None)


def test_layers_of_an_architecture_need_no_weights_and_say_how_to_see_every_path(capsys):
    assert main(["layers", "googlenet"]) == 0  # its weights are not here: nothing may try to fetch them
    out = capsys.readouterr().out
    assert "inception4c " in out and "512x14x14" in out and "logits" in out
    assert "inception4c.branch1.conv" not in out and "'dreamnodes layers googlenet --all' lists every path" in out
    assert main(["layers", "mobilenet_v2", "--all"]) == 0
    out = capsys.readouterr().out
    assert "features.13.conv.0.1 " in out and "--all' lists" not in out
    with pytest.raises(SystemExit):
        main(["layers", "--help"])
    assert "--all" in capsys.readouterr().out.replace("\n", " ").split("--size")[1]
    assert main(["layers", "vgg16"]) == 0
    assert "features.28 " in capsys.readouterr().out  # a network of plain layers lists them all
    assert main(["layers", "mobilenet_v4"]) == 2
    assert "did you mean" in capsys.readouterr().err
