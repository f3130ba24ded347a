"""Recipes inside pictures: the PNG text chunks dreamnodes writes and reads.

Every PNG a run saves carries its recipe (YAML) and provenance (JSON) as
iTXt chunks, so any output can be opened, inspected and re-run. Reading is
plain data: the chunks are walked directly (the picture itself is never
decoded, so a picture declaring 100000 x 100000 pixels costs nothing),
checked against their CRCs, decompressed under a size bound, and the text is
handed to the safe recipe loader.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

from .files import open_regular

RECIPE_KEY = "dreamnodes:recipe"
PROVENANCE_KEY = "dreamnodes:provenance"
MAX_CHUNK = 2_000_000  # bytes of text in one text chunk, after decompression
MAX_TEXT = 8_000_000  # all text chunks of a picture together
#: a text chunk's header (keyword, flags, language, translated keyword) on top of its text
_MAX_HEADER = 1024
#: chunks walked in one picture (dreamnodes' pictures have a few hundred even when huge)
MAX_CHUNKS = 100_000
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


class NoRecipeInImage(ValueError):
    pass


def _inflate(data: bytes, path: Path, key: str) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_CHUNK + 1)
    except zlib.error as exc:
        raise ValueError(f"{path}: the text chunk '{key}' is damaged ({exc})") from None
    if len(out) > MAX_CHUNK or d.unconsumed_tail:
        raise ValueError(f"{path}: the text chunk '{key}' expands to more than {MAX_CHUNK:,} bytes; "
                         "a recipe is never that large")
    return out


def _bounded(text: bytes, path: Path, key: str) -> bytes:
    if len(text) > MAX_CHUNK:
        raise ValueError(f"{path}: the text chunk '{key}' holds more than {MAX_CHUNK:,} bytes; "
                         "a recipe is never that large")
    return text


def _decode(ctype: bytes, data: bytes, path: Path) -> tuple[str, str] | None:
    """(key, text) of a tEXt/zTXt/iTXt chunk, or None when it is malformed."""
    key_raw, sep, rest = data.partition(b"\0")
    if not sep or not 1 <= len(key_raw) <= 79:
        return None
    key = key_raw.decode("latin-1")
    if ctype == b"tEXt":
        return key, _bounded(rest, path, key).decode("latin-1")
    if ctype == b"zTXt":
        if not rest or rest[0] != 0:
            return None
        return key, _inflate(rest[1:], path, key).decode("latin-1")
    # iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text
    if len(rest) < 2:
        return None
    compressed, method, rest = rest[0], rest[1], rest[2:]
    _lang, sep1, rest = rest.partition(b"\0")
    _tkey, sep2, text = rest.partition(b"\0")
    if not (sep1 and sep2) or compressed not in (0, 1) or (compressed and method != 0):
        return None
    text = _inflate(text, path, key) if compressed else _bounded(text, path, key)
    try:
        return key, text.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the text chunk '{key}' is not UTF-8 text; the file is damaged") from None


def read_png_text(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG, read as data under size bounds; ValueError if it is not a
    readable PNG (naming what is wrong; an InputFileError if it is not a regular file: a pipe never
    blocks), OSError if the file cannot be opened."""
    path = Path(path)
    out: dict[str, str] = {}
    total = 0
    with open_regular(path, None, "the picture") as f:
        if f.read(8) != _SIGNATURE:
            raise ValueError(f"{path} is not a PNG file")
        for _ in range(MAX_CHUNKS):
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{path} is cut short (it ends before its last chunk); the file is damaged")
            length, ctype = struct.unpack(">I4s", head)
            if length > 0x7FFFFFFF:
                raise ValueError(f"{path} has a chunk of impossible length; the file is damaged")
            if ctype == b"IEND":
                break
            if ctype not in _TEXT_CHUNKS:
                f.seek(length + 4, 1)  # skip data and CRC; running past the end shows up as cut short
                continue
            if length > MAX_CHUNK + _MAX_HEADER:
                raise ValueError(f"{path} has a text chunk of {length:,} bytes; a recipe is at most {MAX_CHUNK:,}")
            data, crc = f.read(length), f.read(4)
            if len(data) < length or len(crc) < 4:
                raise ValueError(f"{path} is cut short (inside a text chunk); the file is damaged")
            if zlib.crc32(ctype + data) != int.from_bytes(crc, "big"):
                raise ValueError(f"{path}: a text chunk fails its checksum (CRC); the file is damaged")
            item = _decode(ctype, data, path)
            if item is None:
                continue
            key, text = item
            total += len(text)
            if total > MAX_TEXT:
                raise ValueError(f"{path} holds more than {MAX_TEXT:,} characters of text chunks; "
                                 "a picture dreamnodes made holds far less")
            out.setdefault(key, text)
        else:
            raise ValueError(f"{path} has more than {MAX_CHUNKS:,} chunks before its end; "
                             "a picture dreamnodes made has far fewer")
    return out


