"""The runtime: scheduling, caching, cancellation, transactional outputs,
provenance in PNGs, seeds, packs and the installed wheel."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from dreamnodes import Context, Range, node
from dreamnodes import events as ev
from dreamnodes.errors import Cancelled, NodeError, RecipeError, UsageError
from dreamnodes.graphs import dump_recipe, parse_recipe
from dreamnodes.meta import recipe_from_png
from dreamnodes.runtime import Cache, Runner
from dreamnodes.runtime.cli import main
from dreamnodes.types import Image

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLI = [PY, "-m", "dreamnodes.runtime.cli"]


@node("rt.constant")
def rt_constant(value: Annotated[float, Range(0, 1)] = 0.5, size: int = 8) -> Image:
    """A flat test picture."""
    return Image(torch.full((1, 3, size, size), value))


@node("rt.add")
def rt_add(image: Image, amount: float = 0.1) -> Image:
    """Brighten a test picture."""
    return Image((image.pixels + amount).clamp(0, 1))


@node("rt.mix")
def rt_mix(a: Image, b: Image) -> Image:
    """Average two test pictures."""
    return Image((a.pixels + b.pixels) / 2)


@node("rt.slow")
def rt_slow(image: Image, ctx: Context, steps: int = 20) -> Image:
    """Many small steps, each reporting progress (so a run can be cancelled between them)."""
    x = image.pixels
    for k in range(steps):
        x = x * 0.99
        ctx.progress(k + 1, steps)
    ctx.preview(Image(x))
    return Image(x)


@node("rt.fail")
def rt_fail(image: Image) -> Image:
    """Always fails, like a node with a bug."""
    raise ZeroDivisionError("boom")


@node("rt.noise", random=True)
def rt_noise(ctx: Context, size: int = 8) -> Image:
    """Seeded noise."""
    return Image(torch.rand(1, 3, size, size, generator=ctx.generator()))


CHAIN = """
dreamnodes: 1
seed: 1
nodes:
  a: {type: rt.constant, params: {value: 0.2}}
  b: {type: rt.add, inputs: {image: a}, params: {amount: 0.1}}
  c: {type: rt.add, inputs: {image: b}, params: {amount: 0.1}}
  side: {type: rt.constant, params: {value: 0.9}}
  m: {type: rt.mix, inputs: {a: c, b: side}}
  save: {type: image.save, inputs: {image: m}, params: {path: m.png}}
"""


def runner(tmp_path, **kw):
    return Runner(cache=Cache(tmp_path / "cache"), out_dir=tmp_path / "out", **kw)


def test_second_run_runs_no_node(tmp_path):
    r = runner(tmp_path)
    first = r.run(parse_recipe(CHAIN))
    assert sorted(first.ran) == ["a", "b", "c", "m", "save", "side"]
    second = r.run(parse_recipe(CHAIN))
    assert second.ran == []
    assert sorted(second.cached) == sorted(first.ran)


def test_changed_param_reruns_only_descendants(tmp_path):
    r = runner(tmp_path, overwrite=True)  # the second run replaces m.png
    r.run(parse_recipe(CHAIN))
    recipe = parse_recipe(CHAIN)
    recipe.nodes["b"].params["amount"] = 0.3
    result = r.run(recipe)
    assert sorted(result.ran) == ["b", "c", "m", "save"]
    assert sorted(result.cached) == ["a", "side"]
    got = np.asarray(PILImage.open(tmp_path / "out" / "m.png"))
    assert got[0, 0, 0] == round(((0.2 + 0.3 + 0.1) + 0.9) / 2 * 255)


def test_deleted_output_is_written_again(tmp_path):
    r = runner(tmp_path)
    r.run(parse_recipe(CHAIN))
    (tmp_path / "out" / "m.png").unlink()
    result = r.run(parse_recipe(CHAIN))
    assert result.ran == ["save"]
    assert (tmp_path / "out" / "m.png").exists()


def test_only_runs_just_the_ancestors(tmp_path):
    result = runner(tmp_path).run(parse_recipe(CHAIN), only=["c"])
    assert sorted(result.ran) == ["a", "b", "c"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_only_node_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="--only names node 'nope'"):
        runner(tmp_path).run(parse_recipe(CHAIN), only=["nope"])


SLOW = """
dreamnodes: 1
nodes:
  a: {type: rt.constant}
  early: {type: image.save, inputs: {image: a}, params: {path: early.png}}
  s: {type: rt.slow, inputs: {image: a}, params: {steps: 50}}
  late: {type: image.save, inputs: {image: s}, params: {path: late.png}}
