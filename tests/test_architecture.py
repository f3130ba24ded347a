"""The layout holds: imports point one way, functions stay short, a family is one file.

Layers, top to bottom: the editor and the command line; the runtime; the recipe format
(graphs); the vocabulary (the root package). Node families sit beside the runtime's view of
them: they use only the vocabulary and each other, and the runtime finds them through the
registry, never by importing them.
"""
import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"dreamnodes": "dreamnodes", "nodes": "dreamnodes.nodes", "graphs": "dreamnodes.graphs",
           "runtime": "dreamnodes.runtime", "editor": "dreamnodes.editor"}
#: the packages each layer may import from (besides itself and third-party code)
ALLOWED = {
    "vocabulary": {"vocabulary"},
    "nodes": {"vocabulary", "nodes"},
    "graphs": {"vocabulary", "graphs"},
    "runtime": {"vocabulary", "graphs", "runtime"},
    "cli": {"vocabulary", "graphs", "runtime", "nodes", "cli"},
    "editor": {"vocabulary", "graphs", "runtime", "nodes", "editor"},
}
QT = ("PySide6", "qtpy", "nodeeditor", "PyQt5", "PyQt6")


def modules():
    """(file, dotted module name, layer) of every source module of the package."""
    for folder, package in FOLDERS.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            rel = f.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            layer = {"dreamnodes": "vocabulary"}.get(folder, folder)
            if name == "dreamnodes.runtime.cli":
                layer = "cli"
            yield f, name, layer


def layer_of(module: str) -> str | None:
    if not module.startswith("dreamnodes"):
        return None
    if module == "dreamnodes.runtime.cli":
        return "cli"
    for layer in ("nodes", "graphs", "runtime", "editor"):
        if module == f"dreamnodes.{layer}" or module.startswith(f"dreamnodes.{layer}."):
            return layer
    return "vocabulary"


def imports(path: Path, name: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out += [(n.lineno, a.name) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                base = ".".join(up + ([n.module] if n.module else []))
            out += [(n.lineno, f"{base}.{a.name}" if not n.module and n.level else base) for a in n.names]
    return out


def test_imports_point_one_way():
    wrong = []
    for path, name, layer in modules():
        for line, target in imports(path, name):
            other = layer_of(target)
            if other is not None and other not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {target} ({other})")
            if layer != "editor" and target.split(".")[0] in QT:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: Qt below the editor ({target})")
    assert not wrong, "\n".join(wrong)


def is_node(fn: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and getattr(d.func, "id", getattr(d.func, "attr", None)) == "node"
               for d in fn.decorator_list)


def test_no_function_is_longer_than_sixty_lines():
    """Node functions may be longer where their signature and docstring are their spec; their
    bodies may not."""
    long = []
    sources = [p for p, _, _ in modules()] + sorted((ROOT / "bench").glob("*.py")) + sorted(
        (ROOT / "examples").glob("*.py"))
    for path in sources:
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            start = fn.lineno
            if is_node(fn):
                doc = fn.body[0] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else None
                start = fn.body[1].lineno if doc is not None and len(fn.body) > 1 else fn.body[0].lineno
            if fn.end_lineno - start + 1 > 60:
                long.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: {fn.end_lineno - start + 1} lines")
    assert not long, "\n".join(long)


FAMILY = '''
"""A family made by a test: shouting pictures."""
from dreamnodes import node
from dreamnodes.types import Image


@node("shout.brighten")
def brighten(image: Image, amount: float = 0.5) -> Image:
    """Brighten a picture.

    Args:
        amount: how much to add to every pixel.
    """
    return Image((image.pixels + amount).clamp(0, 1))
'''


@pytest.fixture
def family_folder(tmp_path, monkeypatch):
    """A temporary folder that is part of the dreamnodes.nodes package, with one new family file."""
    from dreamnodes import registry
    import dreamnodes.nodes

    (tmp_path / "shout.py").write_text(FAMILY)
    monkeypatch.setattr(dreamnodes.nodes, "__path__", [*dreamnodes.nodes.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_loaded", False)
    yield tmp_path
    registry.REGISTRY.pop("shout.brighten", None)
    sys.modules.pop("dreamnodes.nodes.shout", None)


def test_a_new_family_is_one_file(family_folder, tmp_path, capsys):
    from dreamnodes.graphs import parse_recipe
    from dreamnodes.registry import load_all
    from dreamnodes.runtime import Runner
    from dreamnodes.runtime.cli import main

    assert "shout.brighten" in load_all()
    assert main(["nodes", "shout.brighten"]) == 0
    assert "dreamnodes.nodes.shout" in capsys.readouterr().out
    recipe = parse_recipe("""
dreamnodes: 1
nodes:
  grey: {type: image.solid, params: {color: '#404040', width: 16, height: 16}}
  bright: {type: shout.brighten, inputs: {image: grey}, params: {amount: 0.25}}
""")
    out = Runner(use_cache=False, out_dir=tmp_path / "out").run(recipe).output("bright")
    assert out.pixels.mean().item() == pytest.approx(0x40 / 255 + 0.25, abs=1e-6)


def code_blocks(doc: Path) -> dict[str, str]:
    """The Python blocks of a document, by the file named on their first line (`# nodes/x.py`)."""
    text, blocks = doc.read_text(), {}
    for block in text.split("```python\n")[1:]:
        code = block.split("```", 1)[0]
        first = code.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            blocks[first[2:]] = code
    return blocks


def test_the_architecture_examples_run(tmp_path, monkeypatch):
    """docs/architecture.md's examples are real: each, pasted into its file, works."""
    import torch

    from dreamnodes.registry import REGISTRY, load_all
    from dreamnodes.types import Image

    load_all()
    blocks = code_blocks(ROOT / "docs" / "architecture.md")
    assert {"nodes/sketch.py", "nodes/transform.py", "nodes/param.py", "nodes/objective.py"} <= set(blocks)
    before = set(REGISTRY)
    try:
        for file, code in blocks.items():
            if file.startswith("nodes/"):
                module = importlib.import_module("dreamnodes.nodes." + Path(file).stem) \
                    if file != "nodes/sketch.py" else None
                exec(compile(code, file, "exec"), dict(vars(module)) if module else {"__name__": "sketch"})
        added = set(REGISTRY) - before
        assert {"sketch.invert", "transform.flip", "param.grey", "objective.peak"} <= added
        pic = Image(torch.rand(1, 3, 8, 8))
        assert torch.allclose(REGISTRY["sketch.invert"].fn(pic).pixels, 1 - pic.pixels)
        flip = REGISTRY["transform.flip"].fn()
        assert torch.equal(flip(pic.pixels, torch.Generator()), pic.pixels.flip(3))
    finally:
        for name in set(REGISTRY) - before:
            REGISTRY.pop(name)
