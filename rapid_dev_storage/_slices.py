"""Decoding large records in slices, so that the thread decoding one lets the event loop run.

A thread alone does not help: msgpack and json decode a whole document in one C call that holds
the GIL (a 200 MB record stalled the loop for 17 s). Here a large document is decoded a slice at
a time, and between slices the loop can take the GIL:

- msgpack: an `msgpack.Unpacker` fed 256 KiB at a time keeps its parse stack between feeds, so
  it resumes where it stopped (measured: the same total time as one call, no re-parsing);
- JSON: see `rapid_dev_storage._json_slices`.

What cannot be sliced: one huge string (or bytes) is one C call, however it is stored.

Nothing of the document's size is built or freed in one piece here either: a copy, a join or a
free of 200 MB is one C call holding the GIL (measured on a busy 2-core VM: 170-200 ms for a
copy or a text join, 13-90 ms for a free, wherever it happens). The unpacker's buffer stays
under 16 MiB unless one element is larger.

Python's cyclic garbage collector would undo the slicing: the millions of objects a large
record becomes trigger full collections, each holding the GIL for a time growing with the heap
(measured: 80 to 270 ms each, 2.5 times the decode's own time). It is paused while a large
record decodes (see `collector_paused`).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import msgpack

LARGE_RECORD = 256 * 1024
"""Records of more stored bytes than this are decoded off the event loop, in slices."""
MSGPACK_SLICE = 256 * 1024
"""Bytes fed to the msgpack unpacker at a time: 2 to 5 ms of decoding, GIL held."""
MSGPACK_BUFFER = 16 * 1024 * 1024
"""Bytes of the unpacker's buffer (freeing 16 MiB takes 1-3 ms; 200 MB took 13-90 ms)."""
SEARCH_SLICE = 8 * 1024 * 1024
"""Bytes searched at a time (about a millisecond)."""


class _CollectorPause:
    """Counts the decodes under way that paused the collector (several threads may decode)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.decodes = 0
        self.paused_by_us = False

    def __enter__(self) -> None:
        with self.lock:
            if self.decodes == 0:
                self.paused_by_us = gc.isenabled()
                gc.disable()
            self.decodes += 1

    def __exit__(self, *exc_info: object) -> None:
        with self.lock:
            self.decodes -= 1
            if self.decodes == 0 and self.paused_by_us:
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


collector_paused = _CollectorPause()
"""``with collector_paused:`` pauses the cyclic garbage collector while a large record decodes.

Decoding creates objects and frees none, so a collection meanwhile finds nothing to free.
On resuming, the objects created meanwhile join the oldest generation without a traversal
(`gc.freeze` then `gc.unfreeze`): otherwise the first young collection would traverse them
all, on whichever thread allocates next, often the event loop's. A program that froze objects
itself (before forking) keeps them frozen: then only the collector is re-enabled. A program
that disabled the collector keeps it disabled.
"""


def unpack_in_slices(data: bytes, **options: Any) -> Any:
    """Decode one msgpack document (and nothing after it), fed to an unpacker a slice at a time.

    ``options`` are `msgpack.Unpacker`'s. Raises what `msgpack.unpackb` raises, and
    `ValueError` for a truncated document or trailing bytes.
    """
    # The unpacker keeps only what it has not parsed yet, in a buffer of MSGPACK_BUFFER (the
    # document's size if smaller) that grows only for a larger element (one huge string; each
    # growth is a copy): nothing of a huge document's size is allocated, faulted in and freed
    # again holding the GIL.
    unpacker = msgpack.Unpacker(
        read_size=min(MSGPACK_BUFFER, len(data) + 1), max_buffer_size=len(data) + 1, **options
    )
    view = memoryview(data)
    for start in range(0, len(data), MSGPACK_SLICE):
        unpacker.feed(view[start : start + MSGPACK_SLICE])
        try:
            value = unpacker.unpack()
        except msgpack.OutOfData:
            time.sleep(0)  # release the GIL now: a loop waiting for it need not wait 5 ms
            continue
        if start + MSGPACK_SLICE < len(data) or unpacker.tell() != len(data):
            raise ValueError(f"extra data after the msgpack document, at byte {unpacker.tell()}")
        return value
    raise ValueError(f"the msgpack document is truncated ({len(data)} bytes)")


def contains_in_slices(data: bytes, needle: bytes) -> bool:
    """``needle in data``, searched a slice at a time (one search of 200 MB holds the GIL)."""
    for start in range(0, len(data), SEARCH_SLICE):
        if data.find(needle, start, start + SEARCH_SLICE + len(needle) - 1) != -1:
            return True
    return False
