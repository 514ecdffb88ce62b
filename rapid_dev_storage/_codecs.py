"""Codecs: how a value becomes bytes. Small strategy objects, injected into a backend."""

from __future__ import annotations

import codecs
import json
import re
import threading
from math import isfinite
from typing import Any, Callable, NoReturn, Protocol, runtime_checkable

import msgpack

from ._json_dumps import json_dumps
from ._slices import LARGE_RECORD, collector_paused, contains_in_slices, unpack_in_slices
from ._validate import lone_surrogate_path
from ._value_fits import INT_MAX, INT_MIN, MAX_DEPTH
from .errors import IncompatibleStoreError

BOM = codecs.BOM_UTF8
"""The byte-order mark an editor may put before JSON (a record, a store's marker): skipped as
``utf-8-sig`` would, without that codec's Python decoder (0.6 us a record against 0.07)."""


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back.

    ``name`` is recorded in the store, so that reopening it with another codec fails instead of
    misreading records; ``extension`` names record files. ``allows_bytes`` and
    ``allows_non_finite`` say which optional values it carries; every other value type is checked
    before ``dumps`` is called. Errors from ``dumps`` and ``loads`` are wrapped by the caller.

    Every value ``loads`` returns is checked as a write would check it (a value that could not
    be written back is a corrupt record). A codec may offer ``surely_storable(data) -> bool``,
    a cheap look at the bytes proving the decoded value passes, so reads skip that walk.

    A codec whose ``dumps`` raises for every int outside `INT_MIN`..`INT_MAX` and every part
    whose type is a subclass of one it stores may say so with ``strict_dumps = True``: writes
    then leave those checks to it, and check in full only when it raises.
    """

    name: str
    extension: str
    allows_bytes: bool
    allows_non_finite: bool

    def dumps(self, value: Any) -> bytes:
        """Encode a checked value."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode what `dumps` produced (or a hand edit of it)."""
        ...


