"""The runtime side of hostile input: settings and flags checked before anything runs, output
paths that are too deep or too long, names printed escaped, signals that end a run, and a kill
during an MP4's encoding.

The in-process cases go through tests/hostile.py's `check_case` (exit code, exact error class,
message, no traceback, nothing changed outside the output folder, no staging left); the signal
and kill cases run the real command line in a subprocess, held at a known point by a small
driver (as tests/test_faults.py does).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from hostile import TINY, Case, Sandbox, check_case  # noqa: E402

from dreamnodes.errors import NodeError, RecipeError, UsageError  # noqa: E402
from dreamnodes.runtime import cli  # noqa: E402
from dreamnodes.runtime.cli import main  # noqa: E402

PY = sys.executable


def _tiny(box: Sandbox) -> Path:
    return box.write("tiny.yaml", TINY)


def _out_path(rel: str):
    """A recipe that saves its picture as `rel`."""
    return lambda box: box.write("deep.yaml", TINY.replace("path: out.png", f"path: '{rel}'"))


def _deep_node(box: Sandbox) -> Path:
    return box.write("deep.yaml", "dreamnodes: 1\nnodes:\n  pic: {type: test.deep, params: {levels: 100000}}\n"
                                  "  out: {type: image.save, inputs: {image: pic}, params: {path: out.png}}\n")


def _dangling_out(box: Sandbox) -> tuple[str, ...]:
    os.symlink(box.root / "nowhere" / "folder", box.root / "dangling")
    return ("--out", str(box.root / "dangling"))


def _model(box: Sandbox) -> Path:
    return Path("mobilenet_v2")  # `layers MODEL`: an architecture, never loaded when --size is wrong


SETTING = ("DREAMNODES_MEMORY_LIMIT_MB", "a number of megabytes above 0")
DEVICE = ("use cpu, cuda, cuda:N, mps or auto",)
SIZE = ("--size must be a whole number of pixels from 32 to 2048",)

CASES = [
    # settings: checked when the command starts, whatever the recipe holds
    Case("memory_limit_abc", _tiny, UsageError, SETTING + ("'abc'",)),
    Case("memory_limit_abc_validate", _tiny, UsageError, SETTING, command="validate"),
    Case("memory_limit_nan", _tiny, UsageError, SETTING + ("'nan'",)),
    Case("memory_limit_negative", _tiny, UsageError, SETTING + ("'-5'",)),
    Case("memory_limit_inf", _tiny, UsageError, SETTING + ("'inf'",)),
    Case("memory_limit_ok", _tiny, None, writes=("out.png",)),
    Case("cache_max_abc_validate", _tiny, UsageError, ("DREAMNODES_CACHE_MAX_MB",), command="validate"),
    Case("no_cache_maybe", _tiny, UsageError, ("DREAMNODES_NO_CACHE", "one of 1, true, yes, 0, false or no", "'maybe'")),
    Case("allocator_unknown", _tiny, UsageError, ("DREAMNODES_CPU_ALLOCATOR", "'system'")),
    # devices: refused before anything runs
    Case("device_tpu", _tiny, UsageError, ("unknown device 'tpu'",) + DEVICE, args=("--device", "tpu")),
    Case("device_cuda_x", _tiny, UsageError, ("unknown device 'cuda:x'",) + DEVICE, args=("--device", "cuda:x")),
    Case("device_empty", _tiny, UsageError, ("unknown device ''",) + DEVICE, args=("--device", "")),
    Case("device_meta", _tiny, UsageError, ("unknown device 'meta'",) + DEVICE, args=("--device", "meta")),
    Case("device_cpu_index", _tiny, UsageError, ("unknown device 'cpu:3'",) + DEVICE, args=("--device", "cpu:3")),
    Case("device_cuda_negative", _tiny, UsageError, ("unknown device 'cuda:-1'",) + DEVICE,
         args=("--device", "cuda:-1")),
    Case("device_ok", _tiny, None, args=("--device", "cpu"), writes=("out.png",)),
    Case("layers_device_tpu", _model, UsageError, DEVICE, command="layers", args=("--device", "tpu")),
    # layers --size: checked before the model is loaded
    Case("layers_size_negative", _model, UsageError, SIZE + ("got -5",), command="layers", args=("--size", "-5")),
    Case("layers_size_zero", _model, UsageError, SIZE + ("got 0",), command="layers", args=("--size", "0")),
    Case("layers_size_huge", _model, UsageError, SIZE + ("got 100000",), command="layers",
         args=("--size", "100000")),
    # --out
    Case("out_dangling_link", _tiny, UsageError, ("is a link to", "which does not exist", "--out"),
         args=_dangling_out),
    Case("out_under_a_file", _tiny, UsageError, ("is not a folder", "choose another output folder"),
         args=lambda b: ("--out", str(b.outside / "target.png" / "sub"))),
    # output paths the file system cannot hold, and nesting too deep for Python
    # (10,005 characters: refused by validation; the runtime's own bound is tested below, through the API)
    Case("out_path_5000_deep", _out_path("a/" * 5000 + "x.png"), RecipeError,
         ("is 10,005 characters long", "at most 4,096"), field=("out", "path")),
    Case("out_path_1500_deep", _out_path("a/" * 1500 + "x.png"), NodeError, ("has 1500 folders", "at most 64")),
    Case("out_path_60_deep", _out_path("a/" * 60 + "x.png"), None, writes=("a/" * 60 + "x.png",)),
    Case("out_path_too_long", _out_path("/".join(["b" * 250] * 16) + "/x.png"), NodeError,
         ("is too long for the file system here", "shorten it")),
    Case("out_name_too_long", _out_path("c" * 300 + ".png"), NodeError,
         ("is too long for the file system here", "shorten it")),
    Case("recursion_in_a_node", _deep_node, NodeError,
         ("node 'pic': test.deep failed: its input is nested too deeply", "RecursionError")),
]

ENV = {
    "memory_limit_abc": {"DREAMNODES_MEMORY_LIMIT_MB": "abc"},
    "memory_limit_abc_validate": {"DREAMNODES_MEMORY_LIMIT_MB": "abc"},
    "memory_limit_nan": {"DREAMNODES_MEMORY_LIMIT_MB": "nan"},
    "memory_limit_negative": {"DREAMNODES_MEMORY_LIMIT_MB": "-5"},
    "memory_limit_inf": {"DREAMNODES_MEMORY_LIMIT_MB": "inf"},
    "memory_limit_ok": {"DREAMNODES_MEMORY_LIMIT_MB": "8000"},
    "cache_max_abc_validate": {"DREAMNODES_CACHE_MAX_MB": "abc"},
    "no_cache_maybe": {"DREAMNODES_NO_CACHE": "maybe"},
    "allocator_unknown": {"DREAMNODES_CPU_ALLOCATOR": "jemalloc"},
}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_runtime(case: Case, sandbox: Sandbox, capsys, monkeypatch):
    for name, value in ENV.get(case.id, {}).items():
        monkeypatch.setenv(name, value)
    err = check_case(case, sandbox, capsys)
    assert len(err) < 2000, err[:3000]  # a 10,000-character path is not repeated in full


def test_an_output_5000_folders_deep_is_refused_by_the_runtime_too(tmp_path):
    """Through the API (no validation): a clear message, no RecursionError, nothing made."""
    from dreamnodes.context import Context

    ctx = Context(node_id="save", out_dir=tmp_path / "out")
    with pytest.raises(NodeError) as got:
        ctx.write_file("a/" * 5000 + "x.png", b"pixels")
    msg = str(got.value)
    assert msg.startswith("node 'save': output path 'a/a/a/") and len(msg) < 300, msg
    assert "a/a/x.png' has 5000 folders in it; an output may be at most 64 folders deep: choose a shorter path" in msg
    assert not (tmp_path / "out" / "a").exists()


def test_a_bad_setting_is_named_before_the_recipe_is_even_opened(sandbox, capsys, monkeypatch):
    monkeypatch.setenv("DREAMNODES_MEMORY_LIMIT_MB", "abc")
    assert main(["run", str(sandbox.recipes / "missing.yaml"), "--out", str(sandbox.out)]) == 2
    assert "DREAMNODES_MEMORY_LIMIT_MB" in capsys.readouterr().err
    assert main(["samples"]) == 2  # every command
    assert "DREAMNODES_MEMORY_LIMIT_MB" in capsys.readouterr().err


def test_every_setting_the_code_reads_is_in_the_one_table():
    from dreamnodes.settings import SETTINGS

    root = HERE.parent
    read = set()
    for folder in ("dreamnodes", "runtime", "nodes", "graphs", "editor"):
        for f in (root / folder).rglob("*.py"):
            read |= set(re.findall(r"DREAMNODES_[A-Z_]+", f.read_text("utf-8")))
    assert read <= set(SETTINGS), read - set(SETTINGS)


# ----------------------------------------------------------------------------
# printing names and paths

def test_printable_escapes_c0_c1_and_bidi():
    from dreamnodes.errors import printable

    assert printable("out\u202e.png") == "out\\u202e.png"  # RIGHT-TO-LEFT OVERRIDE
    assert printable("a\u2066b\u2069") == "a\\u2066b\\u2069"  # isolates
    assert printable("nel\x85x\x9b2J") == "nel\\x85x\\x9b2J"  # C1: NEL, CSI
    assert printable("\x1b[2J\x07") == "\\x1b[2J\\x07"
    assert printable("line\u2028sep") == "line\\u2028sep"
    assert printable("two\nlines") == "two\nlines"  # messages keep their lines
    assert printable("two\nlines\t", line=True) == "two\\x0alines\\x09"  # a name or a path is one line
    assert printable("café ünïcode 画") == "café ünïcode 画"


def test_printed_paths_are_escaped(sandbox, capsys):
    out = sandbox.out / "o\u202eut\x85"
    assert main(["run", str(_tiny(sandbox)), "--out", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert stdout == str(out).replace("\u202e", "\\u202e").replace("\x85", "\\x85") + "/out.png\n"
    assert "\u202e" not in stdout + err and "\x85" not in stdout + err
    assert "  pic: " in err and "ran 2 node(s)" in err
    assert (out / "out.png").is_file()


# ----------------------------------------------------------------------------
# the last resort: no traceback, whatever happens

def test_a_bug_is_an_internal_error_line_not_a_traceback(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("kaboom\x1b[2J")

    monkeypatch.setattr(cli, "cmd_samples", boom)
    assert main(["samples"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal error (a bug in dreamnodes): RuntimeError: kaboom\\x1b[2J")
    assert "--debug" in err and "Traceback" not in err


def test_ctrl_c_before_the_command_starts_is_a_cancel(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["samples"]) == 130
    assert capsys.readouterr().err == "cancelled\n"


# ----------------------------------------------------------------------------
# signals and kills

def test_sigterm_while_the_files_move_into_place_waits_for_them(monkeypatch):
    """A run's files move into place all or none: SIGTERM (like Ctrl-C) is held until they have."""
    from dreamnodes.errors import Interrupted
    from dreamnodes.runtime.executor import _interrupts_deferred

    moved = []
    with cli._signals_as_cancel():
        with pytest.raises(Interrupted) as got:
            with _interrupts_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                moved.append("all of them")
    assert moved == ["all of them"] and got.value.exit_code == 143


