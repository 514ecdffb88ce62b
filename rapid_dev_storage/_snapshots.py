"""A value too large to check and encode on the event loop: its snapshot, taken at the call.

`_coding.RecordCoding` takes the snapshot where a write is made and finishes a `LargeValue` on a
thread; the private copy the thread decodes is taken apart a slice at a time afterwards.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Iterator

from msgpack import unpackb

from ._codecs import MsgpackCodec, strict_packer, tuple_as_list
from ._threads import alone
from ._value_fits import value_fits

INLINE_ENCODE = 1536 * 1024
"""Bytes of a value's snapshot (its msgpack) above which it is checked and encoded on a thread.

A value is checked and encoded where the write is made, on the event loop: up to 1.5 MiB of
msgpack (about 35,000 small rows) that costs 6-15 ms (twice that on a busy machine), while a
value of 200,000 rows held the loop 245-285 ms (msgpack) and 1.5-2.1 s (JSON, whose indented
encoder is Python). A larger value is checked and encoded on a thread, from a snapshot
(`LargeValue`): that costs the thread about twice the inline work (the snapshot is decoded
again), but the loop only the snapshot."""


INLINE_CHECK = 256 * 1024
"""Bytes of a msgpack record's snapshot above which its check runs on a thread.

The check decodes the snapshot into a private copy (what is checked must be what is stored),
which costs 2.5-3x the encode for 1,000 rows and up to 7x for 24,000 (every object is
allocated): 256 KiB (about 6,000 rows) holds the loop a few milliseconds."""


SMALL_SNAPSHOT = 4096
"""Bytes up to which a write's check of a msgpack snapshot is a get's decode of it
(`_decodes_as_storable`); a larger one is decoded into a copy that `value_fits` checks, whose C
passes over long containers win."""


class LargeValue:
    """A value too large to check and encode on the loop: its msgpack, taken as the write is made.

    The snapshot is msgpack's C encoder (strict types: subclasses, ints out of range and lone
    surrogates refused) run on the loop. It runs no Python for plain data (the ``default`` hook
    only for tuples), so no other task runs during it: what a thread checks and encodes later is
    the value at the call, however the caller's value changes meanwhile. It costs about a fifth
    of the check and encode it replaces (200,000 rows: 38 ms against 245-285).

    A large value the snapshot refuses (a subclass, an int out of range, a lone surrogate) is a
    `LargeValue` with no snapshot, holding the value itself and the encoder's error: the walk
    that names the refused part runs on the thread too (300,000 rows held the loop 0.7-1.3 s).
    Only its error comes of it, so a caller's change to the value meanwhile can change the
    message, never what is stored (nothing is).
    """

    __slots__ = ("is_record", "refused", "snapshot", "tupleless")

    def __init__(
        self, snapshot: bytes | None, is_record: bool, refused: Any = None, tupleless: bool = False
    ) -> None:
        self.snapshot = snapshot
        self.is_record = is_record  # the record's bytes (`_record_form`), or the value's
        self.refused = refused  # with no snapshot: (the value, the snapshot's error)
        self.tupleless = tupleless  # the encoder met no tuple (`Snapshots.take`)


REFUSED_INLINE = 4096
"""Items (counted level by level) up to which a value the snapshot refused is named on the loop:
that walk costs well under a millisecond; a larger one goes to a thread (`LargeValue`)."""


def holds_more_than(value: Any, items: int) -> bool:
    """Whether ``value``'s containers hold more than ``items`` items, counted a level at a time.

    Stops as soon as they do: a few microseconds for any value, however large (or if it
    contains itself).
    """
    level = [value]
    count = 0
    while level:
        below: list[Any] = []
        for container in level:
            kind = type(container)
            if kind is not dict and kind is not list and kind is not tuple:
                continue
            count += len(container)
            if count > items:
                return True
            below += container.values() if kind is dict else container
        level = below
    return False


class Snapshots(MsgpackCodec):
    """msgpack's strict encoder (the codec's ``dumps``), which also says whether it met a tuple.

    A value that holds no tuple is checked faster (`_value_fits.value_fits`' ``tupleless``).
    """

    def take(self, value: Any) -> tuple[bytes, bool]:
        """Return ``dumps(value)``, and whether ``value`` holds a tuple; raise as ``dumps``."""
        local = self._local
        try:
            packer = local.snapshots
        except AttributeError:  # one per thread, as the codec's
            packer = local.snapshots = strict_packer(self._tuple)
        local.tuples = False
        return packer.pack(value), local.tuples

    def _tuple(self, value: object) -> list[Any]:
        self._local.tuples = True  # the packer hands this every tuple (and refused types)
        return tuple_as_list(value)


SNAPSHOTS = Snapshots()


DROP_SLICE = 4096
"""Items of a large container freed at a time (about a millisecond, GIL held)."""


def _decodes_as_storable(snapshot: bytes) -> bool:
    """Whether a get would take a small msgpack snapshot as it is: the proof, then the decode.

    `MsgpackCodec.surely_storable` leaves only the dict keys unproven, and its ``loads``
    refuses every key but a `str` or bytes (none of which passes the proof). A snapshot taken
    while another thread changed the value may not decode at all: then no.
    """
    if not SNAPSHOTS.surely_storable(snapshot):
        return False
    try:  # the codec's loads, written out: no ext type passed the proof (0.2 us less)
        unpackb(snapshot, raw=False, strict_map_key=True)
    except Exception:  # a key of another type, or bytes a thread tore: the copy's check says
        return False
    return True


def snapshot_fits(value: Any, snapshot: bytes, tuples: bool) -> bool:
    """Whether a msgpack record's ``snapshot`` of ``value`` passes the check without a copy.

    A small one does as a get decodes it. Up to `INLINE_ENCODE`, the value itself is checked
    where no other thread can have changed it since the snapshot, nor can until we return (no
    program code runs meanwhile: `alone`). ``tuples``: the encoder met one (`Snapshots.take`).
    False sends the caller to the check of a private copy, which names what it refuses.
    """
    if len(snapshot) <= SMALL_SNAPSHOT:
        return _decodes_as_storable(snapshot)
    if len(snapshot) > INLINE_ENCODE:
        return False
    with no_collection():
        return alone() and value_fits(value, 0, True, True, strict=True, tupleless=not tuples)


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """Keep the cyclic collector from running, and so any finalizer with it (see `alone`).

    Not `_slices.collector_paused`, whose resuming moves the young objects to the oldest
    generation: right for one large decode, not for every medium write.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def drop_in_slices(value: Any) -> None:
    """Empty a large container a slice at a time, so that the GIL changes hands meanwhile.

    Freeing it whole is one C call holding the GIL until every object inside is freed (50 ms
    for 200,000 rows).
    """
    kind = type(value)
    if kind is list:
        while value:
            for item in value[-DROP_SLICE:]:
                if type(item) in (list, dict) and len(item) > DROP_SLICE:
                    drop_in_slices(item)
            del value[-DROP_SLICE:]
    elif kind is dict:
        while value:
            item = value.popitem()[1]
            if type(item) in (list, dict) and len(item) > DROP_SLICE:
                drop_in_slices(item)