"""


def test_cancel_stops_between_steps_and_writes_nothing(tmp_path):
    steps = []

    def listener(e):
        if isinstance(e, ev.Progress):
            steps.append(e.step)
            if e.step == 5 and len(steps) == 5:
                r.cancel()

    r = runner(tmp_path, listeners=[listener])
    with pytest.raises(Cancelled):
        r.run(parse_recipe(SLOW))
    assert steps == [1, 2, 3, 4, 5]  # the step after the cancel never started
    out = tmp_path / "out"
    assert [p.name for p in out.rglob("*")] == []  # not even early.png, nor a staging folder
    # the cancelled node left nothing in the cache: the next run does it for real
    result = r.run(parse_recipe(SLOW))
    assert "s" in result.ran and (out / "late.png").exists() and (out / "early.png").exists()


def test_failure_is_a_node_error_and_writes_nothing(tmp_path):
    recipe = parse_recipe("""
dreamnodes: 1
nodes:
  a: {type: rt.constant}
  ok: {type: image.save, inputs: {image: a}, params: {path: ok.png}}
  bad: {type: rt.fail, inputs: {image: a}}
  never: {type: image.save, inputs: {image: bad}, params: {path: never.png}}
""")
    seen = []
    r = runner(tmp_path, listeners=[seen.append])
    with pytest.raises(NodeError, match="node 'bad'.*ZeroDivisionError: boom"):
        r.run(recipe)
    assert list((tmp_path / "out").rglob("*")) == []
    assert any(isinstance(e, ev.NodeFailed) and e.node == "bad" for e in seen)


def test_events_report_start_progress_preview_and_cache(tmp_path):
    seen = []
    r = runner(tmp_path, listeners=[seen.append])
    r.run(parse_recipe(SLOW))
    kinds = {(type(e).__name__, e.node) for e in seen}
    assert ("NodeStarted", "s") in kinds and ("Preview", "s") in kinds
    assert [e.step for e in seen if isinstance(e, ev.Progress)] == list(range(1, 51))
    seen.clear()
    r.run(parse_recipe(SLOW))
    assert all(e.cached for e in seen if isinstance(e, ev.NodeFinished))


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path):
    text = "dreamnodes: 1\nseed: 5\nnodes:\n  n: {type: rt.noise}\n  m: {type: rt.noise}\n"
    a = runner(tmp_path / "1").run(parse_recipe(text))
    b = runner(tmp_path / "2").run(parse_recipe(text))
    c = runner(tmp_path / "3").run(parse_recipe(text), seed=6)
    assert torch.equal(a.output("n").pixels, b.output("n").pixels)
    assert not torch.equal(a.output("n").pixels, c.output("n").pixels)
    assert not torch.equal(a.output("n").pixels, a.output("m").pixels)  # nodes get their own seeds


def test_seed_is_part_of_a_random_nodes_cache_key_only(tmp_path):
    r = runner(tmp_path)
    text = "dreamnodes: 1\nseed: 5\nnodes:\n  n: {type: rt.noise}\n  k: {type: rt.constant}\n"
    r.run(parse_recipe(text))
    result = r.run(parse_recipe(text), seed=9)
    assert result.ran == ["n"] and result.cached == ["k"]


def test_corrupt_disk_entry_is_recomputed_not_returned(tmp_path):
    cache_dir = tmp_path / "cache"
    text = "dreamnodes: 1\nnodes:\n  a: {type: rt.constant, params: {value: 0.25}}\n"
    first = Runner(cache=Cache(cache_dir), out_dir=tmp_path / "out").run(parse_recipe(text))
    (entry,) = cache_dir.glob("*/*.dnc")
    blob = bytearray(entry.read_bytes())
    blob[-10] ^= 0xFF
    entry.write_bytes(bytes(blob))
    cache = Cache(cache_dir)
    again = Runner(cache=cache, out_dir=tmp_path / "out").run(parse_recipe(text))
    assert again.ran == ["a"] and cache.corrupt_dropped == 1
    assert torch.equal(again.output("a").pixels, first.output("a").pixels)


def test_disk_cache_is_bounded(tmp_path):
    cache = Cache(tmp_path / "cache", max_bytes=40_000)
    r = Runner(cache=cache, out_dir=tmp_path / "out")
    for v in range(10):  # each entry is a 3x40x40 float image, ~20 kB
        r.run(parse_recipe(f"dreamnodes: 1\nnodes:\n  a: {{type: rt.constant, params: {{value: 0.{v}, size: 40}}}}\n"))
    total = sum(p.stat().st_size for p in (tmp_path / "cache").glob("*/*.dnc"))
    assert 0 < total <= 40_000


def test_no_cache_recomputes(tmp_path):
    r = Runner(use_cache=False, out_dir=tmp_path / "out", cache=Cache(tmp_path / "cache", disk=False),
               overwrite=True)
    r.run(parse_recipe(CHAIN))
    assert len(r.run(parse_recipe(CHAIN)).ran) == 6


def test_bad_device_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown device"):
        Runner(device="toaster")


def test_symlink_in_output_folder_cannot_lead_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    recipe = parse_recipe(CHAIN.replace("path: m.png", "path: link/m.png"))
    with pytest.raises(NodeError, match="outside"):
        Runner(cache=Cache(tmp_path / "cache"), out_dir=out).run(recipe)
    assert list(outside.iterdir()) == []


# --- processes: the disk cache, the CLI, PNG provenance --------------------------------------

SAMPLE = """dreamnodes: 1
name: sample
seed: 3
nodes:
  photo: {type: image.load, params: {source: 'sample:coffee', size: 64}}
  noisy: {type: image.noise, params: {width: 64, height: 64}}
  out: {type: image.save, inputs: {image: photo}, params: {path: coffee.png}}
  out2: {type: image.save, inputs: {image: noisy}, params: {path: noise.png}}