def test_a_file_written_by_another_program_appears_whole_or_not_at_all(tmp_path):
    from dreamnodes.context import Context

    ctx = Context(node_id="save", out_dir=tmp_path / "out")
    with pytest.raises(RuntimeError):
        with ctx.writing("clips/clip.mp4") as tmp:
            tmp.write_bytes(b"half a vid")
            raise RuntimeError("ffmpeg died")
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == [] and ctx.written == []
    with ctx.writing("clips/clip.mp4") as tmp:
        assert tmp.parent == tmp_path / "out" / "clips" and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"a whole video")
    assert (tmp_path / "out" / "clips" / "clip.mp4").read_bytes() == b"a whole video"
    assert ctx.written == ["clips/clip.mp4"] and sorted(os.listdir(tmp_path / "out" / "clips")) == ["clip.mp4"]


# in a real process

DRIVER = """\
import os, sys, time

mode, marker = sys.argv[1], sys.argv[2]


def hold(note):
    with open(marker, "w") as f:
        f.write(note)
    while True:
        time.sleep(0.05)


if mode == "save":  # hold between "temporary file written" and "renamed into place"
    _fsync = os.fsync

    def fsync(fd):
        _fsync(fd)
        target = os.readlink(f"/proc/self/fd/{fd}")
        if ".dreamnodes-staging-" in target and target.endswith(".tmp"):
            hold(target)

    os.fsync = fsync
else:  # mode == "mp4": hold while ffmpeg encodes, two frames in
    import imageio_ffmpeg

    _write_frames = imageio_ffmpeg.write_frames

    class Held:
        def __init__(self, gen):
            self.gen, self.sent = gen, 0

        def send(self, value):
            got = self.gen.send(value)
            self.sent += 1
            if self.sent == 3:
                pid = os.getpid()
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    hold(f.read().strip() or "-")
            return got

        def close(self):
            self.gen.close()

    imageio_ffmpeg.write_frames = lambda *a, **k: Held(_write_frames(*a, **k))

from dreamnodes.runtime.cli import main

sys.exit(main(sys.argv[3:]))
"""

