"""What decides a picture's pixels, and a re-run of a picture compared with the picture it came from.

Every PNG a run saves records, besides the versions, seed and weights (runtime/executor.py):

- the machine's side of the arithmetic (`environment`): torch's thread count, the instruction set
  its CPU kernels dispatch to (`cpu_capability`: AVX512, AVX2, DEFAULT...), the CPU's model name,
  the oneDNN and MKL versions, the CUDA, cuDNN and GPU when on CUDA, and whether the run was in
  deterministic mode (`--deterministic`, runtime/device.py);
- the input files it read (`inputs`): by `node.param`, the value the recipe gives, the file's name
  and its SHA-256, so a re-run can say which file to pass and notice another file of the same name.

`dreamnodes run PICTURE.png` checks the recorded inputs before it runs (`check_inputs`), and after
it compares each picture it wrote with the original of the same output (`compare_outputs`): one
line each, "identical" or the mean and largest difference and the recorded fields that differ.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from dreamnodes.errors import UsageError, printable
from dreamnodes.files import InputFileError, resolve_input, sha256_of
from dreamnodes.lazy import torch
from dreamnodes.meta import PROVENANCE_KEY, RECIPE_KEY, read_png_text

#: the provenance fields that decide the pixels, in the order a difference is told
PIXEL_FIELDS = ("threads", "cpu_capability", "cpu", "deterministic", "torch", "onednn", "mkl", "device",
                "cuda", "cudnn", "gpu", "torchvision", "seed", "weights", "inputs")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.partition(":")[2].split())
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    """oneDNN's and MKL's versions, from torch's build configuration."""
    config = torch.__config__.show()
    found = {}
    for key, pattern in (("onednn", r"(?:MKL-DNN|oneDNN)[^\n]*?v(\d+(?:\.\d+)+)"),
                         ("mkl", r"Math Kernel Library Version ([0-9.]+)")):
        m = re.search(pattern, config)
        if m:
            found[key] = m.group(1)
    return found


def environment(device, deterministic: bool) -> dict[str, Any]:
    """What, besides the recipe, seed and weights, decides the pixels of a run on `device` now."""
    env: dict[str, Any] = {"threads": torch.get_num_threads(), "cpu": cpu_model(),
                           "deterministic": bool(deterministic)}
    try:
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        pass
    env.update(_library_versions())
    if not torch.backends.mkldnn.enabled:
        env["onednn"] = "off"
    if getattr(device, "type", "") == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# ---------------------------------------------------------------- inputs
def input_record(params: dict[str, Any], files: dict[str, Any], identities: dict[str, Any]) -> dict[str, Any]:
    """The provenance of one node's input files: {param: {path, file, sha256}} for each file it read
    (identities: `executor.input_files`'s, a SHA-256 for files up to its size bound)."""
    record = {}
    for pname, ident in identities.items():
        value = params.get(pname)
        found = files.get(value)
        if isinstance(ident, str) and len(ident) == 64 and isinstance(found, Path):
            record[pname] = {"path": value, "file": found.name, "sha256": ident}
    return record


def check_inputs(recipe, provenance: dict[str, Any], roots: Iterable[Path], accept_changed: bool) -> list[str]:
    """Before re-running a picture: every input file it recorded must be there, with the same contents.

    A missing one is a UsageError naming the file, its hash and what to pass; one whose contents
    changed is refused (a UsageError naming the flag that goes on anyway) unless `accept_changed`,
    when it is a warning returned for printing. An input the re-run changed (`--set`) is not checked."""
    notes = []
    roots = tuple(roots)
    for target, rec in sorted((provenance.get("inputs") or {}).items()):
        nid, _, pname = target.partition(".")
        node = recipe.nodes.get(nid)
        if node is None or not isinstance(rec, dict) or node.params.get(pname) != rec.get("path"):
            continue
        path, digest = str(rec.get("path")), str(rec.get("sha256", ""))
        made = f"the picture was made from {rec.get('file', path)} (sha256 {digest[:12]}...)"
        try:
            found = resolve_input(path, roots)
        except InputFileError as exc:
            raise UsageError(f"node '{nid}': {exc}; {made}: put it next to the picture, or pass --allow-read DIR "
                             "for the folder that holds it") from None
        now = sha256_of(found)
        if now != digest:
            what = (f"node '{nid}': input file {printable(str(found), line=True)} is not the file the picture was "
                    f"made from: its sha256 is {now[:12]}..., but {made}")
            if not accept_changed:
                raise UsageError(f"{what}; pass --accept-changed-inputs to re-run with it anyway (a different "
                                 "picture), or --allow-read DIR for the folder that holds the original")
            notes.append(f"warning: {what}; re-running with it anyway (--accept-changed-inputs)")
    return notes