"""


def run_cli(args, cwd, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(CLI + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_second_process_reuses_the_disk_cache(tmp_path):
    (tmp_path / "r.yaml").write_text(SAMPLE)
    first = run_cli(["run", "r.yaml", "--out", "o1"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "ran 4 node(s), 0 from cache" in first.stderr
    second = run_cli(["run", "r.yaml", "--out", "o2"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert "photo: cached" in second.stderr and "noisy: cached" in second.stderr
    assert (tmp_path / "o2" / "coffee.png").read_bytes() == (tmp_path / "o1" / "coffee.png").read_bytes()
    off = run_cli(["run", "r.yaml", "--out", "o3", "--no-cache"], tmp_path)
    assert "0 from cache" in off.stderr


def test_png_carries_its_recipe_and_reruns_to_the_same_pixels(tmp_path):
    (tmp_path / "r.yaml").write_text(SAMPLE)
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "a"), "-q"]) == 0
    png = tmp_path / "a" / "noise.png"
    embedded = parse_recipe(recipe_from_png(png))
    assert embedded.seed == 3 and embedded.nodes["noisy"].type == "image.noise"
    assert main(["run", str(png), "--out", str(tmp_path / "b"), "-q", "--no-cache"]) == 0
    assert np.array_equal(np.asarray(PILImage.open(png)), np.asarray(PILImage.open(tmp_path / "b" / "noise.png")))


def test_set_and_seed_overrides_are_recorded_in_the_png(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(SAMPLE)
    code = main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"), "-q",
                 "--set", "noisy.amount=0.3", "--seed", "11"])
    assert code == 0
    assert main(["show", str(tmp_path / "o" / "noise.png")]) == 0
    shown = capsys.readouterr().out
    assert "amount: 0.3" in shown and "seed: 11" in shown and '"seed": 11' in shown


def test_cli_exit_codes_and_messages(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(SAMPLE.replace("sample:coffee", "nosuch.png"))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"), "-q"]) == 2  # found by validation
    err = capsys.readouterr().err
    assert "node 'photo'" in err and "nosuch.png" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "noise.png").exists()
    assert main(["run", str(tmp_path / "r.yaml"), "--set", "noisy.amount=lots"]) == 2
    assert "amount" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nothere.yaml")]) == 2
    assert main(["show", str(tmp_path / "r.yaml")]) == 2


def test_nodes_type_names_the_module_that_defines_it(capsys):
    assert main(["nodes", "image.load"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("image.load  (version ") and header.endswith("; defined in dreamnodes.nodes.image)")


def test_the_edit_command_comes_through_an_entry_point_not_an_import():
    import ast

    from dreamnodes.runtime import cli

    assert cli.build_parser().parse_args(["edit", "x.yaml"]).command == "edit"
    source = Path(cli.__file__).read_text()
    imported = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Import):
            imported += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            imported.append(n.module or "")
    assert not [m for m in imported if m == "dreamnodes.editor" or m.startswith("dreamnodes.editor.")]
    assert "dreamnodes.editor" not in source  # nor importlib.import_module("dreamnodes.editor...")


def test_a_broken_command_entry_point_is_a_warning(monkeypatch, capsys):
    from dreamnodes.runtime import cli

    class Broken:
        name, value = "broken", "nowhere.at.all:register"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    monkeypatch.setattr(cli, "entry_points", lambda group: [Broken()] if group == cli.COMMANDS else [])
    assert main(["samples"]) == 0
    captured = capsys.readouterr()
    assert "sample:" in captured.out
    assert "warning: command 'broken'" in captured.err and "nowhere" in captured.err


def test_a_node_pack_is_found_through_its_entry_point(tmp_path):
    site = tmp_path / "site"
    (site / "tinypack").mkdir(parents=True)
    (site / "tinypack" / "__init__.py").write_text(textwrap.dedent('''
        from dreamnodes import node
        from dreamnodes.types import Image

        @node("tinypack.invert")
        def invert(image: Image) -> Image:
            """Invert a picture (a third-party node)."""
            return Image(1 - image.pixels)
    '''))
    info = site / "tinypack-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinypack\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dreamnodes.nodes]\ntinypack = tinypack\n")
    env = {"PYTHONPATH": str(site)}
    listed = run_cli(["nodes"], tmp_path, env)
    assert listed.returncode == 0 and "tinypack.invert" in listed.stdout
    (tmp_path / "r.yaml").write_text(
        "dreamnodes: 1\nnodes:\n  a: {type: image.solid, params: {color: '#ff0000', width: 8, height: 8}}\n"
        "  i: {type: tinypack.invert, inputs: {image: a}}\n"
        "  s: {type: image.save, inputs: {image: i}, params: {path: inv.png}}\n")
    ran = run_cli(["run", "r.yaml", "--out", "o"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr
    assert tuple(np.asarray(PILImage.open(tmp_path / "o" / "inv.png"))[0, 0]) == (0, 255, 255)


def test_installed_wheel_runs_a_recipe(tmp_path):
    """Build a wheel, install it (not editable) in a fresh venv, and run a recipe from elsewhere."""
    dist = tmp_path / "dist"
    built = subprocess.run([PY, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("dreamnodes-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies (torch, ...) come from the test's environment; dreamnodes only from the wheel
    deps = subprocess.run([PY, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_deps.pth").write_text(deps + "\n")
    import zipfile

    zipfile.ZipFile(wheel).extractall(site)  # what an installer does for a pure wheel
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "r.yaml").write_text(SAMPLE)
    code = ("import dreamnodes, dreamnodes.nodes, dreamnodes.graphs, dreamnodes.runtime, sys;"
            "assert dreamnodes.__file__.startswith(sys.argv[1]), dreamnodes.__file__;"
            "from dreamnodes.runtime.cli import main; sys.exit(main(['run', 'r.yaml', '--out', 'o', '-q']))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(vpy), "-c", code, site], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (work / "o" / "coffee.png").exists()
    listed = subprocess.run([str(vpy), "-c", "from importlib import resources;"
                             "print(resources.files('dreamnodes.examples').joinpath('deepdream.yaml').is_file())"],
                            cwd=work, env=env, capture_output=True, text=True)
    assert listed.stdout.strip() == "True"


ALLOC_PROBE = textwrap.dedent("""
    import resource, sys, torch
    from dreamnodes.runtime import Runner
    Runner(use_cache=False, device="cpu", out_dir=sys.argv[1])
    def step():  # what a dream step does with its activations: many large blocks, all freed at the end
        acts = [torch.empty(2 * 2 ** 20).fill_(1.0) for _ in range(16)]  # 16 x 8 MB
        del acts
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
                    reason="the allocator tuning is glibc's")
