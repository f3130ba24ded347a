"""Pictures that re-run (issue 14, items 1 and 3): the provenance records what decides the pixels and
the input files' hashes; re-running a PNG compares itself with the original and says why it differs;
a missing or changed input says what to pass; --deterministic gives the same bits under any thread
count."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from dreamnodes.graphs.recipe import load_recipe
from dreamnodes.meta import PROVENANCE_KEY, RECIPE_KEY, read_png_text
from dreamnodes.runtime.cli import main
from dreamnodes.runtime.executor import Runner

TINY = """dreamnodes: 1
seed: 3
nodes:
  photo: {type: image.load, params: {source: rocket.jpg, size: 48}}
  out: {type: image.save, inputs: {image: photo}, params: {path: rocket_out.png}}
"""


def _photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((np.random.RandomState(seed).rand(48, 48, 3) * 255).astype("uint8")).save(path)


@pytest.fixture
def made(tmp_path):
    """A picture made from one's own photo: photos/rocket.jpg -> out/rocket_out.png."""
    _photo(tmp_path / "photos" / "rocket.jpg", 0)
    (tmp_path / "photos" / "tiny.yaml").write_text(TINY)
    assert main(["run", str(tmp_path / "photos" / "tiny.yaml"), "--out", str(tmp_path / "out"), "-q"]) == 0
    return tmp_path / "out" / "rocket_out.png"


def _provenance(png: Path) -> dict:
    return json.loads(read_png_text(png)[PROVENANCE_KEY])


def test_provenance_records_what_decides_the_pixels_and_the_inputs(made):
    import hashlib

    prov = _provenance(made)
    assert prov["threads"] == torch.get_num_threads()
    assert prov["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert prov["cpu"] and prov["deterministic"] is False and prov["device"] == "cpu"
    assert prov["onednn"] and prov["torch"] == torch.__version__
    digest = hashlib.sha256((made.parent.parent / "photos" / "rocket.jpg").read_bytes()).hexdigest()
    assert prov["inputs"] == {"photo.source": {"path": "rocket.jpg", "file": "rocket.jpg", "sha256": digest}}


def test_rerun_of_a_png_says_identical(made, tmp_path, capsys):
    capsys.readouterr()
    assert main(["run", str(made), "--out", str(tmp_path / "again"), "-q",
                 "--allow-read", str(tmp_path / "photos")]) == 0
    err = capsys.readouterr().err
    assert f"identical to {made}" in err


def _forge(made: Path, to: Path, **changes) -> None:
    """`made` as if made elsewhere: its pixels nudged, its provenance changed by `changes`."""
    text = read_png_text(made)
    prov = {**json.loads(text[PROVENANCE_KEY]), **changes}
    px = np.asarray(PILImage.open(made).convert("RGB")).astype(int)
    px[:4] = (px[:4] + 40) % 256  # 4 of 48 rows off by 40 or 216 levels
    info = PngInfo()
    info.add_itxt(RECIPE_KEY, text[RECIPE_KEY])
    info.add_itxt(PROVENANCE_KEY, json.dumps(prov))
    to.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(px.astype("uint8")).save(to, pnginfo=info)


def test_rerun_names_the_fields_that_differ(made, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere" / "rocket_out.png"
    _forge(made, elsewhere, threads=7, cpu_capability="AVX2", cpu="Other CPU 9000")
    capsys.readouterr()
    assert main(["run", str(elsewhere), "--out", str(tmp_path / "again"), "-q",
                 "--allow-read", str(tmp_path / "photos")]) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    here = _provenance(tmp_path / "again" / "rocket_out.png")
    n = torch.get_num_threads()
    assert line.startswith(f"{tmp_path / 'again' / 'rocket_out.png'}: mean difference ")
    assert "(max 216)" in line
    assert (f"made with 7 threads on AVX2 (Other CPU 9000), re-run with {n} thread{'' if n == 1 else 's'} "
            f"on {here['cpu_capability']} ({here['cpu']})") in line
    assert "torch" not in line and "seed" not in line  # only what differs


def test_missing_input_says_what_to_pass(made, tmp_path, capsys):
    assert main(["run", str(made), "--out", str(tmp_path / "again"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "input file 'rocket.jpg' does not exist" in err
    assert "the picture was made from rocket.jpg (sha256 " in err
    assert "put it next to the picture, or pass --allow-read DIR" in err
    assert "Traceback" not in err and not (tmp_path / "again").exists()


def test_changed_input_is_refused_unless_accepted(made, tmp_path, capsys):
    _photo(tmp_path / "other" / "rocket.jpg", 1)  # another photo of the same name
    args = ["run", str(made), "--out", str(tmp_path / "again"), "-q", "--allow-read", str(tmp_path / "other")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is not the file the picture was made from" in err and "--accept-changed-inputs" in err
    assert not (tmp_path / "again").exists()
    assert main(args + ["--accept-changed-inputs"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "re-running with it anyway" in err
    assert "made with input rocket.jpg (" in err and "mean difference" in err


def test_an_input_changed_with_set_is_not_checked(made, tmp_path, capsys):
    _photo(tmp_path / "other" / "moon.jpg", 2)
    assert main(["run", str(made), "--out", str(tmp_path / "again"), "-q", "--set",
                 f"photo.source={tmp_path / 'other' / 'moon.jpg'}", "--allow-read", str(tmp_path / "other")]) == 0


def test_deterministic_mode_is_for_one_run_and_keyed_apart(made, tmp_path):
    recipe = load_recipe(tmp_path / "photos" / "tiny.yaml")
    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    det = Runner(out_dir=tmp_path / "d", deterministic=True).run(recipe)
    assert det.provenance["deterministic"] is True and det.provenance["threads"] == 1
    assert (torch.get_num_threads(), torch.backends.mkldnn.enabled) == (threads, mkldnn)
    assert not torch.are_deterministic_algorithms_enabled()
    plain = Runner(out_dir=tmp_path / "p").run(recipe)
    assert plain.keys["photo"] != det.keys["photo"]  # a default-mode cached result is never returned


def test_deterministic_dream_is_bit_identical_under_1_and_2_threads(tmp_path):
    """Two processes, OMP_NUM_THREADS 1 and 2, a tiny dream: the same bytes of pixels."""
    exe = Path(sys.executable).with_name("dreamnodes")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "dreamnodes.runtime.cli"]),
           "run", "--deterministic", "--no-cache", "-q", "--set", "photo.size=64", "--set", "dream.octaves=2",
           "--set", "dream.steps=4"]
    procs = []
    for t in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(t), "MKL_NUM_THREADS": str(t)}
        procs.append(subprocess.Popen(cmd + ["--out", str(tmp_path / f"t{t}")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    a, b = (np.asarray(PILImage.open(tmp_path / f"t{t}" / "deepdream.png")) for t in (1, 2))
    assert max(a.shape[:2]) == 64 and np.array_equal(a, b)
    prov = _provenance(tmp_path / "t2" / "deepdream.png")
    assert prov["deterministic"] is True and prov["threads"] == 1
