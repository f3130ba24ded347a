"""The hostile catalogue of the cache: entries that are not what their name says, reads that
would never end, the cache's setting, and files a node reads that its key must cover.

A cache entry proves which key it belongs to (the key is inside it and under its checksum), so
an entry copied over another key's file, an old-format entry, a truncated or oversized one, a
link, a FIFO or a device in an entry's place is a miss: the node is recomputed, the right
picture comes out, and nothing blocks. Every file a node reads is resolved once, by the
function the node opens it with, and its contents are in the node's key, however it is named
(a path, or `sample:NAME`).
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from hostile import TINY, Case, Sandbox, check_case  # noqa: E402

from dreamnodes.errors import NodeError, UsageError  # noqa: E402
from dreamnodes.runtime.cli import main  # noqa: E402


def _cache() -> Path:
    return Path(os.environ["DREAMNODES_CACHE_DIR"])


def _entries() -> set[Path]:
    return set(_cache().glob("*/*.dnc"))


def _solid(box: Sandbox, name: str, color: str) -> Path:
    return box.write(name, "dreamnodes: 1\nnodes:\n"
                           f"  pic: {{type: image.solid, params: {{color: '{color}', width: 8, height: 8}}}}\n"
                           "  out: {type: image.save, inputs: {image: pic}, params: {path: out.png}}\n")


def _run(box: Sandbox, recipe: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["run", str(recipe), "--out", str(box.out), "--overwrite"])  # each run replaces the last picture
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _pixel(box: Sandbox) -> tuple[int, int, int]:
    from PIL import Image

    with Image.open(box.out / "out.png") as im:
        return im.convert("RGB").getpixel((0, 0))


def _png(rgb: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------
# every file a node reads is in its key, however it is named

def test_a_sample_read_from_the_recipes_folder_is_keyed_by_what_it_reads(sandbox, capsys, monkeypatch):
    """`sample:chelsea` is found through the `skimage` package on the import path; a recipe's
    folder on that path (a notebook or `python -c` started there puts it first) holding a
    `skimage/data/chelsea.png` makes `sample:chelsea` read that file. It was keyed by the name
    alone, so editing the file gave the old picture back from the cache."""
    fake = sandbox.recipes / "skimage"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("raise SystemExit('never imported')\n")
    (fake / "data" / "chelsea.png").write_bytes(_png((255, 0, 0)))
    monkeypatch.delitem(sys.modules, "skimage", raising=False)
    monkeypatch.syspath_prepend(str(sandbox.recipes))
    recipe = sandbox.write("cat.yaml", "dreamnodes: 1\nnodes:\n"
                                       "  pic: {type: image.load, params: {source: 'sample:chelsea', size: 8}}\n"
                                       "  out: {type: image.save, inputs: {image: pic}, params: {path: out.png}}\n")
    assert _run(sandbox, recipe, capsys)[0] == 0
    assert _pixel(sandbox) == (255, 0, 0)
    (fake / "data" / "chelsea.png").write_bytes(_png((0, 0, 255)))  # edited: the next run reads it again
    code, err = _run(sandbox, recipe, capsys)
    assert code == 0 and "ran 2 node(s), 0 from cache" in err
    assert _pixel(sandbox) == (0, 0, 255)


def test_a_node_reading_a_file_its_key_does_not_cover_is_refused(tmp_path):
    """The runtime resolves a node's files once, for its key; the node opens exactly those, and
    a file asked for under any other name (a parameter not declared InPath) is refused."""
    from dreamnodes.context import Context

    (tmp_path / "a.png").write_bytes(_png((1, 2, 3)))
    ctx = Context(input_roots=(tmp_path,), files={"a.png": tmp_path / "a.png"})
    assert ctx.input_path("a.png") == tmp_path / "a.png"
    with pytest.raises(NodeError, match="its cache key would not cover it"):
        ctx.input_path("./a.png")


# ----------------------------------------------------------------------------
# an entry proves which key it belongs to

def test_an_entry_copied_over_another_keys_entry_is_not_returned(sandbox, capsys):
    red, blue = _solid(sandbox, "red.yaml", "#ff0000"), _solid(sandbox, "blue.yaml", "#0000ff")
    assert _run(sandbox, red, capsys)[0] == 0
    (red_entry,) = _entries()
    assert _run(sandbox, blue, capsys)[0] == 0
    (blue_entry,) = _entries() - {red_entry}
    shutil.copyfile(red_entry, blue_entry)  # a valid entry, checksum and all, under the wrong name
    code, err = _run(sandbox, blue, capsys)
    assert code == 0 and "ran 2 node(s), 0 from cache" in err
    assert _pixel(sandbox) == (0, 0, 255)  # blue, not the red entry's picture
    assert _run(sandbox, blue, capsys)[1].count("from cache") == 1 and _pixel(sandbox) == (0, 0, 255)


def test_an_old_format_entry_is_a_miss(sandbox, capsys):
    """An entry of the format before keys were inside entries (DNC1: magic, checksum, payload)."""
    import hashlib

    blue = _solid(sandbox, "blue.yaml", "#0000ff")
    assert _run(sandbox, blue, capsys)[0] == 0
    (entry,) = _entries()
    red = _solid(sandbox, "red.yaml", "#ff0000")
    assert _run(sandbox, red, capsys)[0] == 0
    (red_entry,) = _entries() - {entry}
    blob = red_entry.read_bytes()
    payload = blob[blob.index(b"PK\x03\x04"):]  # the torch.save archive
    entry.write_bytes(b"DNC1" + hashlib.sha256(payload).digest() + payload)  # valid as DNC1, red inside
    code, err = _run(sandbox, blue, capsys)
    assert code == 0 and "ran 2 node(s), 0 from cache" in err and _pixel(sandbox) == (0, 0, 255)


# ----------------------------------------------------------------------------
# reads that never end: an entry is a regular file of bounded size, opened without blocking

def _in_thread(fn, seconds: float = 20.0):
    got: dict = {}
    t = threading.Thread(target=lambda: got.setdefault("value", fn()), daemon=True)
    t.start()
    t.join(seconds)
    return t.is_alive(), got.get("value")


def _replace_entry(sandbox, capsys, make) -> tuple[Path, Path]:
    recipe = _solid(sandbox, "blue.yaml", "#0000ff")
    assert _run(sandbox, recipe, capsys)[0] == 0
    (entry,) = _entries()
    entry.unlink()
    make(entry)
    (sandbox.out / "out.png").unlink()
    return recipe, entry


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_an_entry_does_not_block_the_run(sandbox, capsys):
    recipe, entry = _replace_entry(sandbox, capsys, os.mkfifo)
    blocked, code = _in_thread(lambda: main(["run", str(recipe), "--out", str(sandbox.out), "-q"]))
    if blocked:  # let the stuck reader go before failing
        with open(entry, "wb"):
            pass
    assert not blocked, "the run blocked reading a FIFO in the cache"
    assert code == 0 and _pixel(sandbox) == (0, 0, 255)
    assert entry.is_file()  # the FIFO is gone; the recomputed entry is in its place
    from dreamnodes.runtime.cache import Cache

    os.unlink(entry)
    os.mkfifo(entry)
    blocked, bad = _in_thread(lambda: Cache(_cache()).verify())
    assert not blocked and bad == [entry]


def test_a_link_to_a_device_in_place_of_an_entry_is_not_followed(sandbox, capsys):
    """/dev/zero never ends: read whole, it would fill the memory."""
    recipe, entry = _replace_entry(sandbox, capsys, lambda e: e.symlink_to("/dev/zero"))
    blocked, code = _in_thread(lambda: main(["run", str(recipe), "--out", str(sandbox.out), "-q"]))
    assert not blocked and code == 0 and _pixel(sandbox) == (0, 0, 255)
    assert entry.is_file() and not entry.is_symlink()


def test_a_huge_entry_is_refused_before_it_is_read(sandbox, capsys):
    """A sparse file of 64 GB in an entry's place: its size is checked before a byte is read."""
    def huge(entry: Path) -> None:
        with open(entry, "wb") as f:
            f.truncate(64 * 1024**3)

    recipe, entry = _replace_entry(sandbox, capsys, huge)
    code, err = _run(sandbox, recipe, capsys)
    assert code == 0 and "ran 2 node(s), 0 from cache" in err and _pixel(sandbox) == (0, 0, 255)
    assert entry.stat().st_size < 1024**2


