"""FileBackend's gets decode their usual record in one step: the value, not the whole record.

A get knows the keys it asks for, and a msgpack record this library wrote for one key begins
with exactly those keys: the bytes of ``{"keys": [key], "value": ...}`` up to the value are
fixed by the key. When the record begins so and the codec's ``surely_storable`` proves it, only
the value is decoded (about a microsecond less than `RecordCoding._record_of`'s decode of the
whole record, its keys' checks and their comparison with the keys asked for). Anything else
(several keys, a long key, JSON, a record written another way, one that does not decode or is
not proven) is `UNUSUAL`: the caller takes the long path, which decodes it again and returns,
refuses or reports it exactly as before.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ._codecs import Codec, MsgpackCodec
from ._types import Keys

UNUSUAL: Any = object()
"""What `usual_value` returns for a record it leaves to the long path."""

# The bytes of a record of one key, as this library writes it (`_file_layout.encode_record`);
# the scans' one-step decode (`_file_scan_decode`) reads the same layout.
ONE_KEY_FIRST = b"\x82\xa4keys\x91"  # a map of two entries, the first "keys": an array of one
FIXSTR, FIXSTR_LONGEST = 0xA0, 31  # msgpack's short str: its length (0-31) in the type byte
VALUE_NAME = b"\xa5value"  # the second entry's key, a short str; the value follows
_heads: dict[str, bytes] = {}  # each key's head made once (0.1 us a get); shared by threads
_HEADS_KEPT = 4096  # bounded: keys come from users


def usual_value(codec: Codec, keys: Keys, data: bytes) -> Any:
    """Return the value of the record ``data`` read for ``keys``, or `UNUSUAL`.

    The record's head (a map of two entries: ``keys``, an array of the one key asked for, then
    ``value``) is compared byte for byte, so its keys are the ones asked for and the map holds
    exactly these two entries. The value is what follows; a byte left over after it makes
    ``unpackb`` raise (the whole record would not decode either). msgpack's defaults are the
    codec's (str as str, arrays as lists, str map keys); an ext type, which the codec refuses,
    fails the proof.
    """
    if type(codec) is not MsgpackCodec or len(keys) != 1:
        return UNUSUAL
    head = _heads.get(keys[0])
    if head is None:
        key = keys[0].encode()  # checked keys encode (no lone surrogate)
        if len(key) > FIXSTR_LONGEST:
            return UNUSUAL
        if len(_heads) >= _HEADS_KEPT:
            _heads.clear()
        head = ONE_KEY_FIRST + bytes((FIXSTR + len(key),)) + key + VALUE_NAME
        _heads[keys[0]] = head
    if not data.startswith(head) or not codec.surely_storable(data):
        return UNUSUAL
    try:
        return msgpack.unpackb(data[len(head) :])
    except Exception:  # the long path decodes it again and says what is wrong
        return UNUSUAL
