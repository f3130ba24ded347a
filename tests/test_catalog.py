"""The node catalogue on disk: specs without importing torch, and never stale."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from dreamnodes import catalog
from dreamnodes.registry import load_all

ROOT = Path(__file__).resolve().parent.parent


def _same(a, b) -> list[str]:
    return [f.name for f in dataclasses.fields(a) if f.name not in ("fn", "memory")
            and getattr(a, f.name) != getattr(b, f.name)]


def test_every_spec_survives_the_trip_through_json():
    registry = load_all()
    back = catalog.decode(json.loads(json.dumps(catalog.encode(registry))))
    assert sorted(back) == sorted(registry)
    assert {name: _same(registry[name], back[name]) for name in registry} == {name: [] for name in registry}
    assert all((back[n].memory is None) == (registry[n].memory is None) for n in registry)
    assert back["image.solid"].module == registry["image.solid"].module


def test_a_socket_type_of_a_family_not_imported_is_a_stand_in_that_validates_alike():
    registry = load_all()
    data = json.loads(json.dumps(catalog.encode(registry)))
    (ref,) = [r for r in data["sockets"] if not r.startswith("dreamnodes.types:")]
    module, _, name = ref.partition(":")
    saved = sys.modules.pop(module)
    try:
        catalog._STAND_INS.clear()
        back = catalog.decode(data)
    finally:
        sys.modules[module] = saved
    users = [s for s in back.values() for i in s.inputs if i.type.__qualname__ == name]
    makers = [s for s in back.values() for o in s.outputs if o.type.__qualname__ == name]
    assert users and makers
    stand_in = users[0].input([i.name for i in users[0].inputs if i.type.__qualname__ == name][0]).type
    assert stand_in is not getattr(saved, name) and stand_in.socket_name() == name
    assert all(o.type is stand_in for s in makers for o in s.outputs if o.type.__qualname__ == name)


def test_a_deferred_node_function_runs_the_real_node():
    back = catalog.decode(catalog.encode(load_all()))
    image = back["image.solid"].fn(width=8, height=9, color="#ff0000")
    assert tuple(image.pixels.shape) == (1, 3, 9, 8) and float(image.pixels[0, 0].min()) == 1.0


def test_the_second_reader_needs_no_torch(tmp_path):
    code = ("import sys, json; from dreamnodes import catalog; s = catalog.specs(sys.argv[1]); "
            "print(json.dumps([sorted(s), 'torch' in sys.modules]))")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    first, second = (json.loads(subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True,
                                               capture_output=True, text=True).stdout) for _ in range(2))
    builtin = sorted(n for n, s in load_all().items() if s.module.startswith("dreamnodes.nodes."))
    assert first[0] == second[0] == builtin  # (this process also has the tests' own nodes)
    assert first[1] is True  # the first builds the catalogue from the registry
    assert second[1] is False  # the second reads it: torch is never imported
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_a_changed_source_file_or_pack_is_a_new_fingerprint(tmp_path, monkeypatch):
    source = tmp_path / "family.py"
    source.write_text("x = 1\n")
    real = catalog._sources
    monkeypatch.setattr(catalog, "_sources", lambda: real() + [source])
    before = catalog.fingerprint()
    assert catalog.fingerprint() == before
    source.write_text("x = 22\n")
    assert catalog.fingerprint() != before


def test_a_damaged_catalogue_is_rebuilt_not_believed(tmp_path):
    calls = []
    assert catalog.memo(tmp_path, "facts", lambda: calls.append(1) or {"a": 1}) == {"a": 1}
    assert catalog.memo(tmp_path, "facts", lambda: calls.append(1) or {"a": 2}) == {"a": 1}
    assert len(calls) == 1
    (path,) = tmp_path.glob("*.json")
    path.write_bytes(b"{not json")
    assert catalog.memo(tmp_path, "facts", lambda: calls.append(1) or {"a": 3}) == {"a": 3}
    path.write_text(json.dumps({"name": "other facts", "value": 9}))  # another memo's file under this name
    assert catalog.memo(tmp_path, "facts", lambda: calls.append(1) or {"a": 4}) == {"a": 4}
    assert len(calls) == 3