def test_a_truncated_entry_is_recomputed(sandbox, capsys):
    recipe = _solid(sandbox, "blue.yaml", "#0000ff")
    assert _run(sandbox, recipe, capsys)[0] == 0
    (entry,) = _entries()
    blob = entry.read_bytes()
    for cut in (0, 3, 40, 100, len(blob) - 1):
        entry.write_bytes(blob[:cut])
        code, err = _run(sandbox, recipe, capsys)
        assert code == 0 and "ran 2 node(s), 0 from cache" in err and _pixel(sandbox) == (0, 0, 255), cut
        assert entry.read_bytes() == blob


# ----------------------------------------------------------------------------
# checkpoints hang off node keys: the same proof, the same bounded reads

def test_checkpoints_cannot_be_swapped_or_block(tmp_path):
    import torch

    from dreamnodes.runtime.cache import Cache
    from dreamnodes.runtime.checkpoints import NodeCheckpoints
    from dreamnodes.types import Image

    cache = Cache(tmp_path / "cache")
    cp = NodeCheckpoints(cache, "ab" * 32)
    cp.put("frame 0", Image(torch.zeros(1, 3, 8, 8)))
    cp.put("frame 1", Image(torch.ones(1, 3, 8, 8)))
    zero, one = (cache._path(cp._key(n)) for n in ("frame 0", "frame 1"))
    shutil.copyfile(zero, one)
    cache.clear_memory()
    assert cp.get("frame 1") is None and torch.equal(cp.get("frame 0").pixels, torch.zeros(1, 3, 8, 8))
    other = NodeCheckpoints(cache, "cd" * 32)  # another node's frame 0 is not this one's
    assert other.get("frame 0") is None
    if hasattr(os, "mkfifo"):
        zero.unlink()
        os.mkfifo(zero)
        cache.clear_memory()
        blocked, got = _in_thread(lambda: cp.get("frame 0"))
        assert not blocked and got is None


