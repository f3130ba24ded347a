"""Where a run's files go, and the rule that no earlier result is replaced without being asked.

An output path may hold placeholders (`dreamnodes.spec.placeholders`): `{seed}` (the recipe's
seed), `{n}` (the next free number: one more than the highest already in the output folder for
that name, the same for every output of the run), `{name}` (the recipe's name) and `{NODE.PARAM}`
(a parameter's checked value; a file a path parameter names gives its stem, `sample:chelsea`
gives `chelsea`). `output_names` fills them in before anything runs; `existing_outputs` lists
the files the run would replace, and the run refuses with `OutputsExist` unless it was asked to
overwrite (`--overwrite`, `Runner(overwrite=True)`, the editor's Run > Overwrite Existing Files).
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from dreamnodes.errors import UsageError, printable, shorten
from dreamnodes.files import sample_name
from dreamnodes.spec import NodeSpec, fill_placeholders, node_field, placeholders

_NUMBER = "\x00n\x00"  # stands for {n} while the other placeholders are filled in


class OutputsExist(UsageError):
    """The run would replace files an earlier run wrote; nothing ran (or, found when the files were
    about to move into place, nothing was written). `files`: the files; `example`: (node, param,
    the path with {n} in it) for the message's suggestion, or None."""

    def __init__(self, files: list[Path], example: tuple[str, str, str] | None = None):
        self.files, self.example = files, example
        shown = ", ".join(printable(shorten(str(f)), line=True) for f in files[:5])
        more = f" and {len(files) - 5} more" if len(files) > 5 else ""
        what = (f"{shown} is already there" if len(files) == 1 else f"{len(files)} files are already there: {shown}{more}")
        how = (f"--set {example[0]}.{example[1]}='{example[2]}'" if example else "a path with {n} in it")
        super().__init__(
            f"{what}, from an earlier run; this run would replace {'it' if len(files) == 1 else 'them'}. "
            f"Run with --overwrite (overwrite=True from Python) to replace, or give the output a new name: "
            f"{how} ({{n}} is the next free number; {{seed}}, {{name}} and a parameter's value such as "
            "{dream.steps} work too)")


def with_number(path: str) -> str:
    """`path` with `-{n}` before its extension (the suggestion for a name that is taken)."""
    p = PurePosixPath(path)
    return str(p.with_name(f"{p.stem}-{{n}}{p.suffix}")) if p.suffix else f"{path}-{{n}}"


def _value(recipe, params: Mapping[str, Mapping[str, Any]], registry: Mapping[str, NodeSpec], field: str) -> Any:
    """What the placeholder `field` (not n) stands for in this run."""
    if field == "seed":
        return recipe.seed
    if field == "name":
        return recipe.name or (Path(recipe.file).stem if recipe.file and not recipe.file.startswith("<") else "recipe")
    node, param = node_field(field)
    value = params[node].get(param)
    spec = registry[recipe.nodes[node].type]
    if isinstance(value, str) and spec.param(param).kind == "path":  # a file: its name without the suffix
        value = sample_name(value) or PurePosixPath(value.replace("\\", "/")).stem
    return value


def output_names(recipe, params, registry, out_dir: Path, nodes=None) -> dict[str, dict[str, str]]:
    """{node: {output path parameter: the path it writes}} for every output path with placeholders of
    `nodes` (default: all), filled in (params: every node's checked parameters, as validation, which
    checked the placeholders, gives them)."""
    templates = {}
    for nid in (params if nodes is None else nodes):
        node_params = params[nid]
        for p in registry[recipe.nodes[nid].type].params:
            value = node_params.get(p.name)
            if p.kind == "outpath" and isinstance(value, str) and ("{" in value or "}" in value):
                fields = placeholders(value)[0]
                values = {f: _NUMBER if f == "n" else _value(recipe, params, registry, f) for f in fields}
                templates[(nid, p.name)] = fill_placeholders(value, values, raw=("n",))
    number = 1 + max((_highest(out_dir, t) for t in templates.values() if _NUMBER in t), default=0)
    names: dict[str, dict[str, str]] = {}
    for (nid, pname), t in templates.items():
        names.setdefault(nid, {})[pname] = t.replace(_NUMBER, str(number))
    return names


def _highest(out_dir: Path, template: str) -> int:
    """The highest number that stands where {n} is, in the names already in the output folder (0: none).
    Any name that starts as the path does up to {n}, then digits, counts (`dream-3.png`, `dream-3_0.png`
    of a batch, `dream-3.gif`), so a new number never meets an old one."""
    prefix = template.split(_NUMBER, 1)[0].replace("\\", "/")
    folder, _, start = prefix.rpartition("/")
    pattern = re.compile(re.escape(start) + r"(\d+)")
    try:
        entries = list((out_dir / folder).iterdir()) if (out_dir / folder).is_dir() else []
    except OSError:
        return 0
    numbers = [int(m.group(1)) for e in entries if (m := pattern.match(e.name))]
    return max(numbers, default=0)


def signature(path: Path) -> tuple | None:
    """What tells a file from its next version: modification time, size, inode (None: not there)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _taken(target: Path) -> Path | None:
    """The resolved file at `target` if something a run would replace is there (a file, a link),
    else None. A folder of that name, or a name the file system refuses (too long), is left to the
    writing, whose message says what is wrong."""
    try:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            return target.resolve()
    except (OSError, RuntimeError):  # a name too long, a loop of links
        return None
    return None


def existing_outputs(recipe, params, registry, names: Mapping[str, Mapping[str, str]], out_dir: Path,
                     own: Mapping[Path, tuple] | None = None) -> tuple[list[Path], tuple[str, str, str] | None]:
    """(the files the run's output paths name that are already there, the first one's (node,
    param, path with {n})), leaving out `own` ({resolved path: signature}): files this runner wrote
    itself and nobody changed since (the node that wrote them is taken from the cache while they
    are there, writing nothing; if it runs again, the files are checked once more before they move)."""
    own = own or {}
    found, example = [], None
    for nid, node_params in params.items():
        for p in registry[recipe.nodes[nid].type].params:
            value = names.get(nid, {}).get(p.name, node_params.get(p.name))
            if p.kind != "outpath" or not isinstance(value, str):
                continue
            target = out_dir / value
            real = _taken(target)
            if real is not None and (real not in own or own[real] != signature(real)):
                found.append(target)
                example = example or (nid, p.name, with_number(node_params.get(p.name)))
    return found, example
