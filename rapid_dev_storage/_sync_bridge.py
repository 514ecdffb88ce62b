"""The synchronous API's bridge: a store's own event loop, on a thread of its own.

A backend's state (its locks, watchers, connection pools) belongs to one event loop, so each
synchronous store runs its backend on a private loop in a daemon thread, and a call from any
other thread sends its coroutine there and waits: one hop per operation. The caller's thread may
run an event loop of its own (Jupyter, an async framework calling sync code): it is never used.

After ``os.fork()`` the child has the parent's objects but not its threads: `forget_in_children`
marks each live bridge's owner, which opens its store again in the child. The parent's loop,
connections and threads are left untouched, never closed: closing a copied connection would
close the parent's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from types import TracebackType
from typing import Any, Coroutine, TypeVar

from .errors import ReentrantUpdateError, StoreClosedError

T = TypeVar("T")

_abandoned: list[object] = []
"""What forked children inherited and may not close; kept so that nothing warns as it goes."""


class LoopThread:
    """An event loop running in a daemon thread; `call` runs a coroutine there and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.ident = self._thread.ident

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            # Stopped by stop(): an operation still waiting (an update queued behind another,
            # a watch) is cancelled, so that its caller's thread gets StoreClosedError instead
            # of waiting forever; then the default executor's threads end.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and return its result (or raise its exception).

        Raises:
            ReentrantUpdateError: called on the loop's own thread (from inside an update
                function), where waiting for the loop would wait forever.
            StoreClosedError: the loop was stopped.

        """
        if threading.get_ident() == self.ident:
            coroutine.close()
            raise on_own_thread()
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        except RuntimeError:  # the loop is closed: the store was closed meanwhile
            coroutine.close()
            raise StoreClosedError("the store is closed") from None
        try:
            return future.result()
        except concurrent.futures.CancelledError:  # the store closed while this waited
            raise StoreClosedError("the store was closed while this operation waited") from None

    def stop(self) -> None:
        """Stop the loop and wait for its thread (not from that thread)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.get_ident() != self.ident:
            self._thread.join()


def on_own_thread() -> ReentrantUpdateError:
    """Return the error for a synchronous call on the store's own thread (an update function)."""
    return ReentrantUpdateError(
        "a synchronous store was used from inside one of its own update() functions, which run "
        "on the store's thread while the update waits: compute the new value from the one "
        "given, and read or write other records before or after the update"
    )


class ClosesOnExit:
    """``with`` ends in ``close()``: for synchronous stores and watches."""

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Reopens:
    """What a synchronous store does after a fork: its owner opens the store again."""

    def _forked(self) -> None:
        raise NotImplementedError


_owners: weakref.WeakSet[Reopens] = weakref.WeakSet()


def forget_in_children(owner: Reopens) -> None:
    """Have ``owner._forked()`` called in the child of every later ``os.fork()``."""
    _owners.add(owner)


def _after_fork_in_child() -> None:
    for owner in list(_owners):
        owner._forked()


def abandon(*objects: object) -> None:
    """Keep ``objects`` (a parent's loop and backend, in a child) alive and untouched."""
    _abandoned.extend(objects)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
