"""Decoding a large JSON document in slices, never holding the whole of it as one text.

The json module's C scanner decodes one value per call, holding the GIL throughout. Here the
top-level containers are walked element by element, each element decoded by that scanner: an
element is first tried within a window of text, and one that does not fit is walked the same
way, so no single C call decodes more than about a window; runs of small elements are decoded a
batch at a time. What cannot be sliced: one huge string is one C call, however it is stored.

The text itself is decoded from the UTF-8 bytes a slice at a time into a sliding window
(`_TextWindow`): a 200 MB document made into one ``str`` first would cost a single copy of
200 MB holding the GIL (measured: 170-820 ms on a busy 2-core VM), and freeing it another.
"""

from __future__ import annotations

import codecs
import json
import re
import time
from typing import Any, Callable

JSON_WINDOW = 1024 * 1024
"""Most characters of JSON one C call decodes (apart from a single string)."""
JSON_BATCH = 256 * 1024
"""Most characters of small elements decoded in one C call (about a millisecond)."""
TEXT_SLICE = 1024 * 1024
"""Bytes of UTF-8 turned into text at a time (about a millisecond, GIL held)."""
SCALAR_LOOKAHEAD = 4096
"""Characters first offered to the scanner for a scalar; doubled until it fits."""

_WHITESPACE = re.compile(r"[ \t\n\r]*")

_Scan = Callable[[str, int], "tuple[Any, int]"]


def json_in_slices(data: bytes, decoder: json.JSONDecoder) -> Any:
    """Decode UTF-8 JSON ``data`` (a leading byte-order mark dropped) as ``decoder`` would.

    Raises `json.JSONDecodeError` (positions count characters of the whole document) and
    `UnicodeDecodeError`.
    """
    reader = _JSONSlices(_TextWindow(data), decoder)
    value, end = reader.value(reader.skip(0))
    end = reader.skip(end)
    if not reader.text.ends_at(end):
        raise reader.text.error("Extra data", end)
    return value


class _TextWindow:
    """The text of UTF-8 bytes, decoded a slice at a time as reading reaches it.

    Indices are the whole document's. Text before the mark `release` sets is dropped when more
    is decoded, so the window holds about the largest span read at once (a window, a batch, a
    scalar), not the document.
    """

    def __init__(self, data: bytes) -> None:
        self._bytes = data
        self._data = memoryview(data)
        self._read = 0  # bytes decoded so far
        self._decoder: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder(
            "utf-8-sig"
        )()
        self.text = ""  # the window: the document's text from `base`
        self.base = 0
        self._released = 0
        self._newlines = 0  # in the text dropped before `base`, for error positions
        self._last_newline = -1

    @property
    def complete(self) -> bool:
        """Whether the window reaches the end of the document."""
        return self._read >= len(self._data) and self._decoder is None

    def release(self, index: int) -> None:
        """Say that no text before ``index`` will be read again."""
        self._released = max(self._released, index)

    def cover(self, end: int, *, end_byte: int = 0) -> None:
        """Decode until the window reaches ``end`` and byte ``end_byte`` (or the document's end).

        The new text is joined to the window once, however many slices it takes.
        """
        missing = end - (self.base + len(self.text))
        if (missing <= 0 and self._read >= end_byte) or self.complete:
            return
        pieces = []
        while (missing > 0 or self._read < end_byte) and not self.complete:
            time.sleep(0)  # release the GIL between slices (see _slices.unpack_in_slices)
            piece = self._next_piece()
            pieces.append(piece)
            missing -= len(piece)
        dropped = self.text[: max(0, self._released - self.base)]
        self._newlines += dropped.count("\n")
        last = dropped.rfind("\n")
        if last != -1:
            self._last_newline = self.base + last
        self.text = self.text[len(dropped) :] + "".join(pieces)
        self.base += len(dropped)

    def _next_piece(self) -> str:
        assert self._decoder is not None
        if self._read >= len(self._data):
            piece = self._decoder.decode(b"", final=True)
            self._decoder = None
            return piece
        chunk = self._data[self._read : self._read + TEXT_SLICE]
        self._read += len(chunk)
        return self._decoder.decode(chunk)

    def slice(self, start: int, end: int) -> str:
        """Return the document's text from ``start`` to ``end`` (shorter at its end)."""
        self.cover(end)
        return self.text[start - self.base : end - self.base]

    def ends_at(self, index: int) -> bool:
        """Whether the document's text ends at ``index``."""
        self.cover(index + 1)
        return self.complete and index >= self.base + len(self.text)

    def skip(self, index: int) -> int:
        """Return the index of the first non-whitespace character from ``index``."""
        while True:
            self.cover(index + 1)
            match = _WHITESPACE.match(self.text, index - self.base)
            assert match is not None  # the pattern matches the empty string
            index = self.base + match.end()
            if match.end() < len(self.text) or self.complete:
                return index

    def rfind(self, text: str, start: int, end: int) -> int:
        """Return the last index of ``text`` between ``start`` and ``end``, or -1."""
        self.cover(end)
        found = self.text.rfind(text, start - self.base, end - self.base)
        return -1 if found == -1 else self.base + found

    def scan(self, scan: _Scan, index: int) -> tuple[Any, int]:
        """Decode the value at ``index`` with ``scan``; return it and its end.

        A value ending where the window ends may go on (a number, a string) past it: then the
        window is made twice as long (a string: reaches its end) and the value decoded again.
        """
        lookahead, jumped = SCALAR_LOOKAHEAD, False
        while True:
            self.cover(index + lookahead)
            start = index - self.base
            try:
                value, end = scan(self.text, start)
            except StopIteration as exc:
                if self.complete:
                    raise self.error("Expecting value", self.base + exc.value) from None
            except json.JSONDecodeError as exc:
                if self.complete:
                    raise self.error(exc.msg, self.base + exc.pos) from None
            else:
                # A number may go on past the window ("1." then "5"; "2e" then "-3").
                if len(self.text) - end > 2 or self.complete:
                    return value, self.base + end
            if self.text[start : start + 1] == '"' and not jumped:
                # A string going on past the window: decoded to its end at once (a window
                # doubled until it fits would copy the string again at each doubling), and a
                # few characters more (4 bytes at most each).
                self.cover(0, end_byte=self._string_end() + 16)
                jumped = True
            else:
                lookahead = 2 * (len(self.text) - start)

    def _string_end(self) -> int:
        """Return the byte just past the first unescaped quote after the window (or the end).

        UTF-8 never has a quote or a backslash byte inside another character.
        """
        data = self._bytes
        assert self._decoder is not None
        at = self._read - len(self._decoder.getstate()[0])  # the window's end, in bytes
        while (found := data.find(b'"', at)) != -1:
            backslashes = 0
            while found - backslashes > 0 and data[found - backslashes - 1] == 0x5C:
                backslashes += 1
            if backslashes % 2 == 0:
                return found + 1
            at = found + 1
        return len(data)

    def error(self, message: str, index: int) -> json.JSONDecodeError:
        """Return the error ``json`` would raise at ``index`` of the whole document.

        Its line, column and position are the whole document's; its ``doc`` is the window's
        text only (the document is never one text).
        """
        self.cover(index)
        error = json.JSONDecodeError(message, _Lines(self), index)  # type: ignore[arg-type]
        error.doc = self.text
        return error


