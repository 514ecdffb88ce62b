"""Encoding and decoding records: one rule for both directions, and reads that let saves settle.

What a write refuses a read refuses too: a value a write would refuse (an int out of range, a
NaN in JSON, a bytes dict key...) is read as a corrupt record, so that whatever a read returns can
be written back (``update(lambda v: v)`` never fails on it). A backend refines how a record's
bytes carry its value through the optional hooks here (`RecordCoding._encode_record` and
`RecordCoding._decode_record`: files wrap the keys in), names where a record lives
(`RecordCoding._describe_record`) and says whether one may be half-way through an in-place save
(`RecordCoding._changed_recently`).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Callable

from ._codecs import Codec, JSONCodec, MsgpackCodec
from ._hooks import BackendHooks
from ._slices import LARGE_RECORD, collector_paused, unpack_in_slices
from ._snapshots import (
    INLINE_ENCODE,
    REFUSED_INLINE,
    SNAPSHOTS,
    LargeValue,
    drop_in_slices,
    holds_more_than,
)
from ._types import Keys, NoValue
from ._validate import check_value, lone_surrogate_path, unwritable_reason
from ._value_fits import keys_fit, value_fits
from .errors import CorruptRecordError, InvalidValueError

SETTLE_WAIT = 0.02
SETTLE_ATTEMPTS = 100
"""A record that changed a moment ago and does not decode is read again every 20 ms while it
keeps changing, for up to two seconds: long enough for an editor's in-place save to finish, also
on a loaded machine where the saving process waits for a core or the disk's journal."""


SMALL_SNAPSHOT = 4096
"""Bytes up to which a write's check of a msgpack snapshot walks its containers only
(`keys_fit`); a larger one takes `value_fits`, whose C passes over long containers win."""

UNKNOWN_FORM: Any = object()
"""`RecordCoding._record_form` of a backend whose records are not the bytes of one object."""


def conflict_message(where: str) -> str:
    """How reads, scans and watchers name a record file git left with conflict markers."""
    return f"unresolved merge conflict in {where}: edit it, then `git add`"


def record_label(group: str, keys: Keys) -> str:
    """How errors name a record: ``group 'USER' keys ('42', 'settings')``."""
    return f"group {group!r} keys {keys!r}"


def _snapshot_fits(value: Any, snapshot: bytes, tupleless: bool) -> bool:
    """Whether a value msgpack's strict encoder took as ``snapshot`` passes `check_value`.

    ``tupleless``: the encoder met no tuple in it (`Snapshots.take`).
    """
    if len(snapshot) <= SMALL_SNAPSHOT and SNAPSHOTS.surely_storable(snapshot):
        return keys_fit(value)  # the bytes proved the rest (see keys_fit)
    return value_fits(value, 0, True, True, strict=True, tupleless=tupleless)


