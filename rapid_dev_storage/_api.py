"""The user-facing handles: `Storage` → `StorageGroup` → `StorageValue`.

Handles call only the backend's public methods, so a backend subclass overriding one (and
calling ``super()``) is seen by every handle; a get or set through a backend that keeps the
policy's own `StorageBackend.get_data` or ``write_data`` skips a second check of the keys the
handle checked once. A
backend written for the original seven-method contract is run through its adapter
(`_original.adapt`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, AsyncIterator, TypeVar

from ._backend import CorruptHandler, StorageBackend
from ._original import adapt
from ._types import AnyStorable, ClosesOnExit, Keys, NamesARecord, NoValue, UpdateFunction
from ._validate import check_group_name, check_keys
from .errors import InvalidKeyError

if TYPE_CHECKING:  # loaded with the first watch (`_publishing`): start-up time is measured
    from ._watch import Callback, Subscription, Watch

StorageT = TypeVar("StorageT", bound="Storage")
_POLICY_GET, _POLICY_WRITE = StorageBackend.get_data, StorageBackend.write_data
_new_value = object.__new__


class StorageValue(NamesARecord):
    """A handle to one record: a group and 1 to 5 keys. Cheap to create; holds no data."""

    __slots__ = ("_backend", "_group_name", "_keys")

    def __init__(self, backend: StorageBackend, group_name: str, *keys: str) -> None:
        self._backend = adapt(backend)
        self._group_name = check_group_name(group_name)
        self._keys = check_keys(keys, self._group_name)

    async def get_value(self, default: Any = NoValue) -> Any:
        """Return the stored value, or ``default`` (`NoValue` unless given) when there is none.

        A stored ``None`` is returned as ``None``. Lists and tuples come back as lists.
        """
        backend = self._backend
        if type(backend).get_data is _POLICY_GET:  # see the module's docstring
            value = await backend._get_checked(self._group_name, self._keys)
        else:
            value = await backend.get_data(self._group_name, *self._keys)
        return default if value is NoValue else value

    async def set_value(self, value: AnyStorable) -> None:
        """Store ``value``, replacing any previous one.

        Raises:
            InvalidValueError: the value holds something the codec cannot carry (a set, a
                datetime, a non-str dict key, an int out of range...); nothing is written.

        """
        backend = self._backend
        if type(backend).write_data is _POLICY_WRITE:  # see the module's docstring
            await backend._write_checked(self._group_name, self._keys, value)
        else:
            await backend.write_data(self._group_name, *self._keys, value=value)

    async def clear_value(self) -> None:
        """Remove the stored value; clearing an absent value is not an error."""
        await self._backend.clear_by_keys(self._group_name, *self._keys)

    async def update(self, fn: UpdateFunction) -> Any:
        """Atomically replace the value with ``fn(current)``, and return the new value.

        ``fn`` may be sync or async; it gets the current value or `NoValue`, and may return
        `NoValue` to clear. Updates of one record never interleave within a process, nor across
        processes on backends that implement compare-and-swap (all built-in ones). ``fn`` may be
        called again if another process wrote in between, so it should only compute. It must not
        write this same record itself (that raises `StorageError`).
        """
        return await self._backend.update_data(self._group_name, *self._keys, fn=fn)

    def watch(self) -> Watch:
        """Return a `Watch` of this record's changes (see `Storage.watch`)."""
        return self._backend.watch_changes(self._group_name, *self._keys)

    def __repr__(self) -> str:
        return f"<StorageValue group={self._group_name!r} keys={self._keys!r}>"


StoredValue = StorageValue
"""The original API's name for `StorageValue`."""