class _Lines:
    """What `json.JSONDecodeError` asks of its document to place an error: newlines before it."""

    def __init__(self, window: _TextWindow) -> None:
        self.window = window

    def count(self, newline: str, start: int, end: int) -> int:
        window = self.window
        return window._newlines + window.text.count(newline, 0, max(0, end - window.base))

    def rfind(self, newline: str, start: int, end: int) -> int:
        window = self.window
        found = window.text.rfind(newline, 0, max(0, end - window.base))
        return window._last_newline if found == -1 else window.base + found


class _JSONSlices:
    """Walks the containers of one JSON text; the C scanner decodes what fits in a window."""

    def __init__(self, text: _TextWindow, decoder: json.JSONDecoder) -> None:
        self.text = text
        self.scan: _Scan = decoder.scan_once  # type: ignore[attr-defined]
        self.pairs_hook = decoder.object_pairs_hook
        self.window = 1024
        self.batching = True

    def value(self, index: int) -> tuple[Any, int]:
        """Decode the value at ``index`` (no whitespace before it); return it and its end."""
        text = self.text
        opening = text.slice(index, index + 1)
        if opening not in ("[", "{"):
            return text.scan(self.scan, index)  # a scalar: a string of any size is one call
        window = self.window
        if text.ends_at(index + window):  # all that is left fits in a window
            return text.scan(self.scan, index)
        # Try the element within a window: a whole container that fits ends inside it.
        try:
            value, end = self.scan(text.slice(index, index + window), 0)
        except (json.JSONDecodeError, StopIteration):
            pass
        else:
            self.window = min(max(1024, 8 * end), JSON_WINDOW)  # siblings are alike
            return value, index + end
        return self._array(index) if opening == "[" else self._object(index)

    def skip(self, index: int) -> int:
        return self.text.skip(index)

    def _array(self, index: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        index = self.skip(index + 1)
        if self.text.slice(index, index + 1) == "]":
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
        if text.slice(index, index + 1) == "}":
            return self._build(pairs), index + 1
        while True:
            if text.slice(index, index + 1) != '"':
                raise text.error("Expecting property name enclosed in double quotes", index)
            key, index = text.scan(self.scan, index)
            index = self.skip(index)
            if text.slice(index, index + 1) != ":":
                raise text.error("Expecting ':' delimiter", index)
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
            text.release(index)  # the walk only goes on from here
            separator = text.slice(index, index + 1)
            if separator == brackets[1]:
                return index + 1, False
            if separator != ",":
                raise text.error("Expecting ',' delimiter", index)
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
        separator = text.slice(comma, start)
        cut = text.rfind(separator, start, start + JSON_BATCH)
        for _attempt in range(64):
            if cut <= start:
                return None
            after = text.slice(cut + len(separator), cut + len(separator) + 1)
            if after not in (" ", "\t", "\n", "\r"):
                break
            cut = text.rfind(separator, start, cut)  # a deeper element's separator
        else:
            return None
        time.sleep(0)  # release the GIL between runs (see _slices.unpack_in_slices)
        run = brackets[0] + text.slice(start, cut) + brackets[1]
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