MP4 = """\
dreamnodes: 1
nodes:
  clip: {type: video.load, params: {source: 'sample:chelsea', frames: 4, size: 32}}
  out: {type: video.save, inputs: {frames: clip}, params: {path: clip.mp4}}
"""


def _env(box: Sandbox, tmp: Path) -> dict:
    env = dict(os.environ, DREAMNODES_CACHE_DIR=str(box.root / "cache"), DREAMNODES_OFFLINE="1", TMPDIR=str(tmp),
               TORCHINDUCTOR_CACHE_DIR=str(box.root / "inductor"))  # torch's own cache, made on import
    env.pop("DREAMNODES_NO_CACHE", None)
    return env


def _held(box: Sandbox, mode: str, recipe: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    """Start `dreamnodes run` held at the point `mode` names; return it and the driver's note."""
    driver = box.root / "driver.py"
    driver.write_text(DRIVER)
    marker = box.root / f"marker-{mode}"
    proc = subprocess.Popen([PY, str(driver), mode, str(marker), "run", str(recipe), "--out", str(box.out), "-q"],
                            env=_env(box, tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() or not marker.read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"the run never reached the {mode} point: {proc.communicate()}")
        time.sleep(0.05)
    return proc, marker.read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_terminated_run_cleans_up_like_ctrl_c(sandbox, signum):
    tmp = sandbox.root / "tmp"
    tmp.mkdir()
    proc, held = _held(sandbox, "save", _tiny(sandbox), tmp)
    assert Path(held).exists()
    proc.send_signal(signum)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, (proc.returncode, err)
    name = signal.Signals(signum).name
    assert err == f"cancelled ({name}); nothing was written\n" and stdout == ""
    assert list(sandbox.out.iterdir()) == []  # the staging folder and its temporary file are gone
    assert not Path(held).exists() and list(tmp.iterdir()) == []


def test_a_kill_during_mp4_encoding_leaves_nothing_in_the_temp_folder(sandbox, capsys, monkeypatch):
    pytest.importorskip("imageio_ffmpeg")
    tmp = sandbox.root / "tmp"
    tmp.mkdir()
    recipe = sandbox.write("clip.yaml", MP4)
    proc, children = _held(sandbox, "mp4", recipe, tmp)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 30  # ffmpeg sees its input end and stops
    while any(Path(f"/proc/{c}").exists() for c in children.split() if c != "-") and time.time() < deadline:
        time.sleep(0.05)
    assert list(tmp.iterdir()) == []  # nothing in the system's temporary folder
    left = [p.name for p in sandbox.out.iterdir()]
    assert [n.split("-")[2] for n in left] == [str(proc.pid)]  # only the hidden staging folder
    assert not (sandbox.out / "clip.mp4").exists()

    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    assert main(["run", str(recipe), "--out", str(sandbox.out), "-q"]) == 0  # the next run sweeps it
    capsys.readouterr()
    assert [p.name for p in sandbox.out.iterdir()] == ["clip.mp4"]
    assert (sandbox.out / "clip.mp4").read_bytes()[4:8] == b"ftyp"
    assert list(tmp.iterdir()) == []
