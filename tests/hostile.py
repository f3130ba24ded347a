"""The machinery of the hostile catalogues (tests/test_security.py and the
test_hostile_*.py files): a sandbox folder, crafted files, the Case record and
the one check every case goes through.

    sandbox/recipes/   the recipe (and whatever sits next to it)
    sandbox/out/       the output folder (--out)
    sandbox/outside/   bait: files a hostile recipe would like to read or overwrite
    sandbox/cwd/       the current folder during the run
"""
from __future__ import annotations

import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import tinynodes  # noqa: E402  (registers test.passthrough; records smuggled code that ran)

from dreamnodes.errors import NodeError, RecipeError, UsageError  # noqa: E402
from dreamnodes.runtime.cli import main  # noqa: E402

HOSTILE = HERE / "fixtures" / "hostile"
TINY = "dreamnodes: 1\nnodes:\n  pic: {type: image.solid, params: {width: 8, height: 8}}\n" \
       "  out: {type: image.save, inputs: {image: pic}, params: {path: out.png}}\n"


# ----------------------------------------------------------------------------
# the sandbox

@dataclass
class Sandbox:
    root: Path

    @property
    def recipes(self) -> Path:
        return self.root / "recipes"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def fixture(self, name: str) -> Path:
        text = (HOSTILE / name).read_text("utf-8").replace("@OUTSIDE@", str(self.outside))
        path = self.recipes / name
        path.write_text(text, "utf-8")
        return path

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.recipes / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def snapshot(self) -> dict[str, tuple]:
        """Everything in the sandbox except the output folder: path -> (kind, size, mtime, bytes digest)."""
        seen = {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            d = Path(dirpath)
            if d == self.out or self.out in d.parents:
                dirnames[:] = []
                continue
            for name in dirnames + filenames:
                p = d / name
                if p == self.out:
                    continue
                st = p.lstat()
                kind = "link" if p.is_symlink() else ("dir" if p.is_dir() else "file" if p.is_file() else "other")
                data = p.read_bytes() if kind == "file" else b""
                seen[str(p.relative_to(self.root))] = (kind, st.st_size, st.st_mtime_ns, zlib.crc32(data))
        return seen


def make_sandbox(tmp_path: Path, monkeypatch) -> Sandbox:
    """The sandbox folders, bait outside the output folder, and the current folder inside."""
    box = Sandbox(tmp_path / "sandbox")
    for d in ("recipes", "out", "outside", "cwd"):
        (box.root / d).mkdir(parents=True)
    (box.outside / "bait.png").write_bytes(png(b""))
    (box.outside / "target.png").write_bytes(b"precious")
    monkeypatch.chdir(box.root / "cwd")
    tinynodes.EXECUTED.clear()
    return box


# ----------------------------------------------------------------------------
# crafted files

def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def png(text_chunks: bytes, width: int = 1, height: int = 1) -> bytes:
    """A PNG (1x1 grey unless told otherwise) with the given text chunks before its pixels."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    raw = zlib.compress(b"\x00\x80" if (width, height) == (1, 1) else b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + ihdr + text_chunks + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def itxt(key: str, text: str) -> bytes:
    return chunk(b"iTXt", key.encode() + b"\0\0\0\0\0" + text.encode("utf-8"))


def png_with_recipe(box: Sandbox, name: str, recipe: str, **kw) -> Path:
    return box.write(name, png(itxt("dreamnodes:recipe", recipe), **kw))



# ----------------------------------------------------------------------------
# peak memory of one case

CASE_MEMORY = 1 << 30  # what any one hostile case may add to the process's peak resident memory


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class PeakMemory:
    """How far the process's peak resident memory rose above where it stood, over a block.

    Linux keeps the peak (VmHWM) and lets a process reset it to the present
    (writing 5 to /proc/self/clear_refs); `grown` is None where that is not
    possible, so the figure is never a guess."""

    grown: int | None = None

    def __enter__(self) -> "PeakMemory":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._start = _status_kb("VmRSS")
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc) -> None:
        if self._start is not None:
            self.grown = max(0, _status_kb("VmHWM") - self._start)


# ----------------------------------------------------------------------------
# cases and their check

@dataclass
class Case:
    id: str
    source: str | Callable[[Sandbox], Path]  # a fixture name, or a function making the input
    error: type | None  # the exact class, or None: the run succeeds
    phrases: tuple[str, ...] = ()
    command: str = "run"  # run, validate or show
    args: tuple[str, ...] | Callable[[Sandbox], tuple[str, ...]] = ()
    field: tuple[str | None, str | None] | None = None  # (node, field) of the first problem
    writes: tuple[str, ...] = ()  # files the output folder must hold afterwards


EXIT = {RecipeError: 2, UsageError: 2, NodeError: 1, None: 0}


def source_of(case: Case, box: Sandbox) -> Path:
    if callable(case.source):
        return case.source(box)
    if case.source.startswith("../"):
        return (HOSTILE / case.source).resolve()
    return box.fixture(case.source)


def check_case(case: Case, sandbox: Sandbox, capsys, preexisting: set[str] = frozenset()) -> str:
    """Run one case as a user would and check everything the catalogue promises; returns stderr."""
    path = source_of(case, sandbox)
    args = case.args(sandbox) if callable(case.args) else case.args
    before = sandbox.snapshot()
    errors: list = []
    argv = [case.command, str(path), *args]
    if case.command == "run":
        argv = argv + (["--out", str(sandbox.out)] if "--out" not in args else []) + ["-q"]
    with PeakMemory() as peak:
        code = main(argv, errors=errors)
    out, err = capsys.readouterr()
    # a stranger's few kilobytes never cost the user's machine a gigabyte
    assert peak.grown is None or peak.grown < CASE_MEMORY, f"the case took {peak.grown / 2**20:.0f} MB"

    # the exact kind of error, its exit code, and a message without a traceback
    assert code == EXIT[case.error], (code, err)
    assert "Traceback" not in out + err
    assert "\x1b" not in out + err and "\x07" not in out + err  # no escape sequence reaches the terminal
    if case.command == "show":  # the recipe is printed, its escape sequences shown, not acted on
        assert "\\x1b[2J" in out and "type: image.save" in out
    if case.error is None:
        assert errors == [] and "error" not in err
    else:
        (exc,) = errors
        assert type(exc) is case.error or (case.error is NodeError and isinstance(exc, NodeError)), exc
        assert err.startswith("error: ")
        for phrase in case.phrases:
            assert phrase in err, (phrase, err)
        if case.field is not None:
            problem = exc.problems[0]
            assert (problem.node, problem.field) == case.field, problem
            assert problem.file == str(path) and problem.line, problem
    # nothing ran that a recipe smuggled in, and nothing changed outside the output folder
    assert tinynodes.EXECUTED == []
    assert sandbox.snapshot() == before
    assert not (sandbox.outside / "pwned").exists()
    # the output folder holds exactly the expected files: no partial or staged ones
    written = sorted(str(p.relative_to(sandbox.out)) for p in sandbox.out.rglob("*")
                     if p.is_file() or p.is_symlink())
    assert sorted(set(written) - preexisting) == sorted(case.writes), written
    assert not [p for p in sandbox.out.iterdir() if p.name.startswith(".dreamnodes-staging")]
    return err
