"""Pictures and videos from files: the one way dreamnodes opens them.

A picture file comes from a stranger. Its first bytes decide its format among an explicit
list of raster formats (PNG, JPEG, WebP, GIF, BMP, TIFF) and Pillow is asked for that one format
only (`formats=`), so a PostScript, EPS, PDF or any other file named `.png` never reaches a
plugin that hands it to an interpreter (Ghostscript) or an exotic decoder. The size the file
declares (its header; for a GIF every frame's extent too, walked without decoding) is checked
against the run's limits (`side`, `pixels`, and for animations the frames decoded x the
canvas, and `frames`) before a single pixel is decoded; the message names the `--limit` that
would allow it. Pillow's own decompression-bomb bound (~179 MP, fixed) is replaced by these
checks while our opener runs, so `--limit pixels=N` can raise it and nothing under it slips by.

Videos read by ffmpeg are sniffed the same way: `video_format` names the one demuxer ffmpeg is
told to use (`-f`), so ffmpeg never guesses a container from the content.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import NodeError
from .limits import DEFAULT_LIMITS, Limits

#: the largest side of a picture read from a file unless `--limit side=N` says otherwise
MAX_SIDE = 16384
ACCEPTED = "PNG, JPEG or WebP file (GIF, BMP and TIFF are read too"  # closed by each message
#: what other files people name .png look like, for a message that says what the file is
_LOOKS_LIKE = ((b"%!PS", "a PostScript/EPS file"), (b"\xc5\xd0\xd3\xc6", "an EPS file"), (b"%PDF", "a PDF"),
               (b"\x00\x00\x01\x00", "an ICO icon"),
               (b"<?xml", "an XML/SVG file"), (b"<svg", "an SVG file"), (b"8BPS", "a Photoshop file"))
_PILLOW = threading.RLock()  # Pillow's bomb bound is a module global: one opener changes it at a time


@dataclass(frozen=True)
class Header:
    """What a picture file declares, read without decoding it: its format, canvas and frames."""

    format: str
    width: int
    height: int
    frames: int = 1


def picture_format(head: bytes) -> str | None:
    """The Pillow format of a file from its first 16 bytes, if it is one dreamnodes decodes."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _refuse_format(name: str, head: bytes) -> NodeError:
    what = next((w for magic, w in _LOOKS_LIKE if head.lstrip(b"\r\n\t ").startswith(magic)), None)
    seems = f"it is {what}, not a picture" if what else "it is not a picture in a format dreamnodes reads"
    return NodeError(f"{name} could not be read as a picture: {seems}; use a {ACCEPTED}; only these formats "
                     "are read, whatever the file's name)")


def refuse_size(subject: str, width: int, height: int, limits: Limits = DEFAULT_LIMITS, count: int = 1,
                advice: str = "make it smaller", count_kind: str | None = None) -> None:
    """Refuse `count` pictures of width x height (a file's, or one a node is about to make) over the
    run's limits: a side over `side`, width x height x count over `pixels`, and, with `count_kind`,
    count over that limit. The message names every `--limit` that would allow it."""
    side, pixels = limits.bound("side", MAX_SIDE), limits.bound("pixels", None)
    total = width * height * count
    over, flags = [], []
    if max(width, height) > side:
        over.append(f"{side} px on a side")
        flags.append(f"--limit side={max(width, height)}")
    if total > pixels:
        over.append(f"{pixels:,} pixels")
        flags.append(f"--limit pixels={total}")
    if count_kind and count > limits.bound(count_kind, None):
        over.append(f"{limits.bound(count_kind, None):,} {count_kind}")
        flags.append(f"--limit {count_kind}={count}")
    if over:
        raise NodeError(f"{subject} ({total:,} pixels), over the limit of {' and '.join(over)}; {advice}, "
                        f"or if this machine can take it, run with {' '.join(flags)}")


