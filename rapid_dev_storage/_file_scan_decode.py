"""FileBackend's scans decode their usual records in one step, as they read them.

A scan of 100,000 records spends as much in the Python layers that decode each record (the
policy's `_record_of`, FileBackend's `_decode_record`, `decode_record`, the codec, the name's
digest) as in the system calls that read it. `quick_decoder` returns one function doing all of
it for the record this library writes (one key of ASCII text, the value proven storable by its
bytes), which the scan calls on each file as it reads it (`_file_scan.read_slice`); anything
else (several keys, a bad name, a record that does not decode) is handed to the policy, whose
long path decodes it again and refuses or reports it exactly as before.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import msgpack

from ._codecs import Codec, MsgpackCodec
from ._file_get_decode import FIXSTR, FIXSTR_LONGEST, ONE_KEY_FIRST, VALUE_NAME
from ._hooks import Record
from ._names import one_key_digest
from ._types import Keys

RecordOf = Callable[[Keys | None, bytes, str | None], tuple[Keys, Any]]
"""``(keys, data, source) -> (keys, value)``, as `RecordCoding._record_of` for one group."""
Quick = Callable[[str, bytes], Record | None]
"""``(file name, data) -> (keys, value)``, or None: not a usual record (the long path's)."""


def quick_decoder(codec: Codec, extension: str) -> Quick | None:
    """Return `Quick` for the usual records of a store of ``codec``; None: it has none.

    The short path is msgpack's: a record this library wrote starts with its keys, so the
    bytes show a map of two entries whose first, ``keys``, is an array of one short str and
    whose second is ``value``. When that str is ASCII, the file is named by its digest (a
    misnamed file must not be yielded under keys a get cannot find) and the codec's
    ``surely_storable`` proves the value from the whole record's bytes, the value alone is
    decoded (from where it starts: the map, its keys and their list are never built) and the
    record returned; anything else is None. A digest reckoned wrong here could only send
    records to the long path.
    """
    if type(codec) is not MsgpackCodec:
        return None
    proof = codec.surely_storable
    # msgpack's defaults are the codec's (str as str, arrays as lists, str map keys); an ext
    # type, which the codec refuses, fails the proof. Small records only reach here: no slices.
    # What follows the value in the bytes follows the map too: unpackb refuses it either way.
    loads = msgpack.unpackb
    head = len(ONE_KEY_FIRST)

    def quick(name: str, data: bytes) -> Record | None:
        if data.startswith(ONE_KEY_FIRST) and len(data) > head:
            size = data[head] - FIXSTR
            if 0 <= size <= FIXSTR_LONGEST:
                start = head + 1 + size
                key = data[head + 1 : start]
                if (
                    data.startswith(VALUE_NAME, start)
                    and key.isascii()
                    and name == one_key_digest(key) + extension
                    and proof(data)
                ):
                    try:  # a copy of the value's bytes costs less than a memoryview's slice
                        return (key.decode(),), loads(data[start + len(VALUE_NAME) :])
                    except Exception:  # the long path decodes it again and says what is wrong
                        pass
        return None

    return quick


def scan_decoder(quick: Quick | None, long_path: RecordOf) -> RecordOf:
    """Return `RecordOf` for the records a scan hands the policy as bytes.

    ``quick`` (`quick_decoder`'s) for the usual records (read on a thread: large, or with
    ``inline_limit=0``), ``long_path`` for all others.
    """
    if quick is None:
        return long_path
    separator = os.sep

    def record_of(keys: Keys | None, data: bytes, source: str | None) -> tuple[Keys, Any]:
        if keys is None and source is not None:
            # rpartition, not basename: sources are joined with os.sep, and it costs a third.
            record = quick(source.rpartition(separator)[2], data)
            if record is not None:
                return record
        return long_path(keys, data, source)

    return record_of
