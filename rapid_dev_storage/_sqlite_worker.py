"""SQLiteBackend's worker: one thread running a store's jobs in order, awaited from the loop.

Every durable set makes the round trip to this thread. Through a `ThreadPoolExecutor` and
`asyncio.wrap_future` it took 69-74 us here, against 36-44 us this way (median, side by side;
``tools/measure_sqlite_layers.py --sets`` shows it in a set): the executor's lock, semaphore and
work item, a
`concurrent.futures.Future` (a Condition and an RLock) and the two futures chained to each
other by callbacks. Here the loop puts the job on a `queue.SimpleQueue` (implemented in C), the
thread runs it and hands the result to an asyncio future with one ``call_soon_threadsafe``.

Cancellation follows the work, as with an executor: a job whose awaiter is cancelled before
the thread took it never runs; one the thread took runs to its end, and a write counts as
unfinished (`Worker.writes_pending`) until then, so later inline writes queue behind it.

An ``os.fork()`` waits until the thread is between jobs (`_threads.fork_waits_for`): a job
holding a lock of the database at the fork left the child unable ever to write it. A job
waiting for another process's lock holds the fork up for ``lock_timeout`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import weakref
from typing import Any, Callable, TypeVar

from ._threads import (
    fork_waits_for,
    fork_waits_no_more,
    runs_no_program_code,
    stop_at_exit,
    stopped,
)

T = TypeVar("T")


class _Job:
    """One call for the thread; ``future`` is None for housekeeping nobody awaits."""

    __slots__ = ("args", "function", "future", "loop")

    def __init__(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | None,
    ) -> None:
        self.function, self.args, self.loop, self.future = function, args, loop, future

    def settle(self, result: Any, error: BaseException | None) -> None:
        """Hand the outcome to the awaiter (on the loop); an awaiter cancelled meanwhile is gone."""
        future = self.future
        if future is None or future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Worker:
    """One thread running jobs in the order they were given; started at once, ended by `stop`."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Jobs not yet taken by the thread: whichever of the thread and a cancelled awaiter
        # pops a job first decides whether it runs (dict.pop is atomic under the GIL).
        self._waiting: dict[_Job, None] = {}
        # Writes not finished: left by the thread as each ends, or by an awaiter that withdrew it.
        self._writes: set[_Job] = set()
        self.inline_lock = threading.Lock()
        """Held by the loop's thread while it runs an operation inline: forks wait for it too."""
        # The thread holds the queue and the two collections, not the worker: a store dropped
        # without a close lets its worker be collected, and the finalizer ends the thread.
        self._thread = threading.Thread(
            target=_work,
            args=(self._queue, self._waiting, self._writes, self.inline_lock),
            name=name,
            daemon=True,
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, self._queue.put, None)
        stop_at_exit(self)  # queued writes land before the interpreter goes

    @property
    def writes_pending(self) -> bool:
        """Whether a write given to the thread has not finished (one finishing may still count)."""
        return bool(self._writes)

    async def run(self, function: Callable[..., T], *args: Any, write: bool = False) -> T:
        """Return ``function(*args)`` run on the thread, after every job given before it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(function, args, loop, future)
        self._waiting[job] = None
        if write:
            self._writes.add(job)
        self._queue.put(job)
        try:
            return await future
        except asyncio.CancelledError:
            if self._waiting.pop(job, 0) is None:  # not taken yet: it never runs
                self._writes.discard(job)
            raise

    def submit(self, function: Callable[..., object], *args: Any) -> None:
        """Run ``function(*args)`` on the thread, unawaited; its errors are dropped."""
        job = _Job(function, args, None, None)
        self._waiting[job] = None
        self._queue.put(job)

    def stop(self, *, wait: bool = True) -> None:
        """End the thread once the jobs given before are done; ``wait`` for it to end."""
        stopped(self)
        self._finalizer()  # puts the thread's end on the queue, once
        if wait:
            self._thread.join()


def _work(
    jobs: queue.SimpleQueue[_Job | None],
    waiting: dict[_Job, None],
    writes: set[_Job],
    inline_lock: threading.Lock,
) -> None:
    runs_no_program_code()  # SQL of ours only
    # Registered and let go here, on this thread, which may wait for a fork in progress.
    busy = threading.Lock()  # held while a job runs
    fork_waits_for(busy)
    fork_waits_for(inline_lock, last=True)
    try:
        _run_jobs(jobs, waiting, writes, busy)
    finally:
        fork_waits_no_more(inline_lock)
        fork_waits_no_more(busy)


def _run_jobs(
    jobs: queue.SimpleQueue[_Job | None],
    waiting: dict[_Job, None],
    writes: set[_Job],
    busy: threading.Lock,
) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        if waiting.pop(job, 0) is not None:  # withdrawn by its cancelled awaiter
            continue
        result: Any = None
        error: BaseException | None = None
        with busy:
            try:
                result = job.function(*job.args)
            except BaseException as exc:  # handed to the awaiter, as an executor's future would
                error = exc
        writes.discard(job)
        if job.loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits the result
                job.loop.call_soon_threadsafe(job.settle, result, error)
