"""The command line starts without torch for what needs none: --help, nodes, validate, classes.

Timings are in bench/cli.py (`make bench-cli`); here, what decides them: which modules a
command imports, in a new process, once the catalogue is filled."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = ("import json, sys\nfrom dreamnodes.runtime.cli import main\n"
         "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
         "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules, 'networkx': 'networkx' in sys.modules}))")


def _probe(tmp_path: Path, *argv: str) -> dict:
    env = dict(os.environ, DREAMNODES_CACHE_DIR=str(tmp_path / "cache"), DREAMNODES_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [("--help",), ("nodes",), ("nodes", "render.deepdream"),
                                  ("validate", "examples/deepdream.yaml"), ("classes", "flamingo")])
def test_light_commands_do_not_import_torch_once_the_catalogue_is_filled(tmp_path, argv):
    first = _probe(tmp_path, *argv)  # may fill the catalogue (and import torch for it)
    second = _probe(tmp_path, *argv)
    assert first["code"] == second["code"] == 0
    assert second == {"code": 0, "torch": False, "networkx": False}


def test_a_bad_recipe_is_still_refused_from_the_catalogue(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dreamnodes: 1\nnodes:\n  pic: {type: image.solid, params: {width: 100000}}\n")
    _probe(tmp_path, "nodes")
    got = _probe(tmp_path, "validate", str(bad))
    assert got == {"code": 2, "torch": False, "networkx": False}


def test_the_script_leaves_without_the_interpreters_teardown(tmp_path):
    # `dreamnodes` is entry(): exit handlers run, then os._exit; files and the exit code are intact
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("dreamnodes: 1\nnodes:\n  pic: {type: image.solid, params: {width: 8, height: 8}}\n"
                      "  out: {type: image.save, inputs: {image: pic}, params: {path: t.png}}\n")
    code = ("import atexit, sys; atexit.register(lambda: print('exit handler ran', flush=True)); "
            "from dreamnodes.runtime.cli import entry; sys.argv[1:] = sys.argv[1:]; entry()")
    env = dict(os.environ, DREAMNODES_CACHE_DIR=str(tmp_path / "cache"))
    ok = subprocess.run([sys.executable, "-c", code, "run", str(recipe), "--out", str(tmp_path / "out"), "-q"],
                        env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "exit handler ran" in ok.stdout
    assert (tmp_path / "out" / "t.png").stat().st_size > 0
    bad = subprocess.run([sys.executable, "-c", code, "run", str(tmp_path / "nope.yaml")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_the_vocabulary_recipes_and_command_line_import_without_torch():
    code = ("import sys, dreamnodes, dreamnodes.graphs, dreamnodes.catalog, dreamnodes.runtime.cli, "
            "dreamnodes.settings, dreamnodes.pictures; print(sorted(m for m in ('torch', 'torchvision', "
            "'numpy', 'networkx', 'PIL') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]"


def test_a_listing_cut_short_by_its_reader_ends_quietly(tmp_path):
    # `dreamnodes layers ... | head -1`: the closed pipe is not an "internal error"
    env = dict(os.environ, DREAMNODES_CACHE_DIR=str(tmp_path / "cache"), DREAMNODES_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "dreamnodes.runtime.cli", "layers", "mobilenet_v2", "--all"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0
    assert "error" not in err and "Traceback" not in err, err
