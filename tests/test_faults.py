"""Faults and processes: a run killed mid-write, Ctrl-C, two processes on one
cache, and the same pixels from two separate processes.

The kill is made deterministic by a small driver (written by the test, not
part of dreamnodes) that runs the real command line with `os.fsync` wrapped:
when the file being synced is the one the test aims at (a picture being
saved in the staging folder, or a disk-cache entry being written), the
driver leaves a marker and blocks, so the test knows the process is exactly
between "temporary file written" and "renamed into place" when it sends
SIGKILL (or SIGINT).

What a killed run leaves behind, and who cleans it:
- output folder: a hidden staging folder `.dreamnodes-staging-PID-*` (never a
  final file); the next run into that folder deletes staging folders whose
  process is gone.
- cache folder: a temporary `.KEY.dnc.PID.*.tmp` next to the entries; readers
  never open it, and the next process using the cache deletes those of
  writers that are gone.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dreamnodes.runtime.cache import Cache
from dreamnodes.runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# the installed console script, as a user runs it (or the module, where no script was installed)
_SCRIPT = Path(PY).parent / "dreamnodes"
DREAMNODES = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "dreamnodes.runtime.cli"]

RECIPE = """\
dreamnodes: 1
name: fault test
seed: 3
nodes:
  noise: {type: image.noise, params: {width: 96, height: 64, amount: 0.3}}
  out: {type: image.save, inputs: {image: noise}, params: {path: pic.png}}
"""

DRIVER = """\
import os, sys, time

mode, marker, cache_dir = sys.argv[1], sys.argv[2], os.path.realpath(sys.argv[3])
_fsync = os.fsync


def fsync(fd):
    _fsync(fd)
    target = os.readlink(f"/proc/self/fd/{fd}")
    hit = (mode == "save" and ".dreamnodes-staging-" in target and target.endswith(".tmp")) or \\
          (mode == "cache" and target.startswith(cache_dir) and target.endswith(".tmp"))
    if hit:
        with open(marker, "w") as f:
            f.write(target)
        while True:  # hold the temporary file open, unrenamed, until the test acts
            time.sleep(0.05)


os.fsync = fsync
from dreamnodes.runtime.cli import main

sys.exit(main(sys.argv[4:]))
"""


def _env(cache: Path) -> dict:
    env = dict(os.environ, DREAMNODES_CACHE_DIR=str(cache), DREAMNODES_OFFLINE="1")
    env.pop("DREAMNODES_NO_CACHE", None)
    return env


def _here(args: list[str], cache: Path, monkeypatch) -> int:
    """The same command line, in this process (cheaper than a new one where a process is not the point)."""
    monkeypatch.setenv("DREAMNODES_CACHE_DIR", str(cache))
    return main(args)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _held(tmp_path: Path, mode: str, out: Path, cache: Path, recipe: Path) -> tuple[subprocess.Popen, str]:
    """Start a run that blocks with its temporary file written but not renamed; return it and that file."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    marker = tmp_path / f"marker-{mode}"
    proc = subprocess.Popen([PY, str(driver), mode, str(marker), str(cache), "run", str(recipe), "--out", str(out),
                             "-q"], env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() or not marker.read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"the run never reached the {mode} write: {proc.communicate()}")
        time.sleep(0.05)
    return proc, marker.read_text()


@pytest.fixture
def setup(tmp_path):
    recipe = tmp_path / "fault.yaml"
    recipe.write_text(RECIPE)
    ref = tmp_path / "ref"
    assert main(["run", str(recipe), "--out", str(ref), "--no-cache", "-q"]) == 0
    return recipe, (ref / "pic.png").read_bytes()


@pytest.mark.parametrize("mode", ["save", "cache"])
def test_sigkill_mid_write_leaves_nothing_partial_and_the_next_run_is_right(tmp_path, setup, mode, monkeypatch):
    recipe, reference = setup
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc, held = _held(tmp_path, mode, out, cache, recipe)
    assert Path(held).exists()  # the temporary file is there, complete but not renamed
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # what the user sees: no picture at all, let alone half of one
    assert not (out / "pic.png").exists()
    visible = [p for p in out.iterdir() if not p.name.startswith(".")] if out.exists() else []
    assert visible == []
    if mode == "save":
        assert [p.name.split("-")[2] for p in out.iterdir()] == [str(proc.pid)]  # the hidden staging folder
        assert len(list(cache.glob("*/*.dnc"))) == 1  # the noise, cached before the save began
    else:
        assert list(cache.glob("*/*.dnc")) == []  # no entry: only the unrenamed temporary file
        assert [p.name for p in cache.glob("*/.*.tmp")] == [Path(held).name]
    assert Cache(cache).verify() == []

    # the next run: right picture, stale leftovers gone, a valid cache
    assert _here(["run", str(recipe), "--out", str(out), "-q"], cache, monkeypatch) == 0
    assert (out / "pic.png").read_bytes() == reference
    assert _files(out) == ["pic.png"] and [p.name for p in out.iterdir()] == ["pic.png"]
    assert list(cache.glob("*/.*.tmp")) == []
    entries = list(cache.glob("*/*.dnc"))
    assert len(entries) == 1 and Cache(cache).verify() == []
    c = Cache(cache)
    assert c.get_disk(entries[0].stem) is not None and c.corrupt_dropped == 0


