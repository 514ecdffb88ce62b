"""Change notifications: `Change`, the hub that fans them out per backend, `Watch`, `Subscription`.

Every change goes through one `ChangeHub` per backend. Writes made through the backend publish
themselves once, right after they land (origin ``local``); a backend that can see other writers
(files: a file watcher; SQLite: a change log) publishes theirs (origin ``external``). The hub
remembers the bytes it last published for each record, so a watcher that sees our own write
again, or the same bytes twice, publishes nothing: every change is delivered once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Literal

from ._types import Keys, NoValue

if TYPE_CHECKING:
    from ._backend import StorageBackend

logger = logging.getLogger("rapid_dev_storage")

Kind = Literal["set", "cleared"]
Origin = Literal["local", "external"]
Callback = Callable[["Change"], "Awaitable[object] | object"]
_MISSING = object()
KNOWN_RECORDS = 1_000_000
"""Records whose last published bytes the hub remembers at most (then it forgets them all)."""


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to one record.

    ``value`` is the new value for ``"set"``, `NoValue` for ``"cleared"``. ``origin`` is
    ``"local"`` for writes through this backend instance and ``"external"`` for anything else
    (another process, another instance, a person editing a file, ``git checkout``).
    """

    kind: Kind
    group: str
    keys: Keys
    value: Any
    origin: Origin


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which changes a watch or subscription receives: a group (None: all) and a key prefix."""

    group: str | None
    prefix: Keys

    def matches(self, group: str, keys: Keys) -> bool:
        if self.group is not None and group != self.group:
            return False
        return keys[: len(self.prefix)] == self.prefix


class ChangeHub:
    """Fans a backend's changes out to its watches and subscriptions."""

    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend
        self._queues: dict[asyncio.Queue[Change | None], Filter] = {}
        self._callbacks: dict[Subscription, Filter] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._known: dict[tuple[str, Keys], bytes | None] = {}
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        """Whether anyone listens: changes are worth computing only then."""
        return bool(self._queues or self._callbacks)

    def wants(self, group: str, keys: Keys) -> bool:
        """Whether any listener's filter takes this record: fetch its value only then."""
        filters = (*self._queues.values(), *self._callbacks.values())
        return any(where.matches(group, keys) for where in filters)

    # --- listeners --------------------------------------------------------------------------

    async def add_queue(self, queue: asyncio.Queue[Change | None], where: Filter) -> None:
        async with self._lock:
            starting = not self.active
            self._queues[queue] = where
            if starting:
                await self._start()

    async def add_callback(self, subscription: Subscription, where: Filter) -> None:
        async with self._lock:
            starting = not self.active
            self._callbacks[subscription] = where
            if starting:
                await self._start()

    async def remove(self, listener: asyncio.Queue[Change | None] | Subscription) -> None:
        async with self._lock:
            if isinstance(listener, Subscription):
                found = self._callbacks.pop(listener, None) is not None
            else:
                found = self._queues.pop(listener, None) is not None
            if found and not self.active:
                await self._backend._stop_watching()
                self._known.clear()

    async def _start(self) -> None:
        try:
            await self._backend._start_watching()
        except BaseException:
            self._queues.clear()
            self._callbacks.clear()
            raise

    async def close(self) -> None:
        """End every watch and subscription: the backend is closing."""
        for queue in list(self._queues):
            queue.put_nowait(None)
        was_active = self.active
        self._queues.clear()
        self._callbacks.clear()
        if was_active:
            await self._backend._stop_watching()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- publishing -------------------------------------------------------------------------

    def remember(self, group: str, keys: Keys, data: bytes | None) -> None:
        """Record a record's current bytes without publishing (a watcher's starting state)."""
        self._known[group, keys] = data

    def forget(self, group: str, keys: Keys) -> None:
        """Drop what `remember` learnt of a write that did not land."""
        self._known.pop((group, keys), None)

    def publish(self, group: str, keys: Keys, data: bytes | None, origin: Origin) -> None:
        """Deliver a change given as the record's stored bytes (None: cleared).

        Every local change is delivered. An external one is not when its bytes are those last
        published for the record: a watcher seeing our own write again, or one state twice.
        """
        if not self.active:
            return
        record = (group, keys)
        if origin == "external" and self._known.get(record, _MISSING) == data:
            return
        if len(self._known) >= KNOWN_RECORDS:
            self._known.clear()
        self._known[record] = data
        if data is None:
            change = Change("cleared", group, keys, NoValue, origin)
        else:
            try:
                value = self._backend._decode(group, keys, data)[1]
            except Exception:  # a corrupt record is reported by reads, not by the watcher
                logger.warning("rapid_dev_storage: %s %r changed to an undecodable record",
                               group, keys)  # fmt: skip
                return
            change = Change("set", group, keys, value, origin)
        self._deliver(change)

    def _deliver(self, change: Change) -> None:
        for queue, where in list(self._queues.items()):
            if where.matches(change.group, change.keys):
                queue.put_nowait(change)
        for subscription, where in list(self._callbacks.items()):
            if where.matches(change.group, change.keys):
                self._call(subscription, change)

    def _call(self, subscription: Subscription, change: Change) -> None:
        try:
            result = subscription.callback(change)
        except Exception:
            logger.exception("rapid_dev_storage: a change callback raised (it stays subscribed)")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "rapid_dev_storage: a change callback raised (it stays subscribed)",
                exc_info=task.exception(),
            )


class Watch:
    """An async iterator of `Change` objects; also an async context manager that stops it.

    ``async for change in store.watch(): ...`` starts watching at the first iteration;
    ``async with store.watch() as changes:`` starts at once (changes from then on are kept) and
    stops at the end of the block. Iteration ends when the store closes.
    """

    def __init__(self, hub: ChangeHub, where: Filter) -> None:
        self._hub = hub
        self._where = where
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._state: Literal["new", "watching", "closed"] = "new"

    async def start(self) -> Watch:
        """Start watching now (``async with`` and the first iteration call this)."""
        if self._state == "new":
            self._state = "watching"
            await self._hub.add_queue(self._queue, self._where)
        return self

    async def close(self) -> None:
        """Stop watching; iteration then ends. Closing twice is harmless."""
        if self._state == "watching":
            await self._hub.remove(self._queue)
        self._state = "closed"
        self._queue.put_nowait(None)

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Change:
        if self._state == "new":
            await self.start()
        if self._state == "closed" and self._queue.empty():
            raise StopAsyncIteration
        change = await self._queue.get()
        if change is None:
            self._state = "closed"
            raise StopAsyncIteration
        return change

    async def __aenter__(self) -> Watch:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class Subscription:
    """A callback receiving changes; `cancel` (or ``await close()``) stops it."""

    def __init__(self, hub: ChangeHub, callback: Callback) -> None:
        self._hub = hub
        self.callback = callback
        self._closing: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Stop delivering changes to the callback (from sync code too)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._hub.remove(self))

    async def close(self) -> None:
        """Stop delivering changes, and wait until the watcher stopped if it was the last."""
        self.cancel()
        assert self._closing is not None
        await self._closing