def test_a_cpu_runner_reuses_freed_tensor_memory(tmp_path):
    """Large activations freed at the end of a step are reused by the next one, not mapped
    afresh (which page-faults every 4 KB); DREAMNODES_CPU_ALLOCATOR=system turns it off."""
    def faults(**env):
        out = subprocess.run([PY, "-c", ALLOC_PROBE, str(tmp_path)], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=120)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])
    pages = 10 * 16 * 8 * 2 ** 20 // 4096  # 327,680 if every block were fresh memory
    tuned, system = faults(), faults(DREAMNODES_CPU_ALLOCATOR="system")
    assert tuned < pages // 20
    # glibc's own behaviour varies with the heap's layout (seen: 10% to all of the pages), but it
    # always faults far more than the tuned allocator
    assert system > max(4 * tuned, pages // 20), (system, tuned)


def test_the_same_file_name_in_two_folders_is_two_pictures(tmp_path):
    """A recipe's `source: photo.png` means the file next to that recipe: another folder's photo
    of the same name, or an edited photo, is never answered from the cache."""
    from dreamnodes.graphs import load_recipe

    text = textwrap.dedent("""
        dreamnodes: 1
        nodes:
          photo: {type: image.load, params: {source: photo.png, size: 16}}
    """)
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    for name, rgb in colours.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "r.yaml").write_text(text)
        PILImage.new("RGB", (16, 16), rgb).save(tmp_path / name / "photo.png")
    runner = Runner(cache=Cache(tmp_path / "cache"), out_dir=tmp_path / "out")

    def mean_rgb(folder):
        res = runner.run(load_recipe(tmp_path / folder / "r.yaml"))
        return res, [round(float(c)) for c in res.output("photo").pixels.mean((0, 2, 3)) * 255]

    assert mean_rgb("red")[1] == [255, 0, 0]
    res, rgb = mean_rgb("blue")
    assert rgb == [0, 0, 255] and res.ran == ["photo"]
    res, _ = mean_rgb("blue")
    assert res.cached == ["photo"]  # unchanged: from the cache
    PILImage.new("RGB", (16, 16), (0, 255, 0)).save(tmp_path / "blue" / "photo.png")
    res, rgb = mean_rgb("blue")
    assert rgb == [0, 255, 0] and res.ran == ["photo"]
    (tmp_path / "blue" / "photo.png").unlink()
    with pytest.raises(RecipeError, match="does not exist"):  # found by the validation before the run
        runner.run(load_recipe(tmp_path / "blue" / "r.yaml"))


def test_ctrl_c_while_files_move_into_place_moves_all_of_them(tmp_path, monkeypatch):
    """Moving a finished run's files into the output folder is not cut in half by Ctrl-C: the
    interrupt is held until every file is in place, then delivered."""
    import signal

    from dreamnodes.runtime import executor

    recipe = parse_recipe(textwrap.dedent("""
        dreamnodes: 1
        nodes:
          photo: {type: image.load, params: {source: 'sample:chelsea', size: 16}}
          a: {type: image.save, inputs: {image: photo}, params: {path: a.png}}
          b: {type: image.save, inputs: {image: photo}, params: {path: b.png}}
          c: {type: image.save, inputs: {image: photo}, params: {path: c.png}}
    """))
    real_replace, moves = os.replace, []

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        if ".dreamnodes-staging" in str(dst):  # a node writing its file into the staging folder
            return
        moves.append(dst)
        if len(moves) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C right after the first file

    monkeypatch.setattr(executor.os, "replace", replace_then_interrupt)
    runner = Runner(use_cache=False, out_dir=tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        runner.run(recipe)
    assert len(moves) == 3 and sorted(p.name for p in runner.committed) == ["a.png", "b.png", "c.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]
