"""Encoding and decoding records: one rule for both directions.

What a write refuses a read refuses too: a value a write would refuse (an int out of range, a
NaN in JSON, a bytes dict key...) is read as a corrupt record, so that whatever a read returns can
be written back (``update(lambda v: v)`` never fails on it). A backend refines how a record's
bytes carry its value through the optional hooks here (`RecordCoding._encode_record` and
`RecordCoding._decode_record`: files wrap the keys in), and names where a record lives
(`RecordCoding._describe_record`). Reads that let an in-place save settle are `_settling`'s.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from msgpack import unpackb

from ._codecs import Codec, JSONCodec, MsgpackCodec
from ._hooks import BackendHooks
from ._slices import LARGE_RECORD, collector_paused, unpack_in_slices
from ._snapshots import (
    INLINE_CHECK,
    INLINE_ENCODE,
    REFUSED_INLINE,
    SNAPSHOTS,
    LargeValue,
    drop_in_slices,
    holds_more_than,
    no_collection,
    snapshot_fits,
)
from ._threads import alone
from ._types import Keys
from ._validate import check_value, lone_surrogate_path, unstorable_reason
from ._value_fits import value_fits
from .errors import CorruptRecordError, InvalidValueError

TOO_LARGE_TO_DECODE = "is more than this process can hold in memory (not damaged) to decode as"
"""Said of a record whose decode ran out of memory (a memory limit): fsck leaves it in place."""

UNKNOWN_FORM: Any = object()
"""`RecordCoding._record_form` of a backend whose records are not the bytes of one object."""


def conflict_message(where: str) -> str:
    """How reads, scans and watchers name a record file git left with conflict markers."""
    return f"unresolved merge conflict in {where}: edit it, then `git add`"


def _changed_while(doing: str, exc: Exception) -> str:
    """Say that another thread changed a value while a write ``doing`` it: the error's text."""
    return (
        f"the value changed while it was {doing} ({exc}): do not change a value another "
        "thread is storing"
    )