def test_ctrl_c_mid_save_exits_130_and_writes_nothing(tmp_path, setup):
    recipe, _ = setup
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc, held = _held(tmp_path, "save", out, cache, recipe)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelled; nothing was written" in err and "Traceback" not in err
    assert list(out.iterdir()) == []  # the staging folder and its temporary file are gone too
    assert not Path(held).exists()


def test_a_corrupt_or_hostile_cache_entry_is_recomputed_not_returned(tmp_path, setup, monkeypatch, capsys):
    import hashlib
    import pickle

    recipe, reference = setup
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert _here(["run", str(recipe), "--out", str(out), "-q"], cache, monkeypatch) == 0
    (entry,) = cache.glob("*/*.dnc")
    for damage in ("truncate", "flip", "empty", "hostile"):
        blob = entry.read_bytes()
        if damage == "truncate":
            entry.write_bytes(blob[: len(blob) // 2])
        elif damage == "flip":
            entry.write_bytes(blob[:-10] + bytes([blob[-10] ^ 0xFF]) + blob[-9:])
        elif damage == "empty":
            entry.write_bytes(b"")
        else:  # a valid checksum over a pickle that would run code
            payload = pickle.dumps(os.system)
            entry.write_bytes(b"DNC1" + hashlib.sha256(payload).digest() + payload)
        (out / "pic.png").unlink()
        capsys.readouterr()
        assert _here(["run", str(recipe), "--out", str(out)], cache, monkeypatch) == 0
        assert "ran 2 node(s), 0 from cache" in capsys.readouterr().err, damage  # recomputed, not returned
        assert (out / "pic.png").read_bytes() == reference
        assert Cache(cache).verify() == []


def test_two_processes_share_one_disk_cache(tmp_path, monkeypatch, capsys):
    nodes = "".join(f"  n{i}: {{type: image.noise, params: {{width: 160, height: 120, seed: {i}}}}}\n"
                    f"  s{i}: {{type: image.save, inputs: {{image: n{i}}}, params: {{path: p{i}.png}}}}\n"
                    for i in range(6))
    recipe = tmp_path / "many.yaml"
    recipe.write_text("dreamnodes: 1\nseed: 1\nnodes:\n" + nodes)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([*DREAMNODES, "run", str(recipe), "--out", str(tmp_path / f"out{k}"), "-q"],
                              env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    assert main(["run", str(recipe), "--out", str(tmp_path / "ref"), "--no-cache", "-q"]) == 0
    for k in range(2):
        for i in range(6):
            assert (tmp_path / f"out{k}" / f"p{i}.png").read_bytes() == (tmp_path / "ref" / f"p{i}.png").read_bytes()
    assert len(list(cache.glob("*/*.dnc"))) == 6 and list(cache.glob("*/.*.tmp")) == []
    assert Cache(cache).verify() == []
    capsys.readouterr()
    assert _here(["run", str(recipe), "--out", str(tmp_path / "out2")], cache, monkeypatch) == 0
    assert "ran 6 node(s), 6 from cache" in capsys.readouterr().err


def test_the_cache_being_unwritable_does_not_fail_a_run(tmp_path, setup, monkeypatch):
    recipe, reference = setup
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="going on without it"):
        assert _here(["run", str(recipe), "--out", str(tmp_path / "out"), "-q"], blocker, monkeypatch) == 0
    assert (tmp_path / "out" / "pic.png").read_bytes() == reference


def test_a_bad_cache_size_setting_is_a_usage_error(tmp_path, setup, monkeypatch, capsys):
    recipe, _ = setup
    monkeypatch.setenv("DREAMNODES_CACHE_MAX_MB", "lots")
    assert main(["run", str(recipe), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert "DREAMNODES_CACHE_MAX_MB must be a number of megabytes" in capsys.readouterr().err


def test_two_processes_write_byte_identical_pngs(tmp_path):
    """Determinism on CPU: the default DeepDream, made small, in two separate processes."""
    args = ["run", str(ROOT / "examples" / "deepdream.yaml"), "--set", "photo.size=64", "--set", "dream.octaves=2",
            "--set", "dream.steps=3", "--device", "cpu", "--no-cache", "-q"]
    procs = [subprocess.Popen([*DREAMNODES, *args, "--out", str(tmp_path / f"run{k}")], env=_env(tmp_path / "c"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    a, b = (tmp_path / "run0" / "deepdream.png").read_bytes(), (tmp_path / "run1" / "deepdream.png").read_bytes()
    assert a == b
    from PIL import Image

    import numpy as np

    with Image.open(tmp_path / "run0" / "deepdream.png") as im:
        assert im.size == (64, 43) or max(im.size) == 64
        assert np.asarray(im).std() > 5  # a real picture, not a blank