def recipe_from_png(path: str | Path) -> str:
    text = read_png_text(path)
    if RECIPE_KEY not in text:
        raise NoRecipeInImage(f"{path} holds no dreamnodes recipe (it was not saved by dreamnodes, or its "
                              "metadata was stripped)")
    return text[RECIPE_KEY]


# ---------------------------------------------------------------- animations: GIF and MP4
#: the GIF comment / MP4 comment that carries the recipe: a JSON object {RECIPE_KEY: YAML text,
#: PROVENANCE_KEY: JSON text}, marked so that another program's comment is not taken for one
EMBED_MARK = "dreamnodes 1\n"
#: boxes walked in one MP4 (a dreamnodes MP4 has a dozen at the top and a few in its metadata)
MAX_BOXES = 10_000
_MP4_PATH = (b"moov", b"udta", b"meta", b"ilst", b"\xa9cmt", b"data")  # where ffmpeg puts `comment`


def embedded_comment(recipe_text: str, provenance: dict) -> str:
    """The comment a GIF or MP4 carries: the recipe and provenance, as a PNG's text chunks hold them."""
    import json

    return EMBED_MARK + json.dumps({RECIPE_KEY: recipe_text, PROVENANCE_KEY: json.dumps(provenance, sort_keys=True)},
                                   ensure_ascii=False)