class RecordCoding(BackendHooks):
    """Turns values into a record's bytes and back, refusing alike in both directions."""

    _proof_codec: Codec | None = None  # the codec whose surely_storable _proof is
    _proof: Callable[[bytes], bool] | None = None
    _decodes_plainly = True  # no _decode_record of its own: `_record_of` calls the codec itself

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._decodes_plainly = cls._decode_record is RecordCoding._decode_record

    # --- optional hooks ---------------------------------------------------------------------

    def _encode_record(self, keys: Keys, value: Any) -> bytes:
        """Return the stored bytes of a checked value; by default the codec's bytes of the value.

        A backend whose records carry their own keys (files) wraps them in here.
        """
        return self.codec.dumps(value)

    def _record_form(self, keys: Keys, value: Any) -> Any:
        """Return what this backend's record of ``value`` is the codec's bytes of.

        By default the value itself; a backend whose records wrap the value (files: with
        their keys) returns the wrapping, and `_value_of_form` unwraps it; `UNKNOWN_FORM`:
        its records are not one object's bytes (a backend overriding `_encode_record` but
        not this). Asked for msgpack stores only: a record encoded in one go, no copy.
        """
        if type(self)._encode_record is RecordCoding._encode_record:
            return value
        return UNKNOWN_FORM

    def _value_of_form(self, form: Any) -> Any:
        """Return the value a `_record_form` wraps."""
        return form

    def _decode_record(
        self, group: str, keys: Keys | None, data: bytes, source: str | None
    ) -> tuple[Keys, Any]:
        """Return ``(keys, value)`` from stored bytes; the inverse of `_encode_record`.

        ``keys`` is None when the caller learns them from the record. Raise anything on bad
        bytes (it becomes a `CorruptRecordError`), or a `CorruptRecordError` of your own.
        """
        if keys is None:  # a backend whose _scan yields no keys must override this hook
            raise self._missing_hook("_decode_record")
        return keys, self.codec.loads(data)

    def _describe_record(self, group: str, keys: Keys | None) -> str:
        """Return where a record lives, for error messages; by default the backend's location."""
        return self.location

    def _changed_recently(self, group: str, keys: Keys | None, source: str | None = None) -> bool:
        """Whether the record was written within the last moment (by default never).

        A backend whose records people and tools edit in place (files) says so, so that a read
        racing a non-atomic save is retried instead of reported as corrupt. ``source``: where
        a scan found it (its keys may be None then).
        """
        return False

    async def _read_again(self, group: str, keys: Keys | None, source: str | None) -> bytes | None:
        """Read again a record that may be half-way through a save (see `_changed_recently`).

        ``source`` is where a scan found it; by default it is read by its keys.
        """
        if keys is None:  # a backend whose _scan yields no keys must override this hook
            raise self._missing_hook("_read_again")
        return await self._read(group, keys)

    # --- encoding ---------------------------------------------------------------------------

    def _encode_at_call(self, group: str, keys: Keys, value: Any) -> bytes | LargeValue:
        """Return the bytes to store, or a `LargeValue` for `_encode_large` to finish on a thread.

        Called where the write is made, on the loop: what is stored is the value at this moment.
        Our own codecs take a snapshot first (`LargeValue`); for msgpack it is the encoding
        itself, so a small value costs no more than before. A codec of the user's own is
        checked and encoded here, whatever the size (it may not be safe on a thread).

        Raises:
            InvalidValueError: as `_encode`.

        """
        codec = self.codec
        kind = type(codec)
        if kind is not MsgpackCodec and kind is not JSONCodec:
            return self._encode(group, keys, value)
        form = self._record_form(keys, value) if kind is MsgpackCodec else UNKNOWN_FORM
        try:  # msgpack: the record itself (the strict encoder is the codec's)
            snapshot, tuples = SNAPSHOTS.take(value if form is UNKNOWN_FORM else form)
        except Exception:  # refused: the check names the part (or the codec's error)
            if holds_more_than(value, REFUSED_INLINE):  # named on a thread (see LargeValue)
                return LargeValue(None, False, value)
            return self._encode(group, keys, value)
        if len(snapshot) > INLINE_ENCODE:
            return LargeValue(snapshot, form is not UNKNOWN_FORM)
        if form is not UNKNOWN_FORM and _snapshot_fits(value, snapshot, not tuples):
            return snapshot
        return self._encode(group, keys, value)

    def _encode_large(self, group: str, keys: Keys, large: LargeValue) -> bytes:
        """`_encode` of the value ``large`` holds, on a thread: the same checks, errors and bytes.

        The snapshot is decoded in slices into a private copy, checked (for msgpack the
        level walk, whose passes take a slice of a level at a time; ints out of range and
        subclasses were refused by the snapshot) and encoded (msgpack: the snapshot is the
        record). The collector stays paused throughout (the copy's millions of objects would
        make each collection hold the GIL for 100 ms), and the copy is taken apart a slice at
        a time (`_snapshots.drop_in_slices`).
        """
        if large.snapshot is None:  # refused by the snapshot: the walk names the part
            return self._encode(group, keys, large.refused)
        with collector_paused:
            try:
                copy = unpack_in_slices(large.snapshot, raw=False, strict_map_key=False)
                tupleless = True  # arrays decoded as lists
            except TypeError:  # an array as a dict key: back as a tuple, to be named as before
                copy = unpack_in_slices(
                    large.snapshot, raw=False, use_list=False, strict_map_key=False
                )
                tupleless = False
            try:
                if not large.is_record:
                    return self._encode(group, keys, copy)
                value = self._value_of_form(copy)
                if value_fits(value, 0, True, True, strict=True, tupleless=tupleless):
                    return large.snapshot
                return self._encode(group, keys, value)
            finally:
                drop_in_slices(copy)

    def _encode(self, group: str, keys: Keys, value: Any) -> bytes:
        """Return the bytes to store, or raise `InvalidValueError` naming the record.

        A codec with ``strict_dumps`` (msgpack) refuses ints out of range and subclasses while
        it encodes, so a large value's check leaves those to it (a third of the check's cost);
        if the quick check or the encoder refuses, the full check names the part, or the
        codec's error is reported as before.
        """
        codec = self.codec
        if getattr(codec, "strict_dumps", False) and value_fits(
            value, 0, codec.allows_bytes, codec.allows_non_finite, strict=True
        ):
            try:
                return self._encode_record(keys, value)
            except Exception:  # checked and encoded again below, to report it
                pass
        try:
            check_value(
                value, allow_bytes=codec.allows_bytes, allow_non_finite=codec.allows_non_finite
            )
            return self._encode_record(keys, value)
        except InvalidValueError as exc:
            message = f"cannot store {record_label(group, keys)}: {exc}"
            raise InvalidValueError(message, group=group, keys=keys, path=exc.path) from None
        except UnicodeEncodeError as exc:  # the one refusal the check leaves to the encoder
            found = lone_surrogate_path(value)
            if found is None:  # not in the value: a codec of the user's own failed
                raise self._codec_failed(group, keys, exc) from exc
            path, where = found
            raise InvalidValueError(
                f"cannot store {record_label(group, keys)}: {where} holds a lone surrogate "
                f"({exc.object[exc.start : exc.end]!r}), which UTF-8 cannot carry: use valid "
                "Unicode text",
                group=group,
                keys=keys,
                path=path,
            ) from exc
        except Exception as exc:
            raise self._codec_failed(group, keys, exc) from exc

    def _codec_failed(self, group: str, keys: Keys, exc: Exception) -> InvalidValueError:
        return InvalidValueError(
            f"cannot store {record_label(group, keys)}: the {self.codec.name} codec failed: {exc}",
            group=group,
            keys=keys,
        )

    # --- decoding ---------------------------------------------------------------------------

    async def _read_value(self, group: str, keys: Keys) -> tuple[bytes | None, Any]:
        """Return a record's bytes and value (None and `NoValue` when absent).

        A record that does not decode but changed a moment ago may be half-way through a save
        by a tool that writes in place (nano, ``cp`` over it): it is read again for a moment
        (`_settled_record`) before it is called corrupt. A large record decodes off the loop.
        """
        data = await self._read(group, keys)
        data, record = await self._settled_record(group, keys, data, None)
        return data, NoValue if record is None else record[1]

    async def _settled_record(
        self, group: str, keys: Keys | None, data: bytes | None, source: str | None
    ) -> tuple[bytes | None, tuple[Keys, Any] | None]:
        """Return ``data`` and the record it holds, reading it again while a save settles.

        Gets and scans alike: while the record does not decode and `_may_settle` says it may be
        half-way through a save, it is read again (`_read_again`) every `SETTLE_WAIT`, at most
        `SETTLE_ATTEMPTS` times. Returns the bytes last read and their record; (None, None)
        when there is no record (any more).

        Raises:
            CorruptRecordError: it still does not decode once it has settled.

        """
        attempts = 0
        while data is not None:
            try:
                if len(data) > LARGE_RECORD:
                    return data, await self._off_loop(self._decode, group, keys, data, source)
                return data, self._record_of(group, keys, data, source)
            except CorruptRecordError:
                attempts += 1
                if attempts > SETTLE_ATTEMPTS or not self._may_settle(group, keys, data, source):
                    raise
            await asyncio.sleep(SETTLE_WAIT)
            data = await self._read_again(group, keys, source)
        return None, None

    def _may_settle(
        self, group: str, keys: Keys | None, data: bytes, source: str | None = None
    ) -> bool:
        """Whether a record that does not decode may be half-way through a save: read it again.

        git's conflict markers are no save half-way through: no use waiting.
        """
        from ._merge_text import has_conflict_markers  # noqa: PLC0415  (errors only)

        return self._changed_recently(group, keys, source) and not has_conflict_markers(data)

    async def _large_value(self, group: str, keys: Keys, data: bytes) -> Any:
        """`_value_of` of a record over `LARGE_RECORD`, decoded on a thread (see `_off_loop`)."""
        return (await self._off_loop(self._decode, group, keys, data))[1]

    def _scan_decoder(
        self, group: str
    ) -> Callable[[Keys | None, bytes, str | None], tuple[Keys, Any]]:
        """Return `_record_of` for the small records one scan of ``group`` reads.

        A backend may return a quicker one for the records it usually holds (FileBackend:
        `rapid_dev_storage._file_scan_decode`); it must return or refuse exactly what
        `_record_of` would, handing it anything else.
        """
        return partial(self._record_of, group)

    def _value_of(self, group: str, keys: Keys, data: bytes, source: str | None = None) -> Any:
        """Return the value of a record whose keys are known, raising `CorruptRecordError`."""
        return self._record_of(group, keys, data, source)[1]

    def _record_of(
        self, group: str, keys: Keys | None, data: bytes, source: str | None = None
    ) -> tuple[Keys, Any]:
        """Return a record's ``(keys, value)`` as `_decode` does, by a short path for good ones.

        A microsecond a record counts over 100,000 of them. A record that fails the short path
        takes the long one, to report well. Callers send no large record down this path.
        """
        codec = self.codec
        try:
            if keys is not None and self._decodes_plainly:  # the default hook, written out
                record = keys, codec.loads(data)
            else:
                record = self._decode_record(group, keys, data, source)
        except Exception:  # decoded again below, to raise a CorruptRecordError
            pass
        else:
            # _surely_storable, inlined.
            proof = self._proof if self._proof_codec is codec else self._find_proof()
            if (proof is not None and proof(data)) or value_fits(
                record[1], 0, codec.allows_bytes, codec.allows_non_finite
            ):
                return record
        return self._decode(group, keys, data, source)

    def _decode(
        self, group: str, keys: Keys | None, data: bytes, source: str | None = None
    ) -> tuple[Keys, Any]:
        """Return a record's ``(keys, value)``, or raise `CorruptRecordError` naming it."""
        try:
            record_keys, value = self._decode_record(group, keys, data, source)
        except CorruptRecordError:
            raise
        except Exception as exc:
            from ._merge_text import has_conflict_markers  # noqa: PLC0415  (errors only)

            if has_conflict_markers(data):
                where = source or self._describe_record(group, keys)
                raise CorruptRecordError(
                    conflict_message(where), group=group, keys=keys, location=where
                ) from exc
            raise self._corrupt(
                group, keys, source, f"does not decode as {self.codec.name}: {exc}"
            ) from exc
        if self._surely_storable(data):
            return record_keys, value
        codec = self.codec
        reason = unwritable_reason(
            value, allow_bytes=codec.allows_bytes, allow_non_finite=codec.allows_non_finite
        )
        if reason is not None:
            raise self._corrupt(
                group, record_keys, source, f"holds what cannot be written back: {reason}"
            )
        return record_keys, value

    def _surely_storable(self, data: bytes) -> bool:
        """Whether the codec proves from ``data`` alone that its value passes `check_value`.

        Not asked for a large record: a C pass over it would hold the GIL, where the walk
        (on a thread) lets the loop run.
        """
        proof = self._proof if self._proof_codec is self.codec else self._find_proof()
        return proof is not None and len(data) <= LARGE_RECORD and bool(proof(data))

    def _find_proof(self) -> Callable[[bytes], bool] | None:
        """Return the codec's ``surely_storable`` (or None), remembered per codec object."""
        codec = self.codec
        self._proof = getattr(codec, "surely_storable", None)
        self._proof_codec = codec
        return self._proof

    def _corrupt(
        self, group: str, keys: Keys | None, source: str | None, problem: str
    ) -> CorruptRecordError:
        where = source or self._describe_record(group, keys)
        what = record_label(group, keys) if keys is not None else f"group {group!r}"
        return CorruptRecordError(
            f"record of {what} in {where} {problem} (fix it by hand, or clear it)",
            group=group,
            keys=keys,
            location=where,
        )
