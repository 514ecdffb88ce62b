"""A record file's keys without decoding its value.

Clearing by prefix and indexing a group need only each record's keys. Decoding a whole record to
learn them costs as much as its value is large (a 200 MB record: over a second holding the GIL,
which stalls the event loop even from a thread). The library writes ``"keys"`` first (msgpack:
insertion order; JSON: sorted keys), so the keys are at the start of the file: read them from
there. A record written otherwise by hand (``"value"`` first) is decoded whole, as before.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import msgpack

from ._validate import MAX_KEYS

_JSON = json.JSONDecoder()
HEAD = 65536
"""Bytes looked at: keys longer than that send the record to the whole decode."""


def leading_keys(extension: str, data: bytes) -> tuple[str, ...] | None:
    """Return the keys a record's bytes start with, or None to decode the record whole.

    None also for anything unexpected: the whole decode then says what is wrong.
    """
    try:
        if extension == ".msgpack":
            found = _msgpack_keys(data)
        elif extension == ".json":
            found = _json_keys(data)
        else:
            return None
    except Exception:  # not the shape we write: the caller decodes it whole
        return None
    if (
        type(found) is not list
        or not 1 <= len(found) <= MAX_KEYS
        or any(type(key) is not str for key in found)
    ):
        return None
    return tuple(found)


def _msgpack_keys(data: bytes) -> Any:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    unpacker.feed(data[:HEAD])
    if unpacker.read_map_header() != 2 or unpacker.unpack() != "keys":
        return None
    return unpacker.unpack()


def _json_keys(data: bytes) -> Any:
    # Incremental: a character cut at the end of the head is left for later, not an error.
    text = codecs.getincrementaldecoder("utf-8-sig")().decode(data[:HEAD], final=False)
    index = _skip(text, 0)
    if text[index] != "{":
        return None
    index = _skip(text, index + 1)
    name, index = _JSON.raw_decode(text, index)
    index = _skip(text, index)
    if name != "keys" or text[index] != ":":
        return None
    return _JSON.raw_decode(text, _skip(text, index + 1))[0]


def _skip(text: str, index: int) -> int:
    while text[index] in " \t\r\n":
        index += 1
    return index