# ----------------------------------------------------------------------------
# the cache's setting: DREAMNODES_CACHE_MAX_MB

SETTING = {"inf": "inf", "nan": "nan", "minus-one": "-1", "abc": "abc", "1e400": "1e400", "empty-ish": " x1"}


def _tiny(box: Sandbox) -> Path:
    return box.write("tiny.yaml", TINY)


CASES = [
    Case(f"cache-max-mb-{name}", _tiny, UsageError,
         ("DREAMNODES_CACHE_MAX_MB", f"got {value.strip()!r}", "must be a number of megabytes (finite, >= 0",
          "DREAMNODES_CACHE_MAX_MB=4096", "or unset it"))
    for name, value in SETTING.items()
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cache_setting(case, sandbox, capsys, monkeypatch):
    monkeypatch.setenv("DREAMNODES_CACHE_MAX_MB", SETTING[case.id[len("cache-max-mb-"):]])
    check_case(case, sandbox, capsys)


@pytest.mark.parametrize("value, limit", [("0", 0), ("1.5", 1572864), (" 64 ", 64 * 1024**2)])
def test_good_cache_settings_still_work(value, limit, monkeypatch):
    from dreamnodes.runtime.cache import Cache

    monkeypatch.setenv("DREAMNODES_CACHE_MAX_MB", value)
    assert Cache().max_bytes == limit
