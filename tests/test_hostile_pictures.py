"""Hostile pictures: file formats and the sizes pictures declare (issue 13, second pass).

Pictures are opened only through `dreamnodes.pictures.open_picture`: the content picks one of
PNG, JPEG, WebP, GIF, BMP, TIFF and Pillow is asked for that format only; what the file declares (its
header, every GIF frame's extent, frames x canvas) is checked against the run's limits before
any pixel is decoded. Sizes the nodes derive from their inputs (a contact sheet, held and
enlarged frames, a caption) are checked the same way. Every crafted file here is made by hand
and is a few hundred bytes.
"""
from __future__ import annotations

import io
import re
import struct
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from hostile import Case, Sandbox, check_case, png  # noqa: E402

from dreamnodes.errors import NodeError  # noqa: E402
from dreamnodes.limits import Limits  # noqa: E402

ACCEPTED = "use a PNG, JPEG or WebP file (GIF, BMP and TIFF are read too"
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"{ } loop\n%%EOF\n")  # a looping PostScript: Ghostscript would never return


def gif(screen: tuple[int, int], extents: list[tuple[int, int, int, int]]) -> bytes:
    """A GIF with a `screen` canvas and one 1x1-pixel-data frame per (x, y, w, h) extent."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    out += b"!\xff\x0bNETSCAPE2.0\x03\x01\0\0\0"
    for x, y, w, h in extents:
        out += b"!\xf9\x04\x00\x01\x00\x00\x00"  # 10 ms, no disposal
        out += b"," + struct.pack("<HHHHB", x, y, w, h, 0) + b"\x02\x02\x44\x01\x00"
    return out + b";"


def _recipe(box: Sandbox, nodes: str, name: str = "r.yaml") -> Path:
    return box.write(name, "dreamnodes: 1\nnodes:\n" + nodes)


def _load(file: str, data: bytes | None = None, node: str = "image.load", params: str = "",
          save: str = "image.save", out: str = "out.png"):
    def make(box: Sandbox) -> Path:
        if data is not None:
            box.write(file, data)
        return _recipe(box, f"  pic: {{type: {node}, params: {{source: {file}{params}}}}}\n"
                            f"  out: {{type: {save}, inputs: {{{'image' if save == 'image.save' else 'frames'}: pic}}, "
                            f"params: {{path: {out}}}}}\n")
    return make


def _grid(count: int, width: int, height: int, params: str = "") -> callable:
    def make(box: Sandbox) -> Path:
        refs = ", ".join(["a"] * count)
        return _recipe(box, f"  a: {{type: image.solid, params: {{width: {width}, height: {height}}}}}\n"
                            f"  g: {{type: image.grid, inputs: {{images: [{refs}]}}, params: {{{params}}}}}\n"
                            "  out: {type: image.save, inputs: {image: g}, params: {path: out.png}}\n")
    return make


def _held(width: int, hold: int, scale: int, path: str = "a.gif") -> callable:
    def make(box: Sandbox) -> Path:
        return _recipe(box, f"  a: {{type: image.solid, params: {{width: {width}, height: {width}}}}}\n"
                            "  f: {type: video.frames, inputs: {images: a}}\n"
                            f"  out: {{type: video.save, inputs: {{frames: f}}, params: {{path: {path}, "
                            f"hold: {hold}, scale: {scale}}}}}\n")
    return make


def _caption(length: int) -> callable:
    def make(box: Sandbox) -> Path:
        return _recipe(box, "  a: {type: image.solid, params: {width: 64, height: 64}}\n"
                            f"  g: {{type: image.grid, inputs: {{images: [a]}}, params: {{labels: [{'W' * length}]}}}}\n"
                            "  out: {type: image.save, inputs: {image: g}, params: {path: out.png}}\n")
    return make


CANVAS = [(0, 0, 1, 1)] * 2000  # 2000 one-pixel frames, each decoded on the whole canvas
CASES = [
    # file formats: the content decides, among raster formats only
    Case("pic_eps_named_png", _load("eps.png", EPS), NodeError,
         ("eps.png could not be read as a picture: it is a PostScript/EPS file, not a picture", ACCEPTED,
          "only these formats are read, whatever the file's name)")),
    Case("pic_pdf_named_jpg", _load("doc.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), NodeError,
         ("doc.jpg could not be read as a picture: it is a PDF, not a picture", ACCEPTED)),
    Case("pic_ico_named_png", _load("i.png", b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\0" * 32), NodeError,
         ("i.png could not be read as a picture: it is an ICO icon, not a picture", ACCEPTED)),
    # sizes declared by a picture's header, checked before any pixel is decoded
    Case("pic_png_declares_225_megapixels", _load("big.png", png(b"", 15000, 15000)), NodeError,
         ("big.png declares a picture far larger than this run reads: 15000 x 15000 (225,000,000 pixels), over "
          "the limit of 67,108,864 pixels", "--limit pixels=225000000")),
    Case("pic_png_declares_81_megapixels", _load("big.png", png(b"", 9000, 9000)), NodeError,
         ("9000 x 9000 (81,000,000 pixels), over the limit of 67,108,864 pixels", "--limit pixels=81000000")),
    Case("pic_png_over_side_and_pixels", _load("big.png", png(b"", 100_000, 1000)), NodeError,
         ("over the limit of 16384 px on a side and 67,108,864 pixels",
          "run with --limit side=100000 --limit pixels=100000000")),
    Case("pic_png_side_lowered", _load("p.png", png(b"", 300, 200), params=", size: 64"), NodeError,
         ("over the limit of 256 px on a side", "--limit side=300"), args=("--limit", "side=256")),
    Case("pic_png_limit_raised_then_read", _load("big.png", png(b"", 9000, 9000)), NodeError,
         ("big.png could not be read as a picture (image file is truncated", ACCEPTED),
         args=("--limit", "pixels=81000000")),
    Case("pic_gif_frame_grows_the_canvas", _load("g.gif", gif((1, 1), [(0, 0, 1, 1), (0, 0, 12000, 12000)]),
                                                 node="video.load", params=", frames: 2, size: 16",
                                                 save="video.save", out="out.gif"), NodeError,
         ("2 frames decoded on its 12000 x 12000 canvas (288,000,000 pixels)", "--limit pixels=288000000")),
    Case("pic_gif_canvas_times_frames", _load("g.gif", gif((4000, 4000), CANVAS), node="video.load",
                                              params=", frames: 20, every: 100, size: 16", save="video.save",
                                              out="out.gif"), NodeError,
         ("1901 frames decoded on its 4000 x 4000 canvas (30,416,000,000 pixels)", "over the limit of 67,108,864 "
          "pixels", "fewer frames (`frames`, `every`)", "--limit pixels=30416000000")),
    Case("pic_gif_too_many_frames_decoded", _load("g.gif", gif((1, 1), [(0, 0, 1, 1)] * 10_050), node="video.load",
                                                  params=", frames: 11, every: 1000, size: 16",
                                                  save="video.save", out="out.gif"), NodeError,
         ("10001 frames decoded on its 1 x 1 canvas", "over the limit of 10,000 frames", "--limit frames=10001")),
    Case("pic_gif_small_reads", _load("g.gif", gif((8, 8), [(0, 0, 1, 1)] * 4), node="video.load",
                                      params=", frames: 4, size: 16", save="video.save", out="out.gif"),
         None, writes=("out.gif",)),
    Case("video_not_a_container", _load("clip.mp4", EPS, node="video.load", params=", frames: 2, size: 16",
                                        save="video.save", out="out.gif"), NodeError,
         ("clip.mp4 could not be read as a video: it is not a video container dreamnodes reads",
          "not playlists or lists of other files")),
    # sizes nodes derive from their inputs
    Case("grid_many_big_pictures", _grid(64, 2048, 1024), NodeError,
         ("the contact sheet would be 16420 x 8228 (135,103,760 pixels), over the limit of 16384 px on a side and "
          "67,108,864 pixels", "--limit side=16420 --limit pixels=135103760")),
    Case("grid_empty_columns", _grid(1, 16384, 8, "columns: 256, padding: 256"), NodeError,
         ("the contact sheet would be 4260096 x 520", "--limit side=4260096 --limit pixels=2215249920")),
    Case("video_save_hold_times_scale", _held(64, 10000, 16), NodeError,
         ("10001 frames of 1024 x 1024 (10,486,808,576 pixels)", "over the limit of 67,108,864 pixels",
          "lower `hold` or `scale`", "--limit pixels=10486808576")),
    Case("caption_very_long", _caption(400_000), None, writes=("out.png",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_picture(case, sandbox, capsys):
    started = time.monotonic()
    check_case(case, sandbox, capsys)
    assert time.monotonic() - started < 60  # (the first case also imports every node family)


# ----------------------------------------------------------------------------
# the opener itself

def test_pillow_plugins_outside_the_list_are_never_asked(sandbox, capsys, monkeypatch):
    from PIL import EpsImagePlugin

    asked = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: asked.append("EPS"))
    check_case(CASES[0], sandbox, capsys)
    assert asked == []


NOT_PICTURES = {
    "eps": EPS, "eps_binary": b"\xc5\xd0\xd3\xc6" + b"\0" * 28, "pdf": b"%PDF-1.7\n",
    "ico": b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\0" * 32, "jpeg2000": b"\x00\x00\x00\x0cjP  \r\n",
    "svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>", "psd": b"8BPS\x00\x01" + b"\0" * 26,
    "pcx": b"\x0a\x05\x01\x08" + b"\0" * 124, "empty": b"", "text": b"hello",
}


@pytest.mark.parametrize("kind", NOT_PICTURES)
def test_the_opener_refuses_every_other_format(kind, tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from dreamnodes.pictures import open_picture

    path = tmp_path / "x.png"
    path.write_bytes(NOT_PICTURES[kind])
    monkeypatch.setattr(PILImage, "open", lambda *a, **k: pytest.fail("Pillow was asked"))
    with pytest.raises(NodeError, match=f"x.png could not be read as a picture: .*{re.escape(ACCEPTED)}"):
        with open_picture(path):
            pass


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_opener_reads_the_listed_formats_whatever_their_name(fmt, tmp_path):
    from PIL import Image as PILImage

    from dreamnodes.pictures import open_picture

    buf = io.BytesIO()
    PILImage.new("RGB", (12, 10), (200, 10, 10)).save(buf, format=fmt)
    path = tmp_path / "picture.dat"
    path.write_bytes(buf.getvalue())
    with open_picture(path) as (im, header):
        assert (header.format, header.width, header.height) == (fmt, 12, 10)
        assert im.convert("RGB").size == (12, 10)
    assert PILImage.MAX_IMAGE_PIXELS == int(1024 * 1024 * 1024 // 4 // 3)  # Pillow's own bound is back


def test_limits_reach_the_opener_through_the_context(tmp_path):
    from dreamnodes import Context
    from dreamnodes.nodes import image

    (tmp_path / "p.png").write_bytes(png(b"", 300, 200))
    ctx = Context(input_roots=(tmp_path,), limits=Limits({"pixels": 50_000}))
    with pytest.raises(NodeError, match="over the limit of 50,000 pixels; .* --limit pixels=60000"):
        image.load(ctx, source="p.png")


def test_a_gif_is_walked_without_decoding(tmp_path):
    from dreamnodes.pictures import open_picture

    path = tmp_path / "g.gif"
    path.write_bytes(gif((10, 10), [(0, 0, 1, 1), (5, 5, 30, 2), (0, 0, 1, 1)]))
    with open_picture(path, decode=3) as (im, header):
        assert (header.width, header.height, header.frames) == (35, 10, 3)
    with open_picture(path, decode=1) as (im, header):  # a still read looks at the first frame only
        assert (header.width, header.height, header.frames) == (10, 10, 1)


def test_a_long_caption_is_measured_a_bounded_number_of_times(monkeypatch):
    from PIL import ImageDraw

    from dreamnodes.nodes.image import _caption

    calls = []
    real = ImageDraw.ImageDraw.textbbox
    monkeypatch.setattr(ImageDraw.ImageDraw, "textbbox", lambda self, xy, text, **kw: (
        calls.append(len(text)), real(self, xy, text, **kw))[1])
    strip = _caption("W" * 100_000, 64, 20, (0, 0, 0), (1, 1, 1))
    assert tuple(strip.shape) == (3, 20, 64)
    assert len(calls) <= 20 and max(calls) <= 65
    calls.clear()
    _caption("short", 200, 20, (0, 0, 0), (1, 1, 1))
    assert calls == [5]  # a caption that fits is measured once


def test_video_save_counts_held_and_enlarged_frames_against_the_limit():
    import torch

    from dreamnodes import Context
    from dreamnodes.nodes import video
    from dreamnodes.types import Frames

    ctx = Context(limits=Limits({"pixels": 100_000}))
    with pytest.raises(NodeError, match=r"11 frames of 128 x 128 \(180,224 pixels\).*--limit pixels=180224"):
        video.save(Frames(torch.zeros(1, 3, 16, 16), 10.0), ctx, path="a.gif", hold=10, scale=8)


def test_video_containers_are_named_by_their_content():
    from dreamnodes.pictures import video_format

    assert video_format(b"\0\0\0\x20ftypisom") == "mov"
    assert video_format(b"\x1a\x45\xdf\xa3\x01") == "matroska"
    assert video_format(b"RIFF\0\0\0\0AVI LIST") == "avi"
    assert video_format(b"OggS\0") == "ogg"
    assert video_format(b"#EXTM3U\n") is None and video_format(b"ffconcat version 1.0") is None
    assert video_format(EPS) is None
