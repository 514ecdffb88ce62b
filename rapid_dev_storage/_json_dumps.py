r"""JSON stores' encoding: pretty, sorted, UTF-8, byte for byte ``json.dumps``'s, faster for text.

The standard library's indented encoder is Python, and it quotes every string with its C
``encode_basestring``, which copies one character at a time (2 ms per MB of text: a record of
one long string spent 3-7x the raw write of its bytes there). A long string that holds nothing
to escape (no ``"``, ``\\`` or control character, looked for in its Latin-1 or UTF-8 bytes, 3-6x
faster: `_nothing_to_escape`) is quoted as it is; any other goes to the C function. Everything
else is the standard library's own walk (`json.encoder._make_iterencode`), so the bytes are the
same: git diffs of JSON stores depend on it (docs/format.md). Where that function is missing (a
future Python), the standard encoder is used as it is.
"""

from __future__ import annotations

import json
import json.encoder
from itertools import islice
from math import isfinite
from typing import Any, Callable, Iterator

JSON_PIECES = 16_384
"""Pieces of the encoder's output joined at a time (a few hundred KB: a millisecond or two)."""
LONG_TEXT = 512
"""Characters from which a string is looked at for a quicker quote (shorter: the C function)."""
QUOTE_SLICE = 16_384
"""Characters of a long string looked at a time: their UTF-8 (at most 64 KiB) and its
`bytes.translate` stay in buffers the allocator reuses warm. A whole megabyte encoded and
translated at once cost 1.8-2.0 ms against 0.7-1.3 in slices: each fresh buffer that size is
memory new to the process, paid a page fault at a time."""

_quote = json.encoder.encode_basestring  # the C function where there is one
_ESCAPED = bytes(range(0x20)) + b'"\\'
_ESCAPED_TEXT = [chr(code) for code in _ESCAPED]


def _quote_text(text: str) -> str:
    """``encode_basestring(text)``: a long text holding nothing to escape is quoted as it is."""
    if len(text) >= LONG_TEXT and _nothing_to_escape(text):
        return f'"{text}"'
    return _quote(text)


def _nothing_to_escape(text: str) -> bool:
    r"""Whether ``text`` holds no ``"``, ``\\`` nor control character, a slice at a time.

    While its slices are of one-byte characters (ASCII, Latin-1: as CPython stores most
    Western text), each of the 34 characters to escape is looked for by ``in``: one `memchr`
    over a slice warm in the cache, together half the time of encoding the slice and one
    `bytes.translate` of it (1 MB: 0.28-0.35 ms against 0.6-0.8). From a wider character on,
    the rest is encoded to UTF-8 and translated, quicker there than 34 looks; each character
    to escape is the one byte of the same value, and no other character makes such a byte.
    """
    narrow = text.isascii()  # known without a look; else each slice is tried as Latin-1
    wide = False
    for start in range(0, len(text), QUOTE_SLICE):
        piece = text[start : start + QUOTE_SLICE]
        if not (narrow or wide):
            try:
                piece.encode("latin-1")  # a copy, only to learn its characters are one byte
            except UnicodeEncodeError:
                wide = True  # for the rest of the text
        if not wide:
            for each in _ESCAPED_TEXT:
                if each in piece:
                    return False
            continue
        try:
            data = piece.encode("utf-8")
        except UnicodeEncodeError:
            return False  # a lone surrogate: the C function says it as before
        if len(data.translate(None, _ESCAPED)) != len(data):
            return False
    return True


def _float_text(number: float) -> str:
    """Return what the standard encoder's ``floatstr`` (``allow_nan=False``) returns or raises."""
    if not isfinite(number):
        raise ValueError("Out of range float values are not JSON compliant: " + repr(number))
    return float.__repr__(number)


_STANDARD = json.JSONEncoder(ensure_ascii=False, indent=2, sort_keys=True, allow_nan=False)
_make_iterencode: Callable[..., Callable[[Any, int], Iterator[str]]] | None = getattr(
    json.encoder, "_make_iterencode", None
)


def _pieces(value: Any) -> Iterator[str]:
    if _make_iterencode is None:
        return _STANDARD.iterencode(value)
    return _make_iterencode(
        {}, _STANDARD.default, _quote_text, "  ", _float_text, ": ", ",", True, False, False
    )(value, 0)


def json_dumps(value: Any) -> bytes:
    """Return ``value`` as pretty, sorted, UTF-8 JSON with a final newline.

    The pieces are joined and encoded `JSON_PIECES` at a time: a large value (encoded on a
    thread) never holds the GIL for one join, copy or free of the whole document's millions
    of pieces; a small one is one join with its newline and one encode (``json.dumps`` and
    adding the newline copied the text once more).
    """
    pieces = _pieces(value)
    batch = list(islice(pieces, JSON_PIECES))
    if len(batch) < JSON_PIECES:
        batch.append("\n")
        return "".join(batch).encode("utf-8")
    parts = []
    while batch:
        parts.append("".join(batch).encode("utf-8"))
        batch = list(islice(pieces, JSON_PIECES))
    parts.append(b"\n")
    return b"".join(parts)
