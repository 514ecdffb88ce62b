"""The synchronous handles: `Storage` → `StorageGroup` → `StorageValue`, without ``await``.

Each operation is the async one, run on the store's own loop (`_sync_bridge`), with one
exception: reading a record the async path reads inline on its loop (a small file, a dict
entry) is done in the caller's thread (`StorageBackend.get_data_at_once`). A hop to the loop
thread and back costs tens of microseconds, several times the read itself.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, AsyncIterator, Callable, Coroutine, Iterator

from ._backend import NOT_READY, CorruptHandler, StorageBackend
from ._sync_bridge import (
    ClosesOnExit,
    LoopThread,
    Reopens,
    abandon,
    forget_in_children,
    on_own_thread,
)
from ._sync_watch import Subscription, SyncCallback, Watch
from ._types import AnyStorable, Keys, NamesARecord, NoValue
from ._validate import check_group_name, check_keys
from .errors import StoreClosedError

Opener = Callable[[], Coroutine[Any, Any, StorageBackend]]
ITERATION_CHUNK = 256
"""Records brought over per hop while iterating: the hop's cost spread thin, memory bounded."""


class StorageValue(NamesARecord):
    """A handle to one record (a group and 1 to 5 keys), as `rapid_dev_storage.StorageValue`."""

    __slots__ = ("_group_name", "_keys", "_storage")

    def __init__(self, storage: Storage, group_name: str, keys: Keys) -> None:
        self._storage, self._group_name, self._keys = storage, group_name, keys

    def get_value(self, default: Any = NoValue) -> Any:
        """Return the stored value, or ``default`` (`NoValue` unless given) when there is none.

        Raises:
            CorruptRecordError: the stored record does not decode.

        """
        bridge, backend = self._storage._live_or_reopened()
        value = backend.get_data_at_once(self._group_name, *self._keys)
        if value is NOT_READY:
            value = bridge.call(backend.get_data(self._group_name, *self._keys))
        return default if value is NoValue else value

    def set_value(self, value: AnyStorable) -> None:
        """Store ``value``, replacing any previous one; it is written when this returns.

        Raises:
            InvalidValueError: the codec cannot carry the value; nothing is written.

        """
        bridge, backend = self._storage._live_or_reopened()
        bridge.call(backend.write_data(self._group_name, *self._keys, value=value))

    def clear_value(self) -> None:
        """Remove the stored value; clearing an absent value is not an error."""
        bridge, backend = self._storage._live_or_reopened()
        bridge.call(backend.clear_by_keys(self._group_name, *self._keys))

    def update(self, fn: Callable[[Any], Any]) -> Any:
        """Atomically replace the value with ``fn(current)`` and return the new value.

        As the async ``update``: ``fn`` gets the current value or `NoValue`, may return
        `NoValue` to clear, and may be called again if another process wrote in between. It
        runs on the store's thread while the update waits, so it must not use the store
        (that raises `ReentrantUpdateError`): it should only compute.
        """
        bridge, backend = self._storage._live_or_reopened()
        return bridge.call(backend.update_data(self._group_name, *self._keys, fn=fn))

    def watch(self, timeout: float | None = None) -> Watch:
        """Return a `Watch` of this record's changes (see `Storage.watch`)."""
        return self._storage.watch(self._group_name, *self._keys, timeout=timeout)

    def __repr__(self) -> str:
        return f"<sync StorageValue group={self._group_name!r} keys={self._keys!r}>"


class StorageGroup:
    """A named set of records; ``group[k]`` or ``group[k1, ..., k5]`` gives a `StorageValue`.

    ``for keys, value in group`` iterates the whole group, like `all_items`.
    """

    __slots__ = ("_group_name", "_storage")

    def __init__(self, storage: Storage, group_name: str) -> None:
        self._storage, self._group_name = storage, group_name

    @property
    def name(self) -> str:
        """The group's name."""
        return self._group_name

    def __getitem__(self, keys: str | tuple[str, ...]) -> StorageValue:
        """Return the handle for ``keys`` as the async group does (`InvalidKeyError` if bad)."""
        return StorageValue(self._storage, self._group_name, check_keys(keys, self._group_name))

    def all_items(
        self, *prefix: str, on_corrupt: CorruptHandler | None = None
    ) -> Iterator[tuple[Keys, Any]]:
        """Iterate ``(keys, value)`` for every record, or those whose keys start with ``prefix``.

        Streamed: a few hundred records are brought over at a time, never the whole group. The
        order is unspecified. A record that does not decode raises `CorruptRecordError`; with
        ``on_corrupt`` its error is passed to ``on_corrupt`` instead (on the store's thread).
        """
        group = self._group_name
        options = {} if on_corrupt is None else {"on_corrupt": on_corrupt}
        return self._storage._iterate(
            lambda backend: backend.get_all_by_key_prefix(group, *prefix, **options)
        )

    def __iter__(self) -> Iterator[tuple[Keys, Any]]:
        return self.all_items()

    def clear_prefix(self, *prefix: str) -> None:
        """Remove every record whose keys start with ``prefix`` (1 to 5 keys).

        Raises:
            InvalidKeyError: no prefix given (use `clear_group`), or a bad key.

        """
        bridge, backend = self._storage._live_or_reopened()
        bridge.call(backend.clear_by_key_prefix(self._group_name, *prefix))

    def clear_group(self) -> None:
        """Remove every record of this group."""
        bridge, backend = self._storage._live_or_reopened()
        bridge.call(backend.clear_group(self._group_name))

    def watch(self, *prefix: str, timeout: float | None = None) -> Watch:
        """Return a `Watch` of this group's records under ``prefix`` (or all)."""
        return self._storage.watch(self._group_name, *prefix, timeout=timeout)

    def __repr__(self) -> str:
        return f"<sync StorageGroup {self._group_name!r}>"