def _from_comment(raw: bytes, path: Path) -> dict[str, str]:
    """{key: text} from a comment that embedded_comment wrote; {} for any other comment."""
    import json

    mark = EMBED_MARK.encode()
    if not raw.startswith(mark):
        return {}
    try:
        data = json.loads(raw[len(mark):].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError(f"{path}: its dreamnodes comment is damaged (not the JSON dreamnodes writes)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: its dreamnodes comment is damaged (not the JSON dreamnodes writes)")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _read_exact(f, n: int, path: Path, where: str) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise ValueError(f"{path} is cut short ({where}); the file is damaged")
    return data


def _gif_sub_blocks(f, path: Path, keep: bool) -> bytes:
    """The data sub-blocks after a GIF block header, up to their terminator: joined (keep), else skipped.
    Kept data is bounded by MAX_TEXT."""
    out = bytearray()
    while True:
        n = _read_exact(f, 1, path, "inside a block")[0]
        if n == 0:
            return bytes(out)
        if keep:
            out += _read_exact(f, n, path, "inside a comment")
            if len(out) > MAX_TEXT:
                raise ValueError(f"{path} has a comment of more than {MAX_TEXT:,} bytes; a recipe is never that large")
        else:
            f.seek(n, 1)


def read_gif_text(path: str | Path) -> dict[str, str]:
    """The recipe and provenance in a GIF's comment extension, read as data: the blocks are walked
    (pictures skipped, never decoded), comments bounded, at most MAX_CHUNKS blocks; ValueError names
    what is wrong."""
    path = Path(path)
    with open_regular(path, None, "the animation") as f:
        head = f.read(13)
        if len(head) < 13 or head[:6] not in (b"GIF87a", b"GIF89a"):
            raise ValueError(f"{path} is not a GIF file")
        if head[10] & 0x80:  # a global colour table
            f.seek(3 << ((head[10] & 7) + 1), 1)
        for _ in range(MAX_CHUNKS):
            kind = _read_exact(f, 1, path, "before its trailer")[0]
            if kind == 0x3B:  # trailer
                return {}
            if kind == 0x21:  # extension: label, sub-blocks
                label = _read_exact(f, 1, path, "inside an extension")[0]
                found = _from_comment(_gif_sub_blocks(f, path, label == 0xFE), path) if label == 0xFE else \
                    _gif_sub_blocks(f, path, False)
                if found:
                    return found
            elif kind == 0x2C:  # a picture: descriptor, local colour table, LZW code size, data
                desc = _read_exact(f, 9, path, "inside a picture descriptor")
                if desc[8] & 0x80:
                    f.seek(3 << ((desc[8] & 7) + 1), 1)
                _read_exact(f, 1, path, "inside a picture")
                _gif_sub_blocks(f, path, False)
            else:
                raise ValueError(f"{path} has a block of unknown kind {kind:#04x}; the file is damaged")
    raise ValueError(f"{path} has more than {MAX_CHUNKS:,} blocks; an animation dreamnodes made has far fewer")


def _mp4_box(f, end: int, path: Path) -> tuple[bytes, int, int] | None:
    """(type, start of its content, end) of the next box before `end`, or None at `end`."""
    at = f.tell()
    if at + 8 > end:
        return None
    size, kind = struct.unpack(">I4s", _read_exact(f, 8, path, "inside a box header"))
    start = at + 8
    if size == 1:  # a 64-bit size follows
        size, start = struct.unpack(">Q", _read_exact(f, 8, path, "inside a box header"))[0], at + 16
    elif size == 0:  # to the end of its parent
        size = end - at
    if size < start - at or at + size > end:
        raise ValueError(f"{path} has a box '{kind.decode('latin-1')}' of impossible size; the file is damaged")
    return kind, start, at + size


def read_mp4_text(path: str | Path) -> dict[str, str]:
    """The recipe and provenance in an MP4's comment (moov/udta/meta/ilst/©cmt, where ffmpeg's
    `-metadata comment=` puts it), read as data: boxes walked, skipped unless on that path, at most
    MAX_BOXES, the comment bounded; ValueError names what is wrong."""
    path = Path(path)
    with open_regular(path, None, "the video") as f:
        end = f.seek(0, 2)
        f.seek(0)
        head = f.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            raise ValueError(f"{path} is not an MP4 file")
        f.seek(0)
        depth = 0
        for _ in range(MAX_BOXES):
            box = _mp4_box(f, end, path)
            if box is None:
                return {}
            kind, start, stop = box
            if kind != _MP4_PATH[depth]:
                f.seek(stop)
                continue
            if kind == b"data":
                if stop - start > MAX_TEXT + 8:
                    raise ValueError(f"{path} has a comment of more than {MAX_TEXT:,} bytes; "
                                     "a recipe is never that large")
                return _from_comment(_read_exact(f, stop - start, path, "inside the comment")[8:], path)
            depth, end = depth + 1, stop
            f.seek(start + (4 if kind == b"meta" else 0))  # meta is a full box: version and flags first
    raise ValueError(f"{path} has more than {MAX_BOXES:,} boxes before its comment; the file is damaged")


def read_embedded_text(path: str | Path) -> dict[str, str]:
    """The recipe and provenance of a picture (PNG), animation (GIF) or video (MP4) dreamnodes made,
    chosen by the file's first bytes, not its name; ValueError for other files."""
    path = Path(path)
    with open_regular(path, None, "the file") as f:
        head = f.read(8)
    if head.startswith(_SIGNATURE):
        return read_png_text(path)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return read_gif_text(path)
    if head[4:8] == b"ftyp":
        return read_mp4_text(path)
    raise ValueError(f"{path} is not a PNG, GIF or MP4 file; only those carry a dreamnodes recipe")
