"""Safe YAML reading that remembers where each value came from.

`read_yaml(text)` returns plain data (dicts, lists, scalars) and a map from
each value's path (a tuple of keys and indices) to its 1-based line, so that
validation can point at the line to fix. Only the standard YAML tags are
accepted (no `!!python/...`), aliases count towards a bound on the number of
values (no "billion laughs"), and nesting depth and text size are bounded.
Duplicate mapping keys are reported, not silently overwritten.

It does not interpret the data: which keys a recipe has and what they mean
is `recipe`'s and `validate`'s business (it only knows where a recipe's node
ids and fields sit in a path, to locate its errors).
"""
from __future__ import annotations

from typing import Any

import yaml

from dreamnodes.errors import Problem, RecipeError

MAX_BYTES = 2_000_000
MAX_VALUES = 100_000
MAX_DEPTH = 40

_STD_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "binary")
}
_SCALAR_OK = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null")}
_MERGE = "tag:yaml.org,2002:merge"


class _TooDeep(Exception):
    def __init__(self, mark, path: tuple):
        self.mark = mark
        self.path = path


class _Loader(yaml.SafeLoader):
    """The safe loader, with its (recursive) composer stopped past MAX_DEPTH levels, so that a
    deeply nested value is a message naming where it is, never a RecursionError."""

    def __init__(self, text: str):
        super().__init__(text)
        self.path: list = []  # the keys and indices of the node being composed

    def compose_node(self, parent, index):
        # a mapping composes each key with index None, its value with the key's node as index
        self.path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        try:
            if len(self.path) > MAX_DEPTH + 1:
                raise _TooDeep(self.peek_event().start_mark, tuple(k for k in self.path[1:] if k is not None))
            return super().compose_node(parent, index)
        finally:
            self.path.pop()


def _subject(path: tuple) -> tuple[str | None, str | None]:
    """(node id, field) that the value at `path` of a recipe belongs to."""
    if len(path) >= 2 and path[0] == "nodes":
        if len(path) >= 4 and path[2] in ("params", "inputs"):
            return str(path[1]), str(path[3])
        return str(path[1]), (str(path[2]) if len(path) >= 3 else None)
    return None, (str(path[0]) if path else None)