async def _take(items: AsyncIterator[tuple[Keys, Any]], limit: int) -> list[tuple[Keys, Any]]:
    """Up to ``limit`` items of ``items``; fewer only at its end."""
    taken: list[tuple[Keys, Any]] = []
    try:
        while len(taken) < limit:
            taken.append(await items.__anext__())
    except StopAsyncIteration:
        pass
    return taken


class Storage(Reopens, ClosesOnExit):
    """A store for synchronous code: `rapid_dev_storage.Storage`'s API without ``await``.

    Made by `rapid_dev_storage.sync.open_storage`. One store may be shared by any number of
    threads; it runs on its own thread and event loop, never the caller's. Close it with
    `close` or a ``with`` block. In a child made by ``os.fork()`` it opens its store again
    at first use (the parent's threads and connections are not the child's).
    """

    def __init__(self, bridge: LoopThread, backend: StorageBackend, opener: Opener) -> None:
        """Use `open_storage`; this only assembles what it opened."""
        self._live: tuple[LoopThread, StorageBackend] | None = (bridge, backend)
        self._opener = opener
        self._closed = False
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        forget_in_children(self)

    @classmethod
    def _open(cls, opener: Opener) -> Storage:
        bridge = _new_bridge()
        try:
            backend = bridge.call(opener())
        except BaseException:
            bridge.stop()
            raise
        return cls(bridge, backend, opener)

    @property
    def backend(self) -> StorageBackend:
        """The backend underneath (use it from async code on the store's loop only)."""
        return self._live_or_reopened()[1]

    def get_group(self, name: str) -> StorageGroup:
        """Return the group called ``name`` (it exists once it holds a record).

        Raises:
            InvalidNameError: ``name`` is not a non-empty str.

        """
        return StorageGroup(self, check_group_name(name))

    def list_groups(self) -> list[str]:
        """Return the names of the groups that hold records, sorted."""
        bridge, backend = self._live_or_reopened()
        return bridge.call(backend.list_groups())

    def watch(self, group: str | None = None, *prefix: str, timeout: float | None = None) -> Watch:
        """Return a `Watch`: a plain iterator of `Change` for ``group`` (None: all) and prefix.

        As the async watch: writes through this store, other processes' writes and hand edits
        all arrive. Iteration ends after ``timeout`` seconds without a change (None: never).
        """
        bridge, backend = self._live_or_reopened()
        return Watch(bridge, lambda: backend.watch_changes(group, *prefix), timeout)

    def subscribe(
        self, callback: SyncCallback, group: str | None = None, prefix: tuple[str, ...] = ()
    ) -> Subscription:
        """Call ``callback(change)`` on a background thread for each change, until ``.cancel()``.

        Watching has started when this returns. The callback may use the store. One that
        raises is logged (logger ``rapid_dev_storage``) and stays subscribed.
        """
        subscription = Subscription(self.watch(group, *prefix), callback)
        # Kept until the store closes (which waits for their threads), less those cancelled.
        self._subscriptions = [s for s in self._subscriptions if s.running] + [subscription]
        return subscription

    def close(self) -> None:
        """Close the store: end every watch and subscription, stop its thread. Twice is fine."""
        with self._lock:
            live = self._live
            if live is not None and threading.get_ident() == live[0].ident:
                raise on_own_thread()
            if self._closed:
                return
            self._closed, self._live = True, None
            subscriptions, self._subscriptions = self._subscriptions, []
        if live is not None:
            bridge, backend = live
            try:
                bridge.call(backend.close())
            finally:
                bridge.stop()
        for subscription in subscriptions:
            subscription.join()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def __enter__(self) -> Storage:
        return self

    def __repr__(self) -> str:
        live = self._live
        return f"<sync Storage {live[1] if live else 'closed'!r}>"

    # --- for the handles --------------------------------------------------------------------

    def _live_or_reopened(self) -> tuple[LoopThread, StorageBackend]:
        """Return the store's thread and backend; in a forked child, open them first."""
        live = self._live
        if live is None:
            live = self._reopened()
        if threading.get_ident() == live[0].ident:
            raise on_own_thread()
        return live

    def _reopened(self) -> tuple[LoopThread, StorageBackend]:
        with self._lock:
            if self._closed:
                raise StoreClosedError("this synchronous store is closed")
            if self._live is None:  # forked: this process has none of the parent's threads
                bridge = _new_bridge()
                try:
                    self._live = (bridge, bridge.call(self._opener()))
                except BaseException:
                    bridge.stop()
                    raise
            return self._live

    def _forked(self) -> None:
        # In the child, right after fork: no other thread runs, so nothing holds these.
        abandon(self._live, self._subscriptions)
        self._live, self._subscriptions = None, []
        self._lock = threading.Lock()

    def _iterate(
        self, make: Callable[[StorageBackend], AsyncIterator[tuple[Keys, Any]]]
    ) -> Iterator[tuple[Keys, Any]]:
        """Stream an async iterator of the backend's, `ITERATION_CHUNK` items per hop."""
        bridge, backend = self._live_or_reopened()
        items = make(backend)
        finished = False
        try:
            while not finished:
                chunk = bridge.call(_take(items, ITERATION_CHUNK))
                finished = len(chunk) < ITERATION_CHUNK
                yield from chunk
        finally:
            aclose = getattr(items, "aclose", None)
            if not finished and aclose is not None:
                # Closing the store closed its loop, and the iteration with it.
                with contextlib.suppress(StoreClosedError):
                    bridge.call(aclose())


def _new_bridge() -> LoopThread:
    return LoopThread("rapid-dev-storage-sync")