def check_size(name: str, header: Header, limits: Limits = DEFAULT_LIMITS, decoded: int = 1) -> None:
    """Refuse a picture file (or `decoded` frames of an animation, each decoded on its whole canvas)
    whose declared size is over the run's limits."""
    w, h = header.width, header.height
    what = f"{w} x {h}" if decoded == 1 else f"{decoded} frames decoded on its {w} x {h} canvas"
    less = "use a smaller picture" if decoded == 1 else "read fewer frames (`frames`, `every`) or a smaller animation"
    refuse_size(f"{name} declares a picture far larger than this run reads: {what}", w, h, limits, decoded, less,
                "frames" if decoded > 1 else None)


def _gif_extent(f, decode: int) -> tuple[int, int, int]:
    """(width, height, frames) of a GIF: its screen grown by every frame's extent (as Pillow grows
    its canvas), over at most `decode` frames, walking the blocks without decoding a pixel."""
    f.seek(0)
    head = f.read(13)
    if len(head) < 13:
        return 0, 0, 1  # Pillow says what is wrong with it
    w, h, flags = int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little"), head[10]
    if flags & 0x80:
        f.seek(3 << ((flags & 7) + 1), 1)
    frames = 0
    while frames < decode:
        kind = f.read(1)
        if kind in (b"", b";"):
            break
        if kind == b"!":
            f.read(1)
            _skip_blocks(f)
        elif kind == b",":
            d = f.read(9)
            if len(d) < 9:
                break
            x0, y0 = int.from_bytes(d[0:2], "little"), int.from_bytes(d[2:4], "little")
            w = max(w, x0 + int.from_bytes(d[4:6], "little"))
            h = max(h, y0 + int.from_bytes(d[6:8], "little"))
            if d[8] & 0x80:
                f.seek(3 << ((d[8] & 7) + 1), 1)
            f.read(1)  # LZW code size
            _skip_blocks(f)
            frames += 1
        else:
            break  # garbage: Pillow stops there too
    return w, h, max(frames, 1)


def _skip_blocks(f) -> None:
    n = f.read(1)
    while n and n[0]:
        data = f.read(n[0] + 1)
        if len(data) < n[0] + 1:
            return
        n = data[-1:]


@contextmanager
def open_picture(path: Path, limits: Limits = DEFAULT_LIMITS, decode: int = 1,
                 what: str = "a picture") -> Iterator[tuple]:
    """`with open_picture(path, ctx.limits) as (im, header):` a Pillow image of a checked file.

    The format comes from the content (one of PNG, JPEG, WebP, GIF, BMP, TIFF; anything else is refused),
    and the declared size, with `decode` the most frames the caller decodes (frames up to its last
    kept one), is checked against `limits` before anything is decoded. Pillow's errors while the
    block runs become a NodeError that names the file."""
    from PIL import Image as PILImage

    name = Path(path).name
    with open(path, "rb") as f:
        head = f.read(16)
        fmt = picture_format(head)
        if fmt is None:
            raise _refuse_format(name, head)
        gif = _gif_extent(f, decode) if fmt == "GIF" else None
    with _PILLOW:
        saved, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None  # check_size bounds it
        try:
            with PILImage.open(path, formats=[fmt]) as im:
                w, h, frames = gif or (*im.size, getattr(im, "n_frames", 1) if decode > 1 else 1)
                header = Header(fmt, max(w, im.width), max(h, im.height), frames)
                check_size(name, header, limits, min(decode, frames))
                yield im, header
        except NodeError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:  # UnidentifiedImageError too
            raise NodeError(f"{name} could not be read as {what} ({exc}); use a {ACCEPTED})") from None
        finally:
            PILImage.MAX_IMAGE_PIXELS = saved


def video_format(head: bytes) -> str | None:
    """The ffmpeg demuxer for a video file from its first 512 bytes (MP4/MOV, Matroska/WebM, AVI,
    MPEG-PS, MPEG-TS, Ogg, FLV), or None: not a video container dreamnodes reads. ffmpeg is told
    this demuxer (`-f`), so it never guesses one from the content."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "mpegts"  # three packets' sync bytes
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"FLV"):
        return "flv"
    return None
