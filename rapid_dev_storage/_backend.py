"""`StorageBackend`: the public methods every backend shares, holding the policy once.

A backend implements only the hooks (`_hooks`): bytes in, bytes out. The public methods here
check names and keys, encode and check values (`_coding`), take turns with the event loop,
publish to watchers (`_publishing`), run update's compare-and-swap loop, and close. The layers,
from the bottom: `BackendHooks` (the contract) → `RecordCoding` → `SettlesReads` → `Publishes`
→ `StorageBackend`, which also decodes the bytes scans yield (`_scan_policy`).

A backend written for the original seven-method contract (it overrides the public methods and
implements no hook) is not handled here: `Storage` runs it through `_original.OriginalContract`.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING, Any, AsyncIterator, TypeVar

from ._codecs import Codec, MsgpackCodec, resolve_codec
from ._hooks import NOT_READY, ScanItem
from ._release_task import release_task
from ._scan_policy import CorruptHandler, DecodesScans
from ._slices import LARGE_RECORD
from ._snapshots import LargeValue
from ._types import AnyStorable, Keys, NoValue, UpdateFunction
from ._validate import check_keys, check_prefix, check_record
from ._write_checks import ChecksWrites
from ._write_order import WaitingWrites
from .errors import CorruptRecordError, InvalidKeyError, UnsupportedOperationError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["NOT_READY", "CorruptHandler", "ScanItem", "StorageBackend", "ignore_corrupt"]

BackendT = TypeVar("BackendT", bound="StorageBackend")


def ignore_corrupt(error: CorruptRecordError) -> None:
    """Skip a record that does not decode, while listing keys (a read of it reports it)."""


class StorageBackend(ChecksWrites, DecodesScans):
    """Where a store's records live. Subclass it to add a backend.

    A new backend calls ``super().__init__(codec)`` and implements every hook: ``_read``,
    ``_write``, ``_swap``, ``_delete``, ``_delete_prefix``, ``_scan``, ``_list_groups`` and
    ``_close`` (one left out fails at construction, naming it); then it runs
    `rapid_dev_storage.testing.BackendConformance`. Every hook receives checked names and keys
    and encoded bytes, so it only stores and finds. The public methods hold the policy; a
    subclass may override one and call ``super()``.
    """

    _waiting_writes: WaitingWrites | None = None  # made by the first large write
    _releasing: asyncio.Future[None] | None = None  # made by the first close

    def __init__(self, codec: str | Codec | None = None) -> None:
        """Use ``codec``: a `Codec`, a codec's name (``"msgpack"``, ``"json"``) or None (msgpack).

        Raises:
            ValueError: an unknown codec name.

        """
        resolved = resolve_codec(codec)
        self.codec = resolved if resolved is not None else MsgpackCodec()

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
        self._check_open()
        group, checked = check_record(group_name, keys)
        await self._write_checked(group, checked, value)

    async def _write_checked(self, group: str, checked: Keys, value: AnyStorable) -> None:
        """`write_data` of checked names and keys: what a handle calls (it checked them once)."""
        self._check_write(group, checked, "set_value()")
        due = self._turn_due()
        try:
            data = self._encode_at_call(group, checked, value)
            if isinstance(data, LargeValue) or self._waits(group, checked):
                await self._write_in_turn(group, checked, data)
            elif self._active_hub() is None:  # unwatched: no publishing context to enter
                await self._write(group, checked, data)
            else:
                async with self._publishing(group, [checked], data):
                    await self._write(group, checked, data)
        finally:
            self._turn_last = perf_counter()  # see _turn_due
        if due:  # after the write is on its way, never before: see _turn_due
            await self._give_turn()

    async def get_data(self, group_name: str, *keys: str) -> Any:
        """Return the value stored under ``keys``, or `NoValue`.

        Raises:
            CorruptRecordError: the stored record does not decode.

        """
        self._check_open()
        group, checked = check_record(group_name, keys)
        return await self._get_checked(group, checked)

    async def _get_checked(self, group: str, checked: Keys) -> Any:
        """`get_data` of checked names and keys: what a handle calls (it checked them once)."""
        self._check_open()
        if self._turn_due():
            await self._give_turn()
        try:
            # _read_value's first attempt, written out (two coroutines fewer: a get's hot path)
            data = await self._read(group, checked)
            if data is None:
                return NoValue
            try:
                if len(data) > LARGE_RECORD:
                    return await self._large_value(group, checked, data)
                return self._value_of(group, checked, data)
            except CorruptRecordError:
                if not self._may_settle(group, checked, data):
                    raise
            return (await self._read_value(group, checked))[1]  # reads while the save settles
        finally:
            self._turn_last = perf_counter()  # see _turn_due

    def get_data_at_once(self, group_name: str, *keys: str) -> Any:
        """Return what `get_data` would, without waiting; or `NOT_READY` if only it can.

        For synchronous callers (`rapid_dev_storage.sync`), on any thread: no event loop is
        touched. A record the awaited read would read on a thread (large, or a backend without
        the ``_read_at_once`` hook) is `NOT_READY`, and so is one that does not decode but
        changed a moment ago (`get_data` gives it a moment to settle).

        Raises:
            CorruptRecordError: the stored record does not decode.

        """
        self._check_open()
        group, checked = check_record(group_name, keys)
        data = self._read_at_once(group, checked)
        if data is None:
            return NoValue
        if data is NOT_READY or len(data) > LARGE_RECORD:
            return NOT_READY
        try:
            return self._value_of(group, checked, data)
        except CorruptRecordError:
            if self._may_settle(group, checked, data):
                return NOT_READY
            raise

    async def clear_by_keys(self, group_name: str, *keys: str) -> None:
        """Remove the value under ``keys``; nothing stored there is not an error."""
        group, checked = self._checked_write(group_name, keys, "clear_value()")
        due = self._turn_due()
        try:
            if self._waits(group, checked):
                await self._write_in_turn(group, checked, None)
            elif self._active_hub() is None:  # unwatched: no publishing context to enter
                await self._delete(group, checked)
            else:
                async with self._publishing(group, [checked], None):
                    await self._delete(group, checked)
        finally:
            self._turn_last = perf_counter()  # see _turn_due
        if due:  # after the clear is on its way, never before: see _turn_due
            await self._give_turn()

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
        record_of = self._scan_decoder(group)
        async for decoded, batch in self._scan_records(group, prefix):
            records = (
                [record for record in decoded if record[0][:width] == prefix] if width else decoded
            )
            rest = batch
            while True:
                if rest:  # decoded here, a bounded part at a time (values may be large)
                    more, rest = await self._scanned(group, prefix, rest, record_of, on_corrupt)
                    records += more
                # The backend decoded its records as it read them, within its own slice of the
                # loop's time (and _scanned gave turns): one turn check, then the yields.
                if self._turn_due():
                    await self._give_turn()
                self._turn_last = perf_counter()  # see _turn_due
                for record in records:
                    yield record
                if not rest:
                    break
                records = []

    # --- what the original contract lacked --------------------------------------------------

    async def update_data(self, group_name: str, *keys: str, fn: UpdateFunction) -> Any:
        """Atomically replace the value under ``keys`` with ``fn(current)`` and return it.

        ``fn`` (sync or async) gets the current value or `NoValue`; returning `NoValue` clears
        the record. Within a process, updates of one record run one at a time. Across processes
        the write is a compare-and-swap (the ``_swap`` hook): if another process changed the
        record meanwhile, ``fn`` is called again with the new value, so ``fn`` should compute
        and not act.
        """
        group, checked = self._checked_write(group_name, keys, "update()")
        lock_id = self._lock_id(group, checked)
        due = self._turn_due()
        async with self._record_locks().hold(lock_id):
            try:
                if self._waiting_writes and (
                    ahead := self._waiting_writes.ahead_of_record(group, checked)
                ):
                    await asyncio.wait(ahead)  # an earlier write of the record lands first
                while True:
                    data, current = await self._read_value(group, checked)
                    new = await self._call_update_function(fn, current, lock_id)
                    new_data = None
                    if new is not NoValue:
                        new_data = await self._encoded(
                            group, checked, self._encode_at_call(group, checked, new)
                        )
                    async with self._publishing(group, [checked], new_data) as outcome:
                        outcome.landed = await self._swap(group, checked, data, new_data)
                    if outcome.landed:
                        break
            finally:
                self._turn_last = perf_counter()  # see _turn_due
        if due:  # after the update has landed, never before: see _turn_due
            await self._give_turn()
        return new

    async def list_groups(self) -> list[str]:
        """Return the names of the groups that hold at least one record, sorted."""
        self._check_open()
        return sorted(await self._list_groups())

    async def close(self) -> None:
        """Release connections, threads and files; later calls raise `StoreClosedError`.

        Closing twice is harmless: the second close waits for the first. Cancellation follows
        the work: once the store is marked closed, releasing runs to its end in a task of its
        own whoever stops waiting for it, and a later close waits for that task; asyncio.run's
        shutdown cannot cancel it either (`_release_task`). (A close cancelled halfway used to
        leave the worker thread and its files open for good: the next close found the store
        marked closed and returned at once.)
        """
        if self._releasing is None:
            if self._waiting_writes:  # writes made before the close land first
                await self._waiting_writes.drain()
            if self._releasing is None:  # not begun by another close meanwhile
                self._closed = True
                self._releasing = release_task(self._release())
        await asyncio.shield(self._releasing)

    async def _release(self) -> None:
        await self._end_watches()
        try:
            await self._close()
        finally:
            await self._stop_decoding()

    # --- policy helpers ---------------------------------------------------------------------

    def _waits(self, group: str, keys: Keys) -> bool:
        """Whether a write of ``keys`` made now must wait behind an earlier one."""
        waiting = self._waiting_writes
        return bool(waiting and waiting.ahead_of_record(group, keys))

    def _write_in_turn(
        self, group: str, keys: Keys, data: bytes | LargeValue | None
    ) -> asyncio.Task[None]:
        """Start a write of ``data`` (None: a clear) after the record's earlier waiting writes.

        A `LargeValue` is checked and encoded on a thread first (`_encode_large`); its errors
        reach the caller, and nothing is written.
        """
        waiting = self._waiting_writes
        if waiting is None:
            waiting = self._waiting_writes = WaitingWrites()

        async def write() -> None:
            stored = None if data is None else await self._encoded(group, keys, data)
            async with self._publishing(group, [keys], stored):
                if stored is None:
                    await self._delete(group, keys)
                else:
                    await self._write(group, keys, stored)

        return waiting.add_record_write(group, keys, waiting.ahead_of_record(group, keys), write)

    async def _encoded(self, group: str, keys: Keys, data: bytes | LargeValue) -> bytes:
        """Return ``data``, or the bytes of a `LargeValue`, checked and encoded on a thread."""
        if isinstance(data, LargeValue):
            return await self._off_loop(self._encode_large, group, keys, data)
        return data

    async def _clear_publishing(self, group: str, prefix: Keys) -> None:
        """Clear a prefix (empty: the group); while watched, publish each record cleared.

        After the waiting writes of records it clears, if any (`_write_order`).
        """
        waiting = self._waiting_writes
        if waiting and (ahead := waiting.ahead_of_prefix(group, prefix)):
            await waiting.add_prefix_clear(
                group, ahead, lambda: self._clear_publishing_now(group, prefix)
            )
        else:
            await self._clear_publishing_now(group, prefix)

    async def _clear_publishing_now(self, group: str, prefix: Keys) -> None:
        if self._active_hub() is None:
            await self._delete_prefix(group, prefix)
            return
        cleared: list[Keys] = []
        async for keys, _ in self.get_all_by_key_prefix(group, *prefix, on_corrupt=ignore_corrupt):
            cleared.append(keys)
        async with self._publishing(group, cleared, None):
            await self._delete_prefix(group, prefix)
