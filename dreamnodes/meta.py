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