class MsgpackCodec:
    """The default: compact and fast; carries bytes, NaN and infinities."""

    name = "msgpack"
    extension = ".msgpack"
    allows_bytes = True
    allows_non_finite = True
    strict_dumps = True
    """msgpack refuses ints out of its range (ours), and ``strict_types`` hands every subclass
    to `tuple_as_list`, which refuses it: a write's check leaves those to ``dumps``."""

    def __init__(self) -> None:
        # A Packer reused per thread: packb builds one per call (600 ns against 220 ns for a small
        # dict), and a Packer's buffer must not be shared between threads.
        self._local = threading.local()

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as msgpack (str as str, bytes as bin, tuples as arrays)."""
        try:
            packer: msgpack.Packer = self._local.packer
        except AttributeError:
            packer = self._local.packer = strict_packer(tuple_as_list)
        return packer.pack(value)  # type: ignore[no-any-return]  # msgpack's stubs say Any

    def loads(self, data: bytes) -> Any:
        """Decode msgpack; arrays come back as lists; ext types are refused (we write none).

        A large document is decoded in slices (see `rapid_dev_storage._slices`).
        """
        if len(data) > LARGE_RECORD:
            with collector_paused:
                return unpack_in_slices(
                    data, raw=False, use_list=True, strict_map_key=True, ext_hook=_refuse_ext
                )
        return msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, ext_hook=_refuse_ext
        )

    def surely_storable(self, data: bytes) -> bool:
        """Whether what ``loads(data)`` returns needs no check: judged from the bytes alone.

        msgpack cannot carry an int out of our range; ``loads`` refuses ext types. What is
        left needs a type byte: a bytes dict key a bin header (0xc4-0xc6), a timestamp an ext
        header (0xc7-0xc9, 0xd4-0xd8), and nesting over `MAX_DEPTH` that many container headers.
        A `bytes.translate` finds them: 0.15 us for a small record, against 0.7 for the walk.
        """
        # Every byte is counted, header or not (a str's UTF-8, an int's bytes): a false alarm
        # only costs the walk.
        headers = data.translate(_MSGPACK_HEADERS)
        return headers.isascii() and headers.count(b"c") <= MAX_DEPTH

    def __repr__(self) -> str:
        return "MsgpackCodec()"


class JSONCodec:
    r"""For stores kept in git and edited by hand.

    Pretty-printed, sorted keys, UTF-8 (not ``\u`` escapes), one final newline: equal values
    always give identical bytes, so diffs show only real changes. Strict JSON: no bytes, no NaN.
    """

    name = "json"
    extension = ".json"
    allows_bytes = False
    allows_non_finite = False

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as pretty, sorted, UTF-8 JSON with a final newline.

        ``json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, allow_nan=False)``
        and a newline, byte for byte; faster for long text (see `_json_dumps`).
        """
        return json_dumps(value)

    def loads(self, data: bytes) -> Any:
        r"""Decode UTF-8 JSON; a byte-order mark left by an editor is accepted.

        Stricter than `json.loads`, refusing what `dumps` could not write back: ``NaN`` and
        ``Infinity``, an object with a key twice (a hand edit or a merge; one of them would be
        lost without a word), and a ``\ud800`` escape that makes a lone surrogate. A large
        document is decoded in slices (see `rapid_dev_storage._slices`).
        """
        if len(data) > LARGE_RECORD:
            from ._json_slices import json_in_slices  # noqa: PLC0415  (large records only)

            with collector_paused:
                value = json_in_slices(data, _JSON_DECODER)
            escaped = contains_in_slices(data, b"\\u")
        else:
            text = data.removeprefix(BOM).decode()
            value = _JSON_DECODER.decode(text)
            escaped = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
        # Our dumps writes no \u escape but for control characters: the walk is rare.
        if escaped:
            found = lone_surrogate_path(value, "document")
            if found is not None:
                raise ValueError(
                    f"{found[1]}: a \\u escape makes a lone surrogate, which UTF-8 cannot carry"
                )
        return value

    def surely_storable(self, data: bytes) -> bool:
        """Whether what ``loads(data)`` returns needs no check: judged from the bytes alone.

        ``loads`` refuses what a write would refuse but nesting, and nesting over `MAX_DEPTH`
        needs that many brackets.
        """
        return data.count(b"[") + data.count(b"{") <= MAX_DEPTH

    def __repr__(self) -> str:
        return "JSONCodec()"


_MSGPACK_CONTAINERS = {*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF}
_MSGPACK_UNCHECKED = {0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8}  # bin, ext
# Container headers become "c", bin and ext headers 0x80 (not ASCII), every other byte 0.
_MSGPACK_HEADERS = bytes(
    ord("c") if byte in _MSGPACK_CONTAINERS else 0x80 if byte in _MSGPACK_UNCHECKED else 0
    for byte in range(256)
)


def strict_packer(default: Callable[[Any], Any]) -> msgpack.Packer:
    """Return a Packer of `MsgpackCodec`'s bytes; ``default`` gets every tuple, refuses the rest."""
    return msgpack.Packer(use_bin_type=True, datetime=False, strict_types=True, default=default)


def tuple_as_list(value: object) -> list[Any]:
    """Give msgpack's ``strict_types`` a tuple as a list; refuse any other type (subclasses)."""
    if type(value) is tuple:
        return list(value)
    raise TypeError(f"can not serialize {type(value).__name__!r} object")


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(
        f"msgpack ext type {code} ({len(data)} bytes) is not a value rapid_dev_storage stores"
    )


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON (and JSON stores cannot hold it)")


def _checked_int(text: str) -> int:
    value = int(text)
    # 18 digits are always in range: the bounds are compared only for longer numbers.
    if len(text) > 18 and not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"int {text} is outside the storable range {INT_MIN} to {INT_MAX}")
    return value


def _checked_float(text: str) -> float:
    value = float(text)
    if not isfinite(value):
        raise ValueError(f"{text} is too large for a float (JSON stores hold no infinity)")
    return value


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):  # rare: find the key to name it
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"an object has the key {key!r} twice: keep one of them")
            seen.add(key)
    return found


