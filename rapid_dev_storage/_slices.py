"""Decoding large records in slices, so that the thread decoding one lets the event loop run.

A thread alone does not help: msgpack and json decode a whole document in one C call that holds
the GIL (a 200 MB record stalled the loop for 17 s). Here a large document is decoded a slice at
a time, and between slices the loop can take the GIL:

- msgpack: an `msgpack.Unpacker` fed 1 MiB at a time keeps its parse stack between feeds, so it
  resumes where it stopped (measured: the same total time as one call, no re-parsing);
- JSON: the top-level containers are walked element by element, each element decoded by the
  json module's own C scanner; an element is first tried within a window of text, and one that
  does not fit is walked the same way, so no single C call decodes more than about a window.

What cannot be sliced: one huge string (or bytes) is one C call, however it is stored.

Python's cyclic garbage collector would undo the slicing: the millions of objects a large
record becomes trigger full collections, each holding the GIL for a time growing with the heap
(measured: 80 to 270 ms each, 2.5 times the decode's own time). It is paused while a large
record decodes (see `collector_paused`).
"""

from __future__ import annotations

import codecs
import gc
import json
import re
import threading
import time
from typing import Any, Callable

import msgpack

LARGE_RECORD = 256 * 1024
"""Records of more stored bytes than this are decoded off the event loop, in slices."""
MSGPACK_SLICE = 256 * 1024
"""Bytes fed to the msgpack unpacker at a time: 2 to 5 ms of decoding, GIL held."""
JSON_WINDOW = 1024 * 1024
"""Most characters of JSON one C call decodes (apart from a single string)."""
JSON_BATCH = 256 * 1024
"""Most characters of small elements decoded in one C call (about a millisecond)."""
TEXT_SLICE = 8 * 1024 * 1024
"""Bytes of UTF-8 turned into text at a time."""

_WHITESPACE = re.compile(r"[ \t\n\r]*")


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
    # The buffer is allocated whole at once: growing it would copy it, GIL held.
    unpacker = msgpack.Unpacker(read_size=len(data), max_buffer_size=len(data) + 1, **options)
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


def text_in_slices(data: bytes) -> str:
    """Return UTF-8 ``data`` as text (a leading byte-order mark dropped), a slice at a time."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    view = memoryview(data)
    parts = [
        decoder.decode(view[start : start + TEXT_SLICE])
        for start in range(0, len(data), TEXT_SLICE)
    ]
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)


def contains_in_slices(text: str, needle: str) -> bool:
    """``needle in text``, searched a slice at a time (one search of 200 MB holds the GIL)."""
    for start in range(0, len(text), TEXT_SLICE):
        if text.find(needle, start, start + TEXT_SLICE + len(needle) - 1) != -1:
            return True
    return False


def json_in_slices(text: str, decoder: json.JSONDecoder) -> Any:
    """Decode a JSON document as ``decoder.decode`` would, a container element at a time."""
    reader = _JSONSlices(text, decoder)
    value, end = reader.value(reader.skip(0))
    end = reader.skip(end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


class _JSONSlices:
    """Walks the containers of one JSON text; the C scanner decodes what fits in a window."""

    def __init__(self, text: str, decoder: json.JSONDecoder) -> None:
        self.text = text
        self.scan: Callable[[str, int], tuple[Any, int]] = decoder.scan_once  # type: ignore[attr-defined]
        self.pairs_hook = decoder.object_pairs_hook
        self.window = 1024
        self.batching = True

    def value(self, index: int) -> tuple[Any, int]:
        """Decode the value at ``index`` (no whitespace before it); return it and its end."""
        text = self.text
        opening = text[index : index + 1]
        if opening not in ("[", "{"):
            return self._scan(index)  # a scalar: a string of any size is one call
        window = self.window
        if len(text) - index > window:
            # Try the element within a window: a whole container that fits ends inside it.
            try:
                value, end = self.scan(text[index : index + window], 0)
            except (json.JSONDecodeError, StopIteration):
                pass
            else:
                self.window = min(max(1024, 8 * end), JSON_WINDOW)  # siblings are alike
                return value, index + end
        else:
            return self._scan(index)  # all that is left fits in a window
        return self._array(index) if opening == "[" else self._object(index)

    def _scan(self, index: int) -> tuple[Any, int]:
        try:
            return self.scan(self.text, index)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", self.text, exc.value) from None

    def skip(self, index: int) -> int:
        """Return the index of the first non-whitespace character from ``index``."""
        match = _WHITESPACE.match(self.text, index)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def _array(self, index: int) -> tuple[list[Any], int]:
        text = self.text
        items: list[Any] = []
        index = self.skip(index + 1)
        if text[index : index + 1] == "]":
            return items, index + 1
        while True:
            item, index = self.value(index)
            items.append(item)
            index, more = self._next(index, "[]", items.extend)
            if not more:
                return items, index

    def _object(self, index: int) -> tuple[Any, int]:
        text = self.text
        pairs: list[tuple[str, Any]] = []
        index = self.skip(index + 1)
        if text[index : index + 1] == "}":
            return self._build(pairs), index + 1
        while True:
            if text[index : index + 1] != '"':
                raise json.JSONDecodeError(
                    "Expecting property name enclosed in double quotes", text, index
                )
            key, index = self._scan(index)
            index = self.skip(index)
            if text[index : index + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
            item, index = self.value(self.skip(index + 1))
            pairs.append((key, item))
            index, more = self._next(index, "{}", lambda batch: pairs.extend(batch.items()))
            if not more:
                return self._build(pairs), index

    def _next(self, index: int, brackets: str, take: Callable[[Any], object]) -> tuple[int, bool]:
        """After an element: return where the next one starts, or the container's end.

        Runs of small elements are decoded a batch at a time (`_batch`), handed to ``take``.
        """
        text = self.text
        while True:
            index = self.skip(index)
            separator = text[index : index + 1]
            if separator == brackets[1]:
                return index + 1, False
            if separator != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            start = self.skip(index + 1)
            batch = self._batch(index, start, brackets) if self.batching else None
            if batch is None:
                return start, True
            take(batch[0])
            index = batch[1]

    def _batch(self, comma: int, start: int, brackets: str) -> tuple[Any, int] | None:
        r"""Decode the elements from ``start`` up to a later separator in one C call, or None.

        Elements written by `json.dumps` are parted by the same text (``",\n    "``), and a
        deeper element's by that text and more indentation. Cut just before such a separator
        and bracketed, the run parses only if the cut lies between elements of this container:
        anywhere inside one, a bracket or a quote is left open; past this container's end, the
        bracket closes before the run does. A run that fails (a hand edit in another layout)
        turns batching off, and elements are decoded one at a time.
        """
        text = self.text
        separator = text[comma:start]
        cut = text.rfind(separator, start, min(start + JSON_BATCH, len(text)))
        for _attempt in range(64):
            if cut <= start:
                return None
            after = text[cut + len(separator) : cut + len(separator) + 1]
            if after not in (" ", "\t", "\n", "\r"):
                break
            cut = text.rfind(separator, start, cut)  # a deeper element's separator
        else:
            return None
        time.sleep(0)  # release the GIL between runs (see unpack_in_slices)
        run = brackets[0] + text[start:cut] + brackets[1]
        try:
            value, end = self.scan(run, 0)
        except (json.JSONDecodeError, StopIteration):
            end = -1
        if end != len(run):
            self.batching = False
            return None
        return value, cut

    def _build(self, pairs: list[tuple[str, Any]]) -> Any:
        return dict(pairs) if self.pairs_hook is None else self.pairs_hook(pairs)
