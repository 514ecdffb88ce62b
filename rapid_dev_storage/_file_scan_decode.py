"""FileBackend's scans decode their usual records in one step.

A scan of 100,000 records spends as much in the Python layers that decode each record (the
policy's `_record_of`, FileBackend's `_decode_record`, `decode_record`, the codec, the name's
digest) as in the system calls that read it. `scan_decoder` returns one function doing all of
it for the record this library writes (one key of ASCII text, the value proven storable by its
bytes); anything else (several keys, a bad name, a record that does not decode) goes to the
long path unchanged, which decodes it again and refuses or reports it exactly as before.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import msgpack

from ._codecs import Codec, MsgpackCodec
from ._names import one_key_digest
from ._types import Keys

RecordOf = Callable[[Keys | None, bytes, str | None], tuple[Keys, Any]]
"""``(keys, data, source) -> (keys, value)``, as `RecordCoding._record_of` for one group."""

_ONE_KEY_FIRST = b"\x82\xa4keys\x91"  # a map of two entries, the first "keys": an array of one
_FIXSTR, _FIXSTR_LONGEST = 0xA0, 31  # msgpack's short str: its length in the type byte


def scan_decoder(codec: Codec, extension: str, long_path: RecordOf) -> RecordOf:
    """Return `RecordOf` for the records a scan reads, with ``long_path`` for all but the usual.

    The short path is msgpack's: a record this library wrote starts with its keys, so the
    bytes show a map of two entries whose first, ``keys``, is an array of one short str. When
    that str is ASCII, the file is named by its digest (a misnamed file must not be yielded
    under keys a get cannot find), the codec's ``surely_storable`` proves the value and the
    second entry is ``value``, the record is decoded once and returned; anything else goes to
    ``long_path``. A digest reckoned wrong here could only send records to ``long_path``.
    """
    if type(codec) is not MsgpackCodec:
        return long_path
    proof = codec.surely_storable
    # msgpack's defaults are the codec's (str as str, arrays as lists, str map keys); an ext
    # type, which the codec refuses, fails the proof. Small records only reach here: no slices.
    loads = msgpack.unpackb
    head = len(_ONE_KEY_FIRST)
    separator = os.sep

    def record_of(keys: Keys | None, data: bytes, source: str | None) -> tuple[Keys, Any]:
        if keys is None and source is not None and data[:head] == _ONE_KEY_FIRST:
            size = data[head] - _FIXSTR if len(data) > head else -1
            if 0 <= size <= _FIXSTR_LONGEST:
                key = data[head + 1 : head + 1 + size]
                digest = one_key_digest(key)
                if (
                    key.isascii()
                    and source.endswith(separator + digest + extension)
                    and proof(data)
                ):
                    try:
                        record = loads(data)
                        return tuple(record["keys"]), record["value"]
                    except Exception:  # the long path decodes it again and says what is wrong
                        pass
        return long_path(keys, data, source)

    return record_of
