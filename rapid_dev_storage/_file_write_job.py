"""One write job of FileBackend's (`_file_jobs`), and how finished jobs reach the loop.

A job is created on the loop for every write, so it is a plain object with slots: no
`concurrent.futures.Future` (a Condition and an RLock each) and no Event. What waits for it
(a clear, closing, a cancelled caller) is told by callbacks when it is over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import Any, Callable, Generic, TypeVar

from ._file_commit import Acknowledge, Later
from ._file_errors import os_errors
from ._file_locks import Retry

T = TypeVar("T")


class WriteJob(Generic[T]):
    """One write of a record: queued, run on a writer thread, acknowledged on the loop.

    It is `Retry` and `Later` for its operation: it says whether its caller was cancelled and
    keeps the lock deadline between attempts, and a durable write's acknowledgement waits for
    the directory fsync that covers it. It is over once the caller's answer is known: what
    clears and closing wait for.
    """

    __slots__ = (
        "_ended",
        "_error",
        "_listeners",
        "_lock",
        "_parts",
        "_result",
        "abandoned",
        "after",
        "clears",
        "delay",
        "deliver",
        "lock_deadline",
        "operation",
        "over",
        "path",
        "started",
        "waiter",
    )

    def __init__(
        self,
        path: str,
        operation: Callable[[Retry, Later], T],
        waiter: asyncio.Future[T],
        deliver: Callable[[Callable[[], None]], None],
        ended: Callable[[WriteJob[Any]], None],
    ) -> None:
        self._ended = ended
        self.path = path
        self.operation = operation
        self.clears: list[concurrent.futures.Future[Any]] = []
        self.waiter = waiter
        self.deliver = deliver
        self.abandoned = False  # its caller was cancelled: see `is_set`
        self.started = False  # or cancelled before it started (under FileJobs._order)
        self.over = False
        self.lock_deadline: float | None = None  # see `Retry`
        self.delay = 0.00025  # doubled before each attempt put off (`_file_jobs`)
        self.after: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._parts = 1  # what the answer waits for: the job's return, and a deferred fsync
        self._result: Any = None
        self._error: BaseException | None = None

    def is_set(self) -> bool:
        """Whether the caller was cancelled (the job is its own `Abandon`: no Event to make)."""
        return self.abandoned

    def defer(self) -> Acknowledge:
        with self._lock:
            self._parts += 1

        def acknowledge(error: BaseException | None) -> None:
            if error is not None:
                try:
                    with os_errors(self.path):
                        raise error
                except BaseException as exc:
                    error = exc
            self.finish(error=error)

        return acknowledge

    def after_landing(self, work: Callable[[], None]) -> None:
        self.after.append(work)

    def finish(self, *, result: Any = None, error: BaseException | None = None) -> None:
        """One part of the answer is known (the first error wins); the last part answers.

        The job's own return passes its ``result``; a deferred fsync passes only its error.
        """
        with self._lock:
            if result is not None:
                self._result = result
            if error is not None and self._error is None:
                self._error = error
            self._parts -= 1
            if self._parts:
                return
        self.end()
        self.deliver(self._answer)

    def end(self) -> None:
        """Mark the job over, and tell whoever waits for it."""
        with self._lock:
            self.over = True
            listeners, self._listeners = self._listeners, []
        self._ended(self)
        for listener in listeners:
            listener()

    def ended(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Return a future of ``loop`` done once the job is over."""
        done: asyncio.Future[None] = loop.create_future()

        def tell() -> None:
            if not done.done():
                done.set_result(None)

        def listener() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(tell)

        with self._lock:
            if not self.over:
                self._listeners.append(listener)
                return done
        tell()
        return done

    def _answer(self) -> None:
        """On the loop: tell the caller, unless it stopped listening."""
        if self.waiter.done():
            return
        if self._error is not None:
            self.waiter.set_exception(self._error)
        else:
            self.waiter.set_result(self._result)


class Deliveries:
    """Callbacks from threads run on the loop in batches: one wake-up for all that came."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, before_wake: Callable[[], None] = lambda: None
    ) -> None:
        self.loop = loop
        self._before_wake = before_wake  # on the delivering thread, before the loop is woken
        self._lock = threading.Lock()
        self._pending: list[Callable[[], None]] = []

    def deliver(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._pending.append(callback)
            if len(self._pending) > 1:
                return  # a wake-up is on its way and will run this one too
        self._before_wake()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        for callback in batch:
            callback()