# ---------------------------------------------------------------- a re-run against its original
def read_provenance(path: Path) -> tuple[str | None, dict[str, Any]]:
    """(the recipe text, the provenance) a PNG carries; (None, {}) when it carries none or is unreadable."""
    try:
        text = read_png_text(path)
        prov = json.loads(text.get(PROVENANCE_KEY, "{}"))
    except (ValueError, OSError, RecursionError):
        return None, {}
    return text.get(RECIPE_KEY), prov if isinstance(prov, dict) else {}


def _describe(prov: dict[str, Any], fields: list[str]) -> str:
    """The fields of one side, as words: "4 threads on AVX512 (AMD EPYC 7B13), torch 2.14.1"."""
    def val(k):
        return prov.get(k, "unrecorded")

    parts = []
    if "threads" in fields:
        n = prov.get("threads")
        parts.append("unrecorded threads" if n is None else f"{n} thread{'' if n == 1 else 's'}")
    if "cpu_capability" in fields or "cpu" in fields:
        cpu = (f"on {val('cpu_capability')} ({val('cpu')})" if "cpu_capability" in prov or "cpu" in prov
               else "on an unrecorded CPU")
        if parts:  # "4 threads on AVX512 (...)"
            parts[-1] += " " + cpu
        else:
            parts.append(cpu)
    if "deterministic" in fields:
        parts.append("in deterministic mode" if prov.get("deterministic") else "in the default (fast) mode")
    names = {"torch": "torch", "onednn": "oneDNN", "mkl": "MKL", "device": "device", "cuda": "CUDA",
             "cudnn": "cuDNN", "gpu": "GPU", "torchvision": "torchvision"}
    parts += [f"{names[k]} {val(k)}" for k in fields if k in names]
    if "seed" in fields:
        parts.append(f"seed {val('seed')}")
    if "weights" in fields:
        parts.append("weights " + ", ".join(str(w) for w in (prov.get("weights") or {}).values()) or "unrecorded")
    if "inputs" in fields:
        files = [f"{r.get('file')} ({str(r.get('sha256'))[:12]})" for r in (prov.get("inputs") or {}).values()
                 if isinstance(r, dict)]
        parts.append("input " + ", ".join(files) if files else "unrecorded inputs")
    return ", ".join(parts)


def differing_fields(made: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The pixel-deciding provenance fields whose values differ (a field neither records is no difference)."""
    out = []
    for k in PIXEL_FIELDS:
        if k not in made and k not in now:
            continue
        if k == "deterministic" and not made.get(k) and not now.get(k):
            continue  # unrecorded (older pictures) is the default mode
        if made.get(k) != now.get(k):
            out.append(k)
    return out


def _pixels(source: Path | bytes, size: tuple[int, int] | None = None):
    """The picture's RGB levels; only its (width, height) when that is not `size` (never decoded then)."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    # both are PNGs (a re-run compares only pictures saved as PNG): no other decoder is ever asked
    with PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=["PNG"]) as im:
        if size is not None and im.size != size:
            return np.zeros((im.size[1], im.size[0], 0), dtype=np.int16)
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def compare_picture(original: Path, rerun: Path, made: dict[str, Any], now: dict[str, Any],
                    kept: bytes | None = None) -> str:
    """One line: how close the re-run `rerun` came to `original` (whose bytes are `kept` when the re-run
    may have replaced it), and what differs between their runs."""
    try:
        b = _pixels(rerun)
        a = _pixels(original if kept is None else kept, (b.shape[1], b.shape[0]))
    except Exception as exc:  # unreadable, damaged, a decompression bomb: the run itself is done
        return f"cannot compare with {original}: {type(exc).__name__}: {exc}"
    if a.shape != b.shape:
        return f"a different size from {original} ({a.shape[1]}x{a.shape[0]}, re-run {b.shape[1]}x{b.shape[0]})"
    diff = abs(a - b)
    if not diff.any():
        return f"identical to {original}"
    fields = differing_fields(made, now)
    line = f"mean difference {diff.mean():.1f} levels (max {int(diff.max())}) from {original}"
    if not any(k in made for k in ("threads", "cpu_capability", "cpu", "onednn")):
        known = [k for k in fields if k in now and k not in ("threads", "cpu_capability", "cpu", "onednn", "mkl")]
        return (f"{line}: it does not record its threads, CPU or library versions (made by an older dreamnodes)"
                + (f" and was made with {_describe(made, known)}" if known else "")
                + f"; re-run with {_describe(now, [k for k in fields if k in now])}")
    if not fields:
        return (line + ": everything recorded is the same (threads, CPU, versions, device); a result "
                "cached from a run made otherwise may be in play: re-run with --no-cache")
    return f"{line}: made with {_describe(made, fields)}, re-run with {_describe(now, fields)}"