class _Reader:
    def __init__(self, text: str, file: str | None):
        self.file = file
        self.lines: dict[tuple, int] = {}
        self.duplicates: list[Problem] = []
        self.count = 0
        self.resolved: dict[int, dict[Any, tuple]] = {}
        self.loader = _Loader(text)

    def fail(self, message: str, node: yaml.Node | None = None, path: tuple = ()):
        line = node.start_mark.line + 1 if node is not None else None
        nid, field = _subject(path)
        raise RecipeError(Problem(message, self.file, line, nid, field))

    def pairs(self, node: yaml.MappingNode, path: tuple, depth: int) -> dict[Any, tuple]:
        """key -> (key node, value node) of a mapping, merge keys resolved as YAML defines them: a key
        the mapping writes itself overrides a merged one, and of `<<: [*a, *b]` the earlier wins. A key
        written twice by the mapping itself is a duplicate. Each mapping is resolved once (aliases share it)."""
        if id(node) in self.resolved:
            return self.resolved[id(node)]
        if depth > MAX_DEPTH:
            self.fail(f"the recipe is nested deeper than {MAX_DEPTH} levels", node, path)
        merged: dict[Any, tuple] = {}
        own: dict[Any, tuple] = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                bases = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for base in reversed(bases):  # applied last, the first one wins
                    if not isinstance(base, yaml.MappingNode):
                        self.fail("this is not valid YAML: a merge key (<<) takes a mapping or a list of "
                                  "mappings, e.g. '<<: *base'", base, path)
                    merged.update(self.pairs(base, path, depth + 1))
                continue
            if not isinstance(knode, yaml.ScalarNode) or knode.tag not in _SCALAR_OK:
                self.fail("mapping keys must be plain words", knode, path)
            key = self.loader.construct_object(knode)
            if key in own:
                nid, field = _subject(path + (key,))
                self.duplicates.append(Problem(
                    f"'{key}' appears twice in the same mapping; the ids and keys of a recipe must be unique",
                    self.file, knode.start_mark.line + 1, nid, field))
                continue
            own[key] = (knode, vnode)
        self.resolved[id(node)] = pairs = {**merged, **own}
        return pairs

    def walk(self, node: yaml.Node, path: tuple, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            self.fail(f"the recipe expands to more than {MAX_VALUES} values (nested aliases?); "
                      "a recipe is a short list of nodes", node, path)
        if depth > MAX_DEPTH:
            self.fail(f"the recipe is nested deeper than {MAX_DEPTH} levels", node, path)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if node.tag not in _STD_TAGS:
            self.fail(f"the tag {node.tag!r} is not allowed: a recipe holds plain data only "
                      "(no code, no custom types)", node, path)
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key, (knode, vnode) in self.pairs(node, path, depth).items():
                # a value is located at its key's line (a block mapping's value starts a line later)
                self.lines.setdefault(path + (key,), knode.start_mark.line + 1)
                out[key] = self.walk(vnode, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(v, path + (i,), depth + 1) for i, v in enumerate(node.value)]
        if node.tag not in _SCALAR_OK:
            self.fail(f"values of type {node.tag.rsplit(':', 1)[-1]} are not allowed in a recipe; "
                      "write them as strings", node, path)
        return self.loader.construct_object(node)


def too_large(size: int | None) -> str:
    """The message for a recipe file of `size` bytes (None: more than it may hold)."""
    return (f"the file is {'more than ' + str(MAX_BYTES) if size is None else size} bytes; "
            f"a recipe may be at most {MAX_BYTES}")


def read_yaml(text: str | bytes, file: str | None = None) -> tuple[Any, dict[tuple, int], list[Problem]]:
    """Parse YAML text safely. Returns (data, lines, duplicate-key problems)."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise RecipeError(Problem(too_large(len(text)), file))
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(Problem(f"the file is not UTF-8 text (byte {exc.start}); is it a recipe?", file))
    if len(text) > MAX_BYTES:
        raise RecipeError(Problem(f"the text is {len(text)} characters; a recipe may be at most {MAX_BYTES}", file))
    if "\x00" in text:
        raise RecipeError(Problem("the file contains NUL bytes; it is binary, not a YAML recipe", file))
    try:
        reader = _Reader(text, file)
    except yaml.reader.ReaderError as exc:  # a control character the YAML reader refuses
        line = text[:exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        raise RecipeError(Problem(f"the text holds the control character {exc.character:#06x}, which YAML does not "
                                  "allow; remove it (is this a recipe?)", file, line)) from None
    try:
        root = reader.loader.get_single_node()
        if root is None:
            return None, {}, []
        data = reader.walk(root, (), 0)
    except RecipeError:
        raise
    except _TooDeep as exc:
        raise RecipeError(Problem(f"the recipe is nested deeper than {MAX_DEPTH} levels", file,
                                  exc.mark.line + 1, *_subject(exc.path))) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = ", ".join(w for w in (exc.context, exc.problem) if w) or str(exc)
        raise RecipeError(Problem(f"this is not valid YAML: {what}", file, line)) from None
    except yaml.YAMLError as exc:
        raise RecipeError(Problem(f"this is not valid YAML: {exc}", file)) from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise RecipeError(Problem(f"the YAML could not be read: {exc}", file)) from None
    finally:
        reader.loader.dispose()
    return data, reader.lines, reader.duplicates


class _Dumper(yaml.SafeDumper):
    """Block style at the top, flow style for small leaf mappings, no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# characters YAML reads as line breaks: written raw (allow_unicode) inside a plain or single-quoted
# scalar they would come back as spaces, so such strings are written double-quoted, where they are escaped
_BREAKS = ("\x85", "\u2028", "\u2029")


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if any(c in text for c in _BREAKS) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def write_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None,
                     allow_unicode=True, width=100)