class StorageGroup:
    """A named set of records. ``group[k]`` or ``group[k1, ..., k5]`` gives a `StorageValue`.

    ``async for keys, value in group`` iterates the whole group, like `all_items`.
    """

    __slots__ = ("_backend", "_group_name")

    def __init__(self, backend: StorageBackend, group_name: str) -> None:
        self._backend = adapt(backend)
        self._group_name = check_group_name(group_name)

    @property
    def name(self) -> str:
        """The group's name."""
        return self._group_name

    def __getitem__(self, keys: str | tuple[str, ...]) -> StorageValue:
        """Return the handle for ``keys``: one `str`, or a tuple of 1 to 5.

        Raises:
            InvalidKeyError: anything else, naming the bad key.

        """
        # Made without __init__: the backend is adapted and the group checked already (a get's
        # hot path, as is check_keys' first test written out: the usual key, one str of ASCII).
        handle, group = _new_value(StorageValue), self._group_name
        handle._backend, handle._group_name = self._backend, group
        handle._keys = (keys,) if type(keys) is str and keys.isascii() else check_keys(keys, group)
        return handle

    def all_items(
        self, *prefix: str, on_corrupt: CorruptHandler | None = None
    ) -> AsyncIterator[tuple[Keys, Any]]:
        """Stream ``(keys, value)`` for every record, or those whose keys start with ``prefix``.

        Records are read a batch at a time, never the whole group at once; the order is
        unspecified. Records written or cleared during iteration may or may not be seen.
        A record that does not decode raises `CorruptRecordError`; with ``on_corrupt`` it is
        skipped and its error passed to ``on_corrupt`` instead (``on_corrupt=bad.append``).
        """
        backend, group = self._backend, self._group_name
        # A subclass overriding these methods may take no on_corrupt: pass it only if given.
        options = {} if on_corrupt is None else {"on_corrupt": on_corrupt}
        if prefix:
            return backend.get_all_by_key_prefix(group, *prefix, **options)
        return backend.get_all_by_group(group, **options)

    def __aiter__(self) -> AsyncIterator[tuple[Keys, Any]]:
        return self.all_items()

    async def clear_prefix(self, *prefix: str) -> None:
        """Remove every record whose keys start with ``prefix`` (1 to 5 keys).

        Raises:
            InvalidKeyError: no prefix given (use `clear_group`), or a bad key.

        """
        if not prefix:
            raise InvalidKeyError(
                "clear_prefix() needs at least one key: use clear_group() to clear the whole "
                f"group {self._group_name!r}",
                group=self._group_name,
                keys=prefix,
            )
        await self._backend.clear_by_key_prefix(self._group_name, *prefix)

    async def clear_group(self) -> None:
        """Remove every record of this group."""
        await self._backend.clear_group(self._group_name)

    def watch(self, *prefix: str) -> Watch:
        """Return a `Watch` of changes to this group's records under ``prefix`` (or all)."""
        return self._backend.watch_changes(self._group_name, *prefix)

    def __repr__(self) -> str:
        return f"<StorageGroup {self._group_name!r}>"


class Storage(ClosesOnExit):
    """The entry point: ``Storage(backend)``. Subclass it to add app-specific accessors.

    Closes its backend on `close` or at the end of ``async with``.
    """

    def __init__(self, backend: StorageBackend) -> None:
        self._given = backend
        self._backend = adapt(backend)

    @property
    def backend(self) -> StorageBackend:
        """The backend this store reads and writes, as it was given."""
        return self._given

    def get_group(self, name: str) -> StorageGroup:
        """Return the group called ``name`` (it exists once it holds a record).

        Raises:
            InvalidNameError: ``name`` is not a non-empty str.

        """
        return StorageGroup(self._backend, name)

    async def list_groups(self) -> list[str]:
        """Return the names of the groups that hold records, sorted.

        Raises:
            UnsupportedOperationError: the backend was written for the original contract.

        """
        return await self._backend.list_groups()

    def watch(self, group: str | None = None, *prefix: str) -> Watch:
        """Return a `Watch`: an async iterator of `Change` for ``group`` (None: all) and prefix.

        Use it in ``async for`` (it starts at the first iteration) or as ``async with`` (it
        starts at once and stops at the end of the block). Writes through this store, other
        processes' writes and hand edits all arrive, each once; several changes to one record
        may arrive as one, but the latest value always arrives.

        Raises:
            UnsupportedOperationError: a backend written for the original contract.

        """
        return self._backend.watch_changes(group, *prefix)

    async def subscribe(
        self, callback: Callback, group: str | None = None, prefix: tuple[str, ...] = ()
    ) -> Subscription:
        """Call ``callback(change)`` (sync or async) for each change, until ``.cancel()``.

        A callback that raises is logged (logger ``rapid_dev_storage``) and stays subscribed;
        it never stops the other callbacks or the watcher.
        """
        return await self._backend.subscribe_changes(callback, group, prefix)

    async def dump(self, path: str | os.PathLike[str], groups: list[str] | None = None) -> int:
        """Write every record (or those of ``groups``) to ``path`` as JSON Lines; return how many.

        The format of ``rapid-dev-storage dump``: one ``{"group", "keys", "value"}`` object per
        line, sorted by group and keys. Meant for backups from inside a running app: the file is
        written through aiofiles in 1 MiB chunks and the event loop keeps running; it appears
        whole or not at all (written beside ``path``, then renamed over it).
        """
        from ._jsonl import dump  # noqa: PLC0415  (aiofiles, only for dumps: start-up time)

        return await dump(self, path, groups)

    async def load(self, path: str | os.PathLike[str]) -> int:
        """Write every record of the JSON Lines file ``path`` (as `dump` writes) into the store.

        Returns how many. Every line is checked first: if any is bad, nothing is written and
        the `ValueError` lists the bad lines (their numbers and what is wrong).
        """
        from ._jsonl import load  # noqa: PLC0415  (aiofiles, only for loads: start-up time)

        return await load(self, path)

    async def close(self) -> None:
        """Close the backend (ending every watch); closing twice is harmless."""
        await self._backend.close()

    async def __aenter__(self: StorageT) -> StorageT:
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._given!r}>"