_JSON_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    object_pairs_hook=_unique_pairs,
    parse_int=_checked_int,
    parse_float=_checked_float,
)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class CallableCodec:
    """Adapts the original API's ``serializer=``/``deserializer=`` callables to a codec."""

    extension = ".bin"
    allows_bytes = True
    allows_non_finite = True

    def __init__(
        self,
        serializer: Callable[[Any], bytes],
        deserializer: Callable[[bytes], Any],
        name: str = "custom",
    ) -> None:
        self.name = name
        self._serializer = serializer
        self._deserializer = deserializer

    def dumps(self, value: Any) -> bytes:
        """Call the serializer."""
        return self._serializer(value)

    def loads(self, data: bytes) -> Any:
        """Call the deserializer."""
        return self._deserializer(data)

    def __repr__(self) -> str:
        return f"CallableCodec({self._serializer!r}, {self._deserializer!r}, name={self.name!r})"


_BY_NAME: dict[str, Callable[[], Codec]] = {"msgpack": MsgpackCodec, "json": JSONCodec}


def resolve_codec(
    codec: str | Codec | None,
    serializer: Callable[[Any], bytes] | None = None,
    deserializer: Callable[[bytes], Any] | None = None,
) -> Codec | None:
    """Return the codec a backend was asked for, or None when the store's own codec should be used.

    Raises:
        ValueError: for an unknown codec name, or a serializer without its deserializer.

    """
    if serializer is not None or deserializer is not None:
        if serializer is None or deserializer is None:
            raise ValueError("serializer= and deserializer= go together: give both or neither")
        if codec is not None:
            raise ValueError("give either codec= or serializer=/deserializer=, not both")
        return CallableCodec(serializer, deserializer)
    if codec is None:
        return None
    if isinstance(codec, str):
        try:
            return _BY_NAME[codec]()
        except KeyError:
            known = ", ".join(sorted(_BY_NAME))
            raise ValueError(
                f"unknown codec {codec!r}: use one of {known}, or a Codec object"
            ) from None
    if not isinstance(codec, Codec):
        raise TypeError(f"codec must be a name or a Codec object, not {type(codec).__name__}")
    return codec


def codec_by_name(name: str) -> Codec:
    """Return a fresh codec for a name recorded in a store."""
    return _BY_NAME[name]()


def codec_for_existing_store(
    where: str,
    stored_codec: object,
    version: object,
    readable_version: int,
    requested: Codec | None,
) -> Codec:
    """Return the codec to open a store that records ``stored_codec`` and format ``version``.

    Raises:
        IncompatibleStoreError: a newer format, another codec than ``requested``, or a custom
            codec that was not passed in.

    """
    # bool is an int in Python, but a stored version True is no version.
    if type(version) is not int or version < 1:
        raise IncompatibleStoreError(
            f"{where}: the stored format version is {type(version).__name__} {version!r}, "
            f"expected an integer from 1 to {readable_version}: it was damaged or edited; "
            "restore it from a backup",
            location=where,
            field="version",
        )
    if version > readable_version:
        raise IncompatibleStoreError(
            f"{where}: format version {version!r} is newer than this rapid_dev_storage reads "
            f"({readable_version}): upgrade rapid_dev_storage",
            location=where,
            field="version",
        )
    if type(stored_codec) is not str or not stored_codec:
        raise IncompatibleStoreError(
            f"{where}: the stored codec is {type(stored_codec).__name__} {stored_codec!r}, "
            'expected a codec name such as "json" or "msgpack": it was damaged or edited; '
            "restore it from a backup",
            location=where,
            field="codec",
        )
    if requested is None:
        try:
            return codec_by_name(stored_codec)
        except KeyError:
            raise IncompatibleStoreError(
                f"{where}: the store uses codec {stored_codec!r}: pass that codec (or its "
                "serializer= and deserializer=) to open it",
                location=where,
                field="codec",
            ) from None
    if requested.name != stored_codec:
        raise IncompatibleStoreError(
            f"{where}: the store was written with codec {stored_codec!r}, not "
            f"{requested.name!r}: open it with codec={stored_codec!r}, or copy it to convert",
            location=where,
            field="codec",
        )
    return requested