def record_label(group: str, keys: Keys) -> str:
    """How errors name a record: ``group 'USER' keys ('42', 'settings')``."""
    return f"group {group!r} keys {keys!r}"


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

    # --- encoding ---------------------------------------------------------------------------

    def _encode_at_call(self, group: str, keys: Keys, value: Any) -> bytes | LargeValue:
        """Return the bytes to store, or a `LargeValue` for `_encode_large` to finish on a thread.

        Called where the write is made, on the loop: what is stored is the value at this moment.
        Our own codecs take a snapshot first (msgpack's strict encoder, which runs no Python
        for plain data), and what is checked is the snapshot: a thread changing the value
        meanwhile cannot have a record stored that a get refuses. For msgpack the snapshot is
        the record: a small one whose bytes prove all but its keys (`surely_storable`) is
        decoded as a get decodes it (0.7 us), any other is decoded into a private copy that is
        checked (on a thread above `INLINE_CHECK`); JSON checks and encodes such a copy. Where
        no other thread can run a program's code (`_threads.alone`) the value is its snapshot,
        and up to `INLINE_ENCODE` the value itself is checked (a third to a fifth of the copy's
        cost). A codec of the user's own has no snapshot: its value is checked and encoded here.

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
        except Exception as exc:  # refused: nothing is stored; the check names the part
            if holds_more_than(value, REFUSED_INLINE):  # named on a thread (see LargeValue)
                return LargeValue(None, False, (value, exc))
            raise self._refusal(group, keys, value, exc) from None
        is_record = form is not UNKNOWN_FORM
        if is_record and snapshot_fits(value, snapshot, tuples):
            return snapshot  # else the copy's check below names what it refuses
        if not is_record and len(snapshot) <= INLINE_ENCODE:  # JSON: see snapshot_fits
            with no_collection():
                encoded = self._encode(group, keys, value) if alone() else None
            if encoded is not None:
                return encoded
        large = LargeValue(snapshot, is_record, tupleless=not tuples)
        if len(snapshot) > (INLINE_CHECK if is_record else INLINE_ENCODE):
            return large
        return self._encode_snapshot(group, keys, large)

    def _encode_large(self, group: str, keys: Keys, large: LargeValue) -> bytes:
        """`_encode_at_call` of a `LargeValue`, on a thread: the same checks, errors and bytes.

        The collector stays paused throughout (the copy's millions of objects would make each
        collection hold the GIL for 100 ms), and the copy is taken apart a slice at a time
        (`_snapshots.drop_in_slices`).
        """
        if large.snapshot is None:  # refused by the snapshot: the walk names the part
            raise self._refusal(group, keys, *large.refused)
        with collector_paused:
            return self._encode_snapshot(group, keys, large, drop_in_slices)

    def _encode_snapshot(
        self,
        group: str,
        keys: Keys,
        large: LargeValue,
        drop: Callable[[Any], None] | None = None,
    ) -> bytes:
        """Check (and for JSON encode) a private copy decoded from ``large``'s snapshot.

        Nobody else holds the copy, so what is checked is what is stored: for msgpack the
        snapshot itself once its copy passes `value_fits` (the level walk; ints out of range
        and subclasses were refused by the snapshot), for JSON the codec's bytes of the copy.
        A snapshot that does not decode was taken while another thread changed the value (the
        encoder runs Python for a tuple, where a thread may take the GIL): refused. ``drop``
        takes the copy apart afterwards (a large one a slice at a time).
        """
        assert large.snapshot is not None  # taken by _encode_at_call
        snapshot = large.snapshot
        # On a thread (``drop``) in slices, which let the GIL go; on the loop in one call
        # (an unpacker costs 3 us more, a third of a small JSON write).
        unpack: Callable[..., Any] = unpackb if drop is None else unpack_in_slices
        try:
            try:
                copy = unpack(snapshot, raw=False, strict_map_key=False)
                tupleless = large.tupleless  # arrays decoded as lists; a tuple met is a list
            except TypeError:  # an array as a dict key: back as a tuple, to be named as before
                copy = unpack(snapshot, raw=False, use_list=False, strict_map_key=False)
                tupleless = False
        except Exception as exc:
            raise InvalidValueError(
                f"cannot store {record_label(group, keys)}: {_changed_while('encoded', exc)}",
                group=group,
                keys=keys,
            ) from exc
        try:
            if not large.is_record:
                return self._encode(group, keys, copy)
            value = self._value_of_form(copy)
            if value_fits(value, 0, True, True, strict=True, tupleless=tupleless):
                return snapshot
            return self._encode(group, keys, value)
        finally:
            if drop is not None:
                drop(copy)

    def _encode(self, group: str, keys: Keys, value: Any) -> bytes:
        """Return the bytes to store, or raise `InvalidValueError` naming the record.

        The caller's value for a codec of the user's own; for ours, a private copy (see
        `_encode_at_call`). A codec with ``strict_dumps`` (msgpack) refuses ints out of range
        and subclasses while it encodes, so a large value's check leaves those to it (a third
        of the check's cost); if the quick check or the encoder refuses, the full check names
        the part, or the codec's error is reported as before.
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
        except Exception as exc:
            raise self._refusal(group, keys, value, exc) from None

    def _refusal(self, group: str, keys: Keys, value: Any, exc: Exception) -> InvalidValueError:
        """Return the error of a value the check or the encoder (``exc``) refused.

        The check names the refused part (run again unless it raised ``exc``); a lone
        surrogate, the one refusal it leaves to the encoder, is found by a walk of its own;
        anything else is the codec's error. Never encodes: a value the snapshot refused and
        another thread changed meanwhile is still refused (its message may change).
        """
        codec = self.codec
        if not isinstance(exc, InvalidValueError):
            try:
                check_value(
                    value, allow_bytes=codec.allows_bytes, allow_non_finite=codec.allows_non_finite
                )
            except InvalidValueError as found:
                exc = found
            except RuntimeError as changed:  # "dictionary changed size during iteration"
                exc = InvalidValueError(_changed_while("checked", changed))
        if isinstance(exc, InvalidValueError):
            message = f"cannot store {record_label(group, keys)}: {exc}"
            return InvalidValueError(message, group=group, keys=keys, path=exc.path)
        found_surrogate = (
            lone_surrogate_path(value) if isinstance(exc, UnicodeEncodeError) else None
        )
        if found_surrogate is None:  # not in the value: a codec of the user's own failed
            error = self._codec_failed(group, keys, exc)
        else:
            assert isinstance(exc, UnicodeEncodeError)  # found only for one
            path, where = found_surrogate
            error = InvalidValueError(
                f"cannot store {record_label(group, keys)}: {where} holds a lone surrogate "
                f"({exc.object[exc.start : exc.end]!r}), which UTF-8 cannot carry: use valid "
                "Unicode text",
                group=group,
                keys=keys,
                path=path,
            )
        error.__cause__ = exc
        return error

    def _codec_failed(self, group: str, keys: Keys, exc: Exception) -> InvalidValueError:
        return InvalidValueError(
            f"cannot store {record_label(group, keys)}: the {self.codec.name} codec failed: {exc}",
            group=group,
            keys=keys,
        )

    # --- decoding ---------------------------------------------------------------------------

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
            why = TOO_LARGE_TO_DECODE if isinstance(exc, MemoryError) else "does not decode as"
            raise self._corrupt(group, keys, source, f"{why} {self.codec.name}: {exc}") from exc
        if self._surely_storable(data):
            return record_keys, value
        reason = unstorable_reason(self.codec, data, value)
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
