"""`StorageBackend`: the contract every backend implements, and the policy shared by all of them.

Public methods hold the policy (validation, encoding, update's retry loop, closing); a backend
implements only the primitive hooks (``_read``, ``_write``, ``_swap``...) on bytes, the way
filelock's ``acquire()`` holds the policy and each platform class only ``_acquire()``.

A backend written for the original seven-method contract overrides the public methods instead and
still works with `Storage`: `update_data` falls back to a read and a write under an in-process lock,
`list_groups` raises `UnsupportedOperationError`, and `close` does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from pathlib import Path
from time import perf_counter
from typing import Any, AsyncIterator, Callable, TypeVar

from ._codecs import Codec, MsgpackCodec
from ._locks import KeyLocks, check_not_updating, running_update_function
from ._slices import LARGE_RECORD
from ._turns import TakesTurns
from ._types import AnyStorable, Keys, NoValue, UpdateFunction
from ._validate import (
    check_group_name,
    check_keys,
    check_prefix,
    check_value,
    unwritable_reason,
    value_fits,
)
from ._watch import Callback, ChangeHub, Filter, Subscription, Watch
from .errors import (
    CorruptRecordError,
    InvalidKeyError,
    InvalidValueError,
    ReadOnlyStoreError,
    StoreClosedError,
    UnsupportedOperationError,
)

BackendT = TypeVar("BackendT", bound="StorageBackend")
SETTLE_WAIT = 0.02
SETTLE_ATTEMPTS = 50
"""A record that changed a moment ago and does not decode is read again every 20 ms while it
keeps changing, for up to a second: long enough for an editor's in-place save to finish."""
ScanItem = tuple[Keys | None, "bytes | CorruptRecordError", str | None]
"""What ``_scan`` yields: the record's keys (None when only its bytes hold them), its bytes (or
the error that kept them from being read: it goes to ``on_corrupt``), and where it lives (None:
the backend's ``location``)."""
CorruptHandler = Callable[[CorruptRecordError], object]


def record_label(group: str, keys: Keys) -> str:
    """How errors name a record: ``group 'USER' keys ('42', 'settings')``."""
    return f"group {group!r} keys {keys!r}"


