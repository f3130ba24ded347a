"""Image nodes: reading files of any mode with EXIF orientation, fitting sizes,
and the canvases (solid, gradient, noise)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from dreamnodes import Context
from dreamnodes.errors import NodeError
from dreamnodes.nodes import image as im
from dreamnodes.runtime.cli import main


def ctx_in(folder):
    return Context(node_id="photo", input_roots=(folder,))


def test_exif_orientation_is_honoured(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red, right half black
    pil = PILImage.fromarray(arr)
    exif = pil.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    pil.save(tmp_path / "p.jpg", exif=exif, quality=100)
    x = im.load(ctx_in(tmp_path), source="p.jpg", size=None).pixels
    assert x.shape == (1, 3, 40, 20)  # displayed upright: portrait
    assert x[0, 0, 2, 10] > 0.9 and x[0, 0, -3, 10] < 0.1  # red ends up on top


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    pil = PILImage.new("RGB", (16, 12), (200, 100, 50)).convert(mode)
    ext = "tiff" if mode in ("I;16", "CMYK") else "png"
    pil.save(tmp_path / f"p.{ext}")
    x = im.load(ctx_in(tmp_path), source=f"p.{ext}", size=None).pixels
    assert x.shape == (1, 3, 12, 16) and 0 <= x.min() and x.max() <= 1


def test_transparency_is_flattened_on_white(tmp_path):
    PILImage.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "t.png")
    x = im.load(ctx_in(tmp_path), source="t.png", size=None).pixels
    assert torch.allclose(x, torch.ones_like(x))


def test_webp_and_sizes(tmp_path):
    PILImage.new("RGB", (300, 200), (10, 20, 30)).save(tmp_path / "p.webp")
    c = ctx_in(tmp_path)
    assert im.load(c, source="p.webp", size=150).pixels.shape == (1, 3, 100, 150)
    assert im.load(c, source="p.webp", width=64, height=64, fit="cover").pixels.shape == (1, 3, 64, 64)
    boxed = im.load(c, source="p.webp", width=64, height=64, fit="contain").pixels
    assert boxed.shape == (1, 3, 64, 64) and boxed[0, :, 0, 32].mean() == 1.0  # letterbox bars


def test_not_a_picture_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "x.png").write_bytes(b"definitely not a png")
    with pytest.raises(NodeError, match="could not be read as a picture"):
        im.load(ctx_in(tmp_path), source="x.png")
    with pytest.raises(NodeError, match="does not exist"):
        im.load(ctx_in(tmp_path), source="nope.png")
    with pytest.raises(NodeError, match="outside the folders a recipe may read"):
        im.load(ctx_in(tmp_path), source="/etc/hostname")
    with pytest.raises(NodeError, match="no sample photo 'kitten'.*chelsea"):
        im.load(ctx_in(tmp_path), source="sample:kitten")


def test_canvases():
    solid = im.solid(color="#ff8000", width=10, height=6).pixels
    assert solid.shape == (1, 3, 6, 10) and torch.allclose(solid[0, :, 0, 0], torch.tensor([1.0, 128 / 255, 0.0]))
    grad = im.gradient(start="#000000", end="#ffffff", angle=0, width=16, height=4).pixels
    assert grad[0, 0, 0, 0] == 0 and grad[0, 0, 0, -1] == 1 and (grad[0, 0, 0, 1:] >= grad[0, 0, 0, :-1]).all()
    a = im.noise(Context(seed=1), width=8, height=8).pixels
    assert torch.equal(a, im.noise(Context(seed=1), width=8, height=8).pixels)
    assert not torch.equal(a, im.noise(Context(seed=2), width=8, height=8).pixels)


def test_layers_command_lists_paths_with_shapes(capsys):
    assert main(["layers", "mobilenet_v2", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "features.10" in out and "64x4x4" in out and "logits" in out and "1000" in out


def test_classes_command_searches_names(capsys):
    assert main(["classes", "web"]) == 0
    assert "815  spider web" in capsys.readouterr().out
