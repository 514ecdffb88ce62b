"""Change notifications: `Change`, the hub that fans them out per backend, `Watch`, `Subscription`.

Every change goes through one `ChangeHub` per backend. Writes made through the backend publish
themselves once, right after they land (origin ``local``); a backend that can see other writers
(files: a file watcher; SQLite: a change log) publishes theirs (origin ``external``). The hub
remembers a digest of the bytes it last published for each record (16 bytes, never the record:
a watch on a store of large records would otherwise hold all of them), so a watcher that sees our
own write again, or the same bytes twice, publishes nothing: every change is delivered once.

A watcher that reads on a thread may come back with bytes a local write has replaced since; the
hub counts local writes (`mark`) so it can tell, and the watcher reads that record again rather
than publish a stale state (and then echo our own write as external).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable, Literal

from ._changes import UNDECODABLE, Change, ChangeQueue, Filter, Origin, digest_of
from ._types import ClosesOnExit, Keys, NoValue

logger = logging.getLogger(__name__)

Callback = Callable[["Change"], "Awaitable[object] | object"]
_MISSING = object()
KNOWN_RECORDS = 1_000_000
"""Records whose last published digest the hub remembers at most (then it forgets them all)."""
TOUCHED_RECORDS = 10_000
"""Records whose latest local write the hub remembers (then it takes all as just written)."""


class ChangeHub:
    """Fans a backend's changes out to its watches and subscriptions.

    All the hub asks of its backend is given to it: ``decode(group, keys, data)`` returns the
    value of a record's stored bytes (raising if they do not decode); ``start()`` and ``stop()``
    begin and end watching other writers, as the first listener comes and the last one goes.
    """

    def __init__(
        self,
        *,
        decode: Callable[[str, Keys, bytes], Any],
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
    ) -> None:
        self._decode = decode
        self._start_watching = start
        self._stop_watching = stop
        self._queues: dict[ChangeQueue, Filter] = {}
        self._callbacks: dict[Subscription, Filter] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._known: dict[tuple[str, Keys], bytes | None] = {}  # record -> digest (None: cleared)
        self._clock = 0  # local writes begun or landed so far
        self._touched: dict[tuple[str, Keys], int] = {}  # record -> clock at its latest
        self._touched_floor = 0  # records not in _touched were last written before this
        self._writing: dict[tuple[str, Keys], int] = {}  # record -> local writes not yet over
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

    async def add_queue(self, queue: ChangeQueue, where: Filter) -> None:
        await self._add(self._queues, queue, where)

    async def add_callback(self, subscription: Subscription, where: Filter) -> None:
        await self._add(self._callbacks, subscription, where)

    async def _add(self, listeners: dict[Any, Filter], listener: object, where: Filter) -> None:
        """Add a listener; the first one starts the backend's watching."""
        async with self._lock:
            starting = not self.active
            listeners[listener] = where
            if starting:
                await self._start()

    async def remove(self, listener: ChangeQueue | Subscription) -> None:
        async with self._lock:
            if isinstance(listener, Subscription):
                found = self._callbacks.pop(listener, None) is not None
            else:
                found = self._queues.pop(listener, None) is not None
            if found and not self.active:
                await self._stop_watching()
                self._known.clear()
                self._touched.clear()
                self._writing.clear()

    async def _start(self) -> None:
        try:
            await self._start_watching()
        except BaseException:
            self._queues.clear()
            self._callbacks.clear()
            raise

    async def close(self) -> None:
        """End every watch and subscription: the backend is closing."""
        for queue in list(self._queues):
            queue.end()
        was_active = self.active
        self._queues.clear()
        self._callbacks.clear()
        if was_active:
            await self._stop_watching()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- publishing -------------------------------------------------------------------------

    def remember(self, group: str, keys: Keys, data: bytes | None) -> None:
        """Learn the bytes a local write is about to store, before it lands (not published)."""
        record = (group, keys)
        self._set_known(record, None if data is None else digest_of(data))
        self._touch(record)
        self._writing[record] = self._writing.get(record, 0) + 1

    def _touch(self, record: tuple[str, Keys]) -> None:
        """Note that a local write of ``record`` began or landed: reads marked before are stale."""
        self._clock += 1
        if len(self._touched) >= TOUCHED_RECORDS:
            self._touched.clear()
            self._touched_floor = self._clock
        self._touched[record] = self._clock

    def know(self, group: str, keys: Keys, digest: bytes | None) -> None:
        """Learn a record's state from a watcher's first scan, unless something newer is known."""
        if len(self._known) < KNOWN_RECORDS:
            self._known.setdefault((group, keys), digest)

    def forget(self, group: str, keys: Keys) -> None:
        """Drop what `remember` learnt of a write that did not land."""
        self._known.pop((group, keys), None)
        self._over((group, keys))

    def _over(self, record: tuple[str, Keys]) -> None:
        """Count a local write `remember` announced as over: it landed or failed."""
        left = self._writing.pop(record, 0) - 1
        if left > 0:
            self._writing[record] = left

    def mark(self) -> int:
        """Return a mark to pass to `offer`: take it before reading what to offer."""
        return self._clock

    def _set_known(self, record: tuple[str, Keys], digest: bytes | None) -> None:
        if len(self._known) >= KNOWN_RECORDS and record not in self._known:
            self._known.clear()
        self._known[record] = digest

    def publish(self, group: str, keys: Keys, data: bytes | None, origin: Origin) -> None:
        """Deliver a change given as the record's stored bytes (None: cleared).

        Every local change is delivered. An external one is not when its bytes are those last
        published for the record: a watcher seeing our own write again, or one state twice.
        """
        record = (group, keys)
        if origin == "local":
            self._over(record)
            # A read sent while the write was landing may hold the bytes it replaced, and come
            # back after this: marked before now, it is read again, not delivered as external.
            self._touch(record)
        if not self.active:
            return
        digest = None if data is None else digest_of(data)
        if origin == "external" and self._known.get(record, _MISSING) == digest:
            return
        self._set_known(record, digest)
        if data is None:
            change = Change("cleared", group, keys, NoValue, origin)
        else:
            try:
                value = self._decode(group, keys, data)
            except Exception:  # a corrupt record is reported by reads, not by the watcher
                _warn_undecodable(group, keys)
                return
            change = Change("set", group, keys, value, origin)
        self._deliver(change)

    def offer(self, group: str, keys: Keys, digest: bytes | None, value: Any, mark: int) -> bool:
        """Deliver an external change a watcher read and decoded off the loop.

        ``digest`` is `digest_of` the bytes (None: cleared, ``value`` then `NoValue`; ``value``
        `UNDECODABLE`: warned about, not delivered). Return False, delivering nothing, when a
        local write of the record began or landed after ``mark``: what was read may be older
        than that write, so read the record again.
        """
        if not self.active:
            return True
        record = (group, keys)
        if self._known.get(record, _MISSING) == digest:
            return True
        if self._touched.get(record, self._touched_floor) > mark:
            return False
        if record in self._writing:
            # A local write of it began before the read and has not landed: what was read is
            # older than that write (a watcher reading the file it is about to replace), and the
            # write's own change follows. Delivering it would report a state twice, stale.
            return True
        self._set_known(record, digest)
        if value is UNDECODABLE:
            _warn_undecodable(group, keys)
        elif digest is None:
            self._deliver(Change("cleared", group, keys, NoValue, "external"))
        else:
            self._deliver(Change("set", group, keys, value, "external"))
        return True

    def _deliver(self, change: Change) -> None:
        for queue, where in list(self._queues.items()):
            if where.matches(change.group, change.keys):
                queue.put(change)
        for subscription, where in list(self._callbacks.items()):
            if where.matches(change.group, change.keys):
                self._call(subscription, change)

    def _call(self, subscription: Subscription, change: Change) -> None:
        try:
            result = subscription.callback(change)
        except Exception:
            logger.exception("a change callback raised (it stays subscribed)")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "a change callback raised (it stays subscribed)",
                exc_info=task.exception(),
            )


def _warn_undecodable(group: str, keys: Keys) -> None:
    # A corrupt record is reported by reads, not by the watcher.
    logger.warning("%s %r changed to an undecodable record", group, keys)


class Watch(ClosesOnExit):
    """An async iterator of `Change` objects; also an async context manager that stops it.

    ``async for change in store.watch(): ...`` starts watching at the first iteration;
    ``async with store.watch() as changes:`` starts at once (changes from then on are kept) and
    stops at the end of the block. Iteration ends when the store closes.
    """

    def __init__(self, hub: ChangeHub, where: Filter) -> None:
        self._hub = hub
        self._where = where
        self._queue = ChangeQueue()
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
        self._queue.end()

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