class StorageBackend(TakesTurns):
    """Where a store's records live. Subclass it to add a backend.

    A new backend sets ``codec`` (in ``__init__``, by calling ours) and implements the hooks:
    ``_read``, ``_write``, ``_swap``, ``_delete``, ``_delete_prefix``, ``_scan``, ``_list_groups``
    and ``_close``; run `rapid_dev_storage.testing.BackendConformance` against it. Every hook
    receives checked names and keys and encoded bytes, so it only stores and finds.
    """

    codec: Codec = MsgpackCodec()
    location: str = "?"
    """Where the records are (a path, a table), for error messages."""

    _closed: bool = False
    _proof_codec: Codec | None = None  # the codec whose surely_storable _proof is
    _proof: Callable[[bytes], bool] | None = None
    read_only: bool = False
    """A read-only backend refuses every write with `ReadOnlyStoreError`."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec if codec is not None else MsgpackCodec()

    # --- construction -----------------------------------------------------------------------

    @classmethod
    async def create_backend_instance(
        cls: type[BackendT],
        path: Path | str,
        name: str,
        unique_identifier: int | str,
        *,
        serializer: Any = None,
        deserializer: Any = None,
    ) -> BackendT:
        """Open (creating if needed) the store ``(name, unique_identifier)`` at ``path``.

        Several stores can share one ``path``; each backend documents what ``path`` is.
        """
        raise UnsupportedOperationError(
            f"{cls.__name__} does not implement create_backend_instance"
        )

    # --- the original contract --------------------------------------------------------------

    async def write_data(self, group_name: str, *keys: str, value: AnyStorable) -> None:
        """Store ``value`` under ``keys``, replacing what was there.

        Raises:
            InvalidKeyError, InvalidNameError: bad keys or group name; nothing is written.
            InvalidValueError: the codec cannot carry ``value``; nothing is written.

        """
        group, checked = self._checked_record(group_name, keys)
        await self._set_checked(group, checked, value)

    async def get_data(self, group_name: str, *keys: str) -> Any:
        """Return the value stored under ``keys``, or `NoValue`.

        Raises:
            CorruptRecordError: the stored record does not decode.

        """
        group, checked = self._checked_record(group_name, keys)
        return await self._get_checked(group, checked)

    async def clear_by_keys(self, group_name: str, *keys: str) -> None:
        """Remove the value under ``keys``; nothing stored there is not an error."""
        group, checked = self._checked_record(group_name, keys)
        self._check_writable()
        check_not_updating(
            self._lock_id(group, checked), "clear_value()", lambda: record_label(group, checked)
        )
        if self._turn_due():
            await self._give_turn()
        try:
            async with self._publishing(group, [checked], None):
                await self._delete(group, checked)
        finally:
            self._turn_last = perf_counter()  # see _turn_due

    async def clear_group(self, group_name: str) -> None:
        """Remove every record of the group."""
        group = self._checked_group(group_name)
        self._check_writable()
        await self._clear_publishing(group, ())

    async def clear_by_key_prefix(self, group_name: str, *keys: str) -> None:
        """Remove every record whose keys start with ``keys`` (1 to 5 of them).

        An empty prefix is refused rather than read as "everything": use `clear_group` for that.
        """
        group = self._checked_group(group_name)
        self._check_writable()
        if not keys:
            raise InvalidKeyError(
                "clearing by prefix needs at least one key: use clear_group() to clear the whole "
                f"group {group!r}",
                group=group,
                keys=keys,
            )
        await self._clear_publishing(group, check_keys(keys, group))

    def get_all_by_group(
        self, group_name: str, *, on_corrupt: CorruptHandler | None = None
    ) -> AsyncIterator[tuple[Keys, Any]]:
        """Yield ``(keys, value)`` for every record of the group, streaming (order unspecified).

        See `get_all_by_key_prefix` for ``on_corrupt``.
        """
        return self.get_all_by_key_prefix(group_name, on_corrupt=on_corrupt)

    async def get_all_by_key_prefix(
        self, group_name: str, *keys: str, on_corrupt: CorruptHandler | None = None
    ) -> AsyncIterator[tuple[Keys, Any]]:
        """Yield ``(keys, value)`` for the records whose keys start with ``keys``, streaming.

        No prefix means the whole group. Order is unspecified. A record that does not decode
        raises `CorruptRecordError`, unless ``on_corrupt`` is given: then the error is passed to
        it and iteration goes on (``on_corrupt=problems.append`` collects them).
        """
        group = self._checked_group(group_name)
        prefix = check_prefix(keys, group)
        width = len(prefix)
        async for batch in self._scan(group, prefix):
            for known_keys, data, source in batch:
                # A batch is decoded on the loop: without turns, a task iterating a group whose
                # batches are already read would hold the loop for the whole group.
                if self._turn_due():
                    await self._give_turn()
                try:
                    if isinstance(data, CorruptRecordError):
                        raise data
                    if len(data) > LARGE_RECORD:
                        record_keys, value = await self._off_loop(
                            self._decode, group, known_keys, data, source
                        )
                    elif known_keys is None:
                        record_keys, value = self._decode(group, None, data, source)
                    else:
                        record_keys = known_keys
                        value = self._value_of(group, known_keys, data, source)
                except CorruptRecordError as exc:
                    if on_corrupt is None:
                        raise
                    on_corrupt(exc)
                    continue
                # A backend that learns keys only by decoding leaves the prefix test to us.
                if known_keys is None and record_keys[:width] != prefix:
                    continue
                self._turn_last = perf_counter()  # see _turn_due
                yield record_keys, value

    # --- what the original contract lacked --------------------------------------------------

    async def update_data(self, group_name: str, *keys: str, fn: UpdateFunction) -> Any:
        """Atomically replace the value under ``keys`` with ``fn(current)`` and return it.

        ``fn`` (sync or async) gets the current value or `NoValue`; returning `NoValue` clears
        the record. Within a process, updates of one record run one at a time. Across processes
        the write is a compare-and-swap: if another process changed the record meanwhile, ``fn``
        is called again with the new value, so ``fn`` should compute and not act.
        A backend without ``_swap`` (one written for the original contract) is atomic only
        within the process.
        """
        group, checked = self._checked_record(group_name, keys)
        self._check_writable()
        lock_id = self._lock_id(group, checked)
        check_not_updating(lock_id, "update()", lambda: record_label(group, checked))
        if self._turn_due():
            await self._give_turn()
        async with self._key_locks.hold(lock_id):
            if type(self)._swap is StorageBackend._swap:
                current = await self.get_data(group, *checked)
                new = await self._call_update_function(fn, current, lock_id)
                if new is NoValue:
                    await self.clear_by_keys(group, *checked)
                else:
                    await self.write_data(group, *checked, value=new)
                return new
            try:
                return await self._swap_until_landed(group, checked, fn, lock_id)
            finally:
                self._turn_last = perf_counter()  # see _turn_due

    async def _swap_until_landed(
        self, group: str, keys: Keys, fn: UpdateFunction, lock_id: tuple[int, str, Keys]
    ) -> Any:
        """Run update()'s compare-and-swap: read, call ``fn``, swap; again if another won."""
        while True:
            data, current = await self._read_value(group, keys)
            new = await self._call_update_function(fn, current, lock_id)
            new_data = None if new is NoValue else self._encode(group, keys, new)
            async with self._publishing(group, [keys], new_data) as outcome:
                outcome.landed = await self._swap(group, keys, data, new_data)
            if outcome.landed:
                return new

    async def list_groups(self) -> list[str]:
        """Return the names of the groups that hold at least one record, sorted."""
        self._check_open()
        return sorted(await self._list_groups())

    async def close(self) -> None:
        """Release connections, threads and files; later calls raise `StoreClosedError`.

        Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        hub = self.__dict__.get("_rds_hub")
        if hub is not None:
            await hub.close()
        await self._close()

    # --- change notifications ---------------------------------------------------------------

    def watch_changes(self, group_name: str | None = None, *prefix: str) -> Watch:
        """Return a `Watch` of changes to ``group_name`` (None: all) under ``prefix``.

        Raises:
            UnsupportedOperationError: a backend written for the original contract.

        """
        return Watch(self._watch_hub(), self._watch_filter(group_name, prefix))

    async def subscribe_changes(
        self, callback: Callback, group_name: str | None = None, prefix: tuple[str, ...] = ()
    ) -> Subscription:
        """Call ``callback(change)`` (sync or async) for every matching change until cancelled.

        A callback that raises is logged and stays subscribed; it never stops the others.
        """
        where = self._watch_filter(group_name, prefix)
        hub = self._watch_hub()
        subscription = Subscription(hub, callback)
        await hub.add_callback(subscription, where)
        return subscription

    async def _start_watching(self) -> None:
        """Begin publishing other writers' changes (hook; the default sees only our own)."""

    async def _stop_watching(self) -> None:
        """Stop what `_start_watching` began."""

    def _watch_hub(self) -> ChangeHub:
        self._check_open()
        if type(self).write_data is not StorageBackend.write_data:
            raise UnsupportedOperationError(
                f"{type(self).__name__} implements only the original contract: it cannot "
                "report changes"
            )
        hub = self.__dict__.get("_rds_hub")
        if hub is None:
            hub = self.__dict__["_rds_hub"] = ChangeHub(self)
        return hub

    def _watch_filter(self, group_name: str | None, prefix: tuple[str, ...]) -> Filter:
        group = None if group_name is None else check_group_name(group_name)
        if group is None and prefix:
            raise InvalidKeyError("a key prefix needs a group to apply to", keys=prefix)
        return Filter(group, check_prefix(prefix, group))

    @contextlib.asynccontextmanager
    async def _publishing(
        self, group: str, records: list[Keys], data: bytes | None
    ) -> AsyncIterator[_Outcome]:
        """Publish a write of ``records`` (``data``; None: cleared) once it landed, if watched.

        The hub learns the new bytes before the write starts, so a file watcher that sees the
        write before it returns (a slow fsync, a large clear) takes it for our own and stays
        quiet; if the write fails, the hub forgets them again.
        """
        hub = self._active_hub()
        outcome = _Outcome()
        if hub is None:
            yield outcome
            return
        for keys in records:
            hub.remember(group, keys, data)
        try:
            yield outcome
        except BaseException:
            for keys in records:
                hub.forget(group, keys)
            raise
        if outcome.landed:
            for keys in records:
                self._published(group, keys, data)
        else:
            for keys in records:
                hub.forget(group, keys)

    def _active_hub(self) -> ChangeHub | None:
        """Return the change hub while anyone watches, else None: changes cost nothing then."""
        hub: ChangeHub | None = self.__dict__.get("_rds_hub")
        return hub if hub is not None and hub.active else None

    def _published(self, group: str, keys: Keys, data: bytes | None) -> None:
        """Publish a change made through this backend, if anyone watches."""
        hub = self._active_hub()
        if hub is not None:
            hub.publish(group, keys, data, "local")

    async def _clear_publishing(self, group: str, prefix: Keys) -> None:
        """Clear a prefix (empty: the group); while watched, publish each record cleared."""
        if self._active_hub() is None:
            await self._delete_prefix(group, prefix)
            return
        cleared: list[Keys] = []
        async for keys, _ in self.get_all_by_key_prefix(group, *prefix, on_corrupt=ignore_corrupt):
            cleared.append(keys)
        async with self._publishing(group, cleared, None):
            await self._delete_prefix(group, prefix)

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    # --- hooks: what a backend implements -----------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        """Return the stored bytes, or None."""
        raise self._missing_hook("_read")

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        """Store ``data``, replacing any previous record, atomically."""
        raise self._missing_hook("_write")

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        """If the record's bytes are ``expected`` (None: absent), store ``new`` (None: delete).

        Return whether it did; atomic against every other writer, in any process.
        """
        raise self._missing_hook("_swap")

    async def _swap_in_process(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        """Swap by `_read`, `_write` and `_delete`: for backends no other process writes.

        Atomic only as far as nothing writes the record between the read and the write: true
        of a dict, and of any backend under update()'s per-record lock within one process.
        """
        if await self._read(group, keys) != expected:
            return False
        if new is None:
            await self._delete(group, keys)
        else:
            await self._write(group, keys, new)
        return True

    async def _delete(self, group: str, keys: Keys) -> None:
        """Remove one record if it exists."""
        raise self._missing_hook("_delete")

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        """Remove every record of ``group`` whose keys start with ``prefix`` (empty: all)."""
        raise self._missing_hook("_delete_prefix")

    def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        """Yield batches of `ScanItem`, one per record, never holding them all in memory.

        Batches (a page of rows, a few hundred files) keep the per-record cost of iteration low.

        A backend that yields keys must yield only records matching ``prefix``; one that yields
        None for keys may yield the whole group, and the records are filtered after decoding.
        """
        raise self._missing_hook("_scan")

    async def _list_groups(self) -> list[str]:
        """Return the names of non-empty groups."""
        raise self._missing_hook("_list_groups")

    async def _close(self) -> None:
        """Release resources; called once."""

    def _encode_record(self, keys: Keys, value: Any) -> bytes:
        """Return the stored bytes of a checked value; by default the codec's bytes of the value.

        A backend whose records carry their own keys (files) wraps them in here.
        """
        return self.codec.dumps(value)

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

    # --- policy helpers ---------------------------------------------------------------------

    async def _get_checked(self, group: str, keys: Keys) -> Any:
        """`get_data` for a group and keys already checked (by a `StorageValue`)."""
        if type(self).get_data is not StorageBackend.get_data:  # written for the original API
            return await self.get_data(group, *keys)
        if self._turn_due():
            await self._give_turn()
        self._check_open()
        try:
            return (await self._read_value(group, keys))[1]
        finally:
            self._turn_last = perf_counter()  # see _turn_due

    async def _read_value(self, group: str, keys: Keys) -> tuple[bytes | None, Any]:
        """Return a record's bytes and value (None and `NoValue` when absent).

        A record that does not decode but changed a moment ago may be half-way through a save
        by a tool that writes in place (nano, ``cp`` over it): it is read again for a moment
        (`_changed_recently`) before it is called corrupt. A large record decodes off the loop.
        """
        attempts = 0
        while True:
            data = await self._read(group, keys)
            if data is None:
                return None, NoValue
            try:
                return data, await self._value_async(group, keys, data)
            except CorruptRecordError:
                attempts += 1
                if attempts > SETTLE_ATTEMPTS or not self._changed_recently(group, keys):
                    raise
            await asyncio.sleep(SETTLE_WAIT)

    def _changed_recently(self, group: str, keys: Keys) -> bool:
        """Whether the record was written within the last moment (hook; by default never).

        A backend whose records people and tools edit in place (files) says so, so that a read
        racing a non-atomic save is retried instead of reported as corrupt.
        """
        return False

    async def _set_checked(self, group: str, keys: Keys, value: Any) -> None:
        """`write_data` for a group and keys already checked (by a `StorageValue`)."""
        if type(self).write_data is not StorageBackend.write_data:
            await self.write_data(group, *keys, value=value)
            return
        self._check_open()
        self._check_writable()
        check_not_updating(
            self._lock_id(group, keys), "set_value()", lambda: record_label(group, keys)
        )
        if self._turn_due():
            await self._give_turn()
        try:
            data = self._encode(group, keys, value)
            async with self._publishing(group, [keys], data):
                await self._write(group, keys, data)
        finally:
            self._turn_last = perf_counter()  # see _turn_due

    @property
    def _key_locks(self) -> KeyLocks:
        # Created lazily: backends written for the original contract never call our __init__.
        try:
            return self.__dict__["_rds_key_locks"]  # type: ignore[no-any-return]
        except KeyError:
            locks = self.__dict__["_rds_key_locks"] = KeyLocks()
            return locks

    def _lock_id(self, group: str, keys: Keys) -> tuple[int, str, Keys]:
        return (id(self), group, keys)

    def _missing_hook(self, hook: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(
            f"{type(self).__name__} does not implement {hook}(); a backend implements the hooks "
            "or overrides the public methods (see StorageBackend)"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{type(self).__name__} at {self.location} is closed")

    def _checked_group(self, group_name: str) -> str:
        self._check_open()
        return check_group_name(group_name)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{type(self).__name__} at {self.location} is read-only: write through an "
                "overlay (rapid_dev_storage.OverlayBackend) or open it writable"
            )

    def _checked_record(self, group_name: str, keys: tuple[str, ...]) -> tuple[str, Keys]:
        group = self._checked_group(group_name)
        return group, check_keys(keys, group)

    def _encode(self, group: str, keys: Keys, value: Any) -> bytes:
        codec = self.codec
        try:
            check_value(
                value, allow_bytes=codec.allows_bytes, allow_non_finite=codec.allows_non_finite
            )
            return self._encode_record(keys, value)
        except InvalidValueError as exc:
            message = f"cannot store {record_label(group, keys)}: {exc}"
            raise InvalidValueError(message, group=group, keys=keys, path=exc.path) from None
        except Exception as exc:
            raise InvalidValueError(
                f"cannot store {record_label(group, keys)}: the {codec.name} codec failed: {exc}",
                group=group,
                keys=keys,
            ) from exc

    def _value_of(self, group: str, keys: Keys, data: bytes, source: str | None = None) -> Any:
        """Return the value of a record whose keys are known, raising `CorruptRecordError`.

        Records holding only the codec's bytes of the value take a short path (a microsecond a
        record counts over 100,000 of them); one that fails takes the long one, to report well.
        """
        if type(self)._decode_record is StorageBackend._decode_record:
            codec = self.codec
            try:
                value = codec.loads(data)
            except Exception:  # decoded again below, to raise a CorruptRecordError
                pass
            else:
                # _surely_storable, inlined; callers send no large record down this path.
                proof = self._proof if self._proof_codec is codec else self._find_proof()
                if (proof is not None and proof(data)) or value_fits(
                    value, 0, codec.allows_bytes, codec.allows_non_finite
                ):
                    return value
        return self._decode(group, keys, data, source)[1]

    def _decode(
        self, group: str, keys: Keys | None, data: bytes, source: str | None = None
    ) -> tuple[Keys, Any]:
        """Return a record's ``(keys, value)``, or raise `CorruptRecordError` naming it.

        One rule for both directions: a value a write would refuse (an int out of range, a NaN
        in JSON, a bytes dict key...) is a corrupt record, so that whatever a read returns can
        be written back (``update(lambda v: v)`` never fails on it).
        """
        try:
            record_keys, value = self._decode_record(group, keys, data, source)
        except CorruptRecordError:
            raise
        except Exception as exc:
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
        what = f"group {group!r} keys {keys!r}" if keys is not None else f"group {group!r}"
        return CorruptRecordError(
            f"record of {what} in {where} {problem} (fix it by hand, or clear it)",
            group=group,
            keys=keys,
            location=where,
        )

    async def _value_async(self, group: str, keys: Keys, data: bytes) -> Any:
        """`_value_of`, on a thread for a large record (see `_off_loop`)."""
        if len(data) > LARGE_RECORD:
            return (await self._off_loop(self._decode, group, keys, data))[1]
        return self._value_of(group, keys, data)

    async def _call_update_function(
        self, fn: UpdateFunction, current: Any, lock_id: tuple[int, str, Keys]
    ) -> Any:
        with running_update_function(lock_id):
            new = fn(current)
            if inspect.isawaitable(new):
                new = await new
        return new


def ignore_corrupt(error: CorruptRecordError) -> None:
    """Skip a record that does not decode, while listing keys (a read of it reports it)."""


class _Outcome:
    """Whether a write landed (a compare-and-swap may not)."""

    landed = True
