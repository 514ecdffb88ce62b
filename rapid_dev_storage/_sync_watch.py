"""Watching from synchronous code: a plain iterator of changes, and callbacks on a thread.

A synchronous `Watch` wraps the async one on the store's loop and pulls one change per hop, so
it keeps the async watch's promise: a consumer that falls behind gets each record's latest state,
not an ever longer queue. A `Subscription` is such a watch read by a thread of its own, which
calls the callback: the callback may use the store (it is not the store's thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Callable, Iterator, Literal

from ._changes import Change
from ._sync_bridge import ClosesOnExit
from ._watch import Watch as AsyncWatch
from .errors import StoreClosedError, UnsupportedOperationError

if TYPE_CHECKING:
    from ._sync_bridge import LoopThread

logger = logging.getLogger("rapid_dev_storage")

SyncCallback = Callable[[Change], object]
"""What `Storage.subscribe` calls with each change: a plain function."""


async def _next_change(watch: AsyncWatch, timeout: float | None) -> Change | None:
    """Return the watch's next change, or None when it ends or nothing comes within ``timeout``."""
    try:
        return await asyncio.wait_for(watch.__anext__(), timeout)
    except (StopAsyncIteration, asyncio.TimeoutError):
        return None


class Watch(ClosesOnExit):
    """A plain iterator of `Change`; also a context manager that starts it and stops it.

    ``for change in store.watch(): ...`` starts watching at the first iteration; ``with
    store.watch() as changes:`` starts at once (changes from then on are kept) and stops at the
    end of the block. Iteration ends when the store closes, when `close` is called (from any
    thread), or when no change comes within ``timeout`` seconds (None: wait for ever).
    """

    def __init__(
        self, bridge: LoopThread, make: Callable[[], AsyncWatch], timeout: float | None
    ) -> None:
        self._bridge = bridge
        self._make = make
        self._watch: AsyncWatch | None = None
        self._state: Literal["new", "watching", "closed"] = "new"
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.timeout = timeout

    def _check_process(self) -> None:
        """Refuse use in a child forked after the watch was made.

        The watch lives on its store's loop thread in the parent, which the child does not
        have: waiting for it there would hang for ever. (A store itself opens again in a child.)
        """
        if os.getpid() != self._pid:
            raise UnsupportedOperationError(
                "this watch was made before os.fork(): it cannot be used in the child, where "
                "its store's thread does not run; make a new one there (store.watch())"
            )

    def start(self) -> Watch:
        """Start watching now (``with`` and the first iteration call this).

        Raises:
            UnsupportedOperationError: in a child forked after the watch was made.

        """
        self._check_process()
        with self._lock:
            if self._state == "new":
                self._watch = self._bridge.call(self._started())
                self._state = "watching"
        return self

    async def _started(self) -> AsyncWatch:
        return await self._make().start()  # on the loop: the watch's queue belongs to it

    def close(self) -> None:
        """Stop watching; iteration then ends (a thread waiting for a change gets none).

        In a child forked after the watch was made, this only marks it closed: the parent's
        watch is the parent's to stop.
        """
        with self._lock:
            watch, self._watch, self._state = self._watch, None, "closed"
        if watch is not None and os.getpid() == self._pid:
            with contextlib.suppress(StoreClosedError):  # closing the store ended it already
                self._bridge.call(watch.close())

    def __iter__(self) -> Iterator[Change]:
        return self

    def __next__(self) -> Change:
        self._check_process()
        if self._state == "new":
            self.start()
        watch = self._watch
        if watch is None:  # closed
            raise StopIteration
        change = self._bridge.call(_next_change(watch, self.timeout))
        if change is None:
            raise StopIteration
        return change

    def __enter__(self) -> Watch:
        return self.start()


class Subscription:
    """Calls a callback with each change on a thread of its own, until `cancel`.

    A callback that raises is logged (logger ``rapid_dev_storage``) and stays subscribed.
    """

    def __init__(self, watch: Watch, callback: SyncCallback) -> None:
        self.callback = callback
        self._watch = watch.start()
        self._thread = threading.Thread(
            target=self._deliver, name="rapid-dev-storage-subscription", daemon=True
        )
        self._thread.start()

    def _deliver(self) -> None:
        try:
            for change in self._watch:
                try:
                    self.callback(change)
                except Exception:
                    logger.exception("a subscription's callback %r raised", self.callback)
        except StoreClosedError:
            return  # the store closed (perhaps from this very callback): the subscription ends

    def cancel(self) -> None:
        """Stop calling the callback; from its own thread too (then it returns at once).

        In a child forked after subscribing, nothing runs (the thread stayed in the parent).
        """
        self._watch.close()
        self.join()

    @property
    def running(self) -> bool:
        """Whether the callback's thread still runs (until `cancel`, or the store closes)."""
        return self._thread.is_alive()

    def join(self) -> None:
        """Wait until the callback's thread has ended (not from that thread)."""
        if threading.current_thread() is not self._thread:
            self._thread.join()