def _save_pattern(path: str) -> re.Pattern:
    """The names an image.save `path` gives its files: placeholders ({n}, {seed}...) stand for anything,
    and a batch adds _0, _1... before the suffix."""
    p = Path(path)
    pieces = re.split(r"(\{[^{}]*\})", p.stem)
    stem = "".join(".+?" if x.startswith("{") else re.escape(x) for x in pieces)
    return re.compile(f"{stem}(?:_[0-9]+)?{re.escape(p.suffix)}")


def original_of(written: Path, out_dir: Path, picture: Path, save_paths: list[str], alone: bool = True) -> Path | None:
    """The original of the re-run output `written`: the re-run picture itself for the output it was
    saved as (its recipe's image.save path: the only one, or the one whose names the picture's name
    fits; `alone`: `written` is the only file the run wrote under that name), the file of the same
    name next to it for the others."""
    rel = written.resolve().relative_to(out_dir.resolve())
    picture = picture.resolve()
    mine = [p for p in save_paths if _save_pattern(p).fullmatch(picture.name)]
    if len(save_paths) == 1 and not mine:
        mine = save_paths  # the picture was renamed
    root = picture.parent
    if mine and len(Path(mine[0]).parts) > 1:  # saved into a folder inside the output folder
        root = Path(*picture.parts[:len(picture.parts) - len(Path(mine[0]).parts)])
    candidate = root / rel
    if candidate == picture or candidate.is_file():
        return candidate
    if alone and any(_save_pattern(p).fullmatch(rel.name) for p in mine):
        return picture  # saved under another name (a renamed picture, another {n})
    return None


def keep_original(picture: str | Path, out_dir: Path) -> bytes | None:
    """The bytes of the picture being re-run when the re-run writes into its folder (and may replace it)."""
    picture = Path(picture).resolve()
    out = out_dir.resolve()
    if picture.parent == out or out in picture.parents:
        try:
            return picture.read_bytes()
        except OSError:
            return None
    return None


def compare_outputs(picture: str | Path, recipe, written: Iterable[Path], out_dir: Path, now: dict[str, Any],
                    made: dict[str, Any], kept: bytes | None = None) -> list[str]:
    """A re-run of `picture` against its originals: one line per PNG written that has one. `made`: the
    picture's provenance and `kept` its bytes (see `keep_original`), both read before the run."""
    picture = Path(picture).resolve()
    saves = [str(n.params.get("path", "dream.png")) for n in recipe.nodes.values() if n.type == "image.save"]
    lines = []
    written = list(written)
    for w in written:
        if w.suffix.lower() != ".png":
            continue
        alone = sum(1 for x in written if any(_save_pattern(p).fullmatch(x.name) for p in saves
                                              if _save_pattern(p).fullmatch(w.name))) == 1
        original = original_of(w, out_dir, picture, saves, alone)
        mine = kept if original == picture else None
        if original is None or (original.resolve() == w.resolve() and mine is None):
            continue  # nothing to compare with, or only with itself
        prov = made if original == picture else read_provenance(original)[1]
        lines.append(f"{printable(str(w), line=True)}: {compare_picture(original, w, prov, now, mine)}")
    return lines
