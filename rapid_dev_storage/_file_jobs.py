"""FileBackend's threads, and the order its operations keep on them.

Each operation crosses to a thread once, whole. Reads of large records, scans, listings and
clears run on two reader threads. A record's writes, swaps and deletes run on the writer thread
of that record, never on the loop at any durability: a rename or an unlink can block for hundreds
of milliseconds in the kernel (measured: 100-425 ms for single inline renames while 64 tasks
wrote at ``fast``, on ext4 under its journal's commits), and the loop must never stall that long.
One thread per record keeps its operations in order; a clear waits for the writes before it and
holds back the writes after it that it covers.

What decides "still running" is the job itself, never the task that awaited it: a cancelled
caller does not let later writes overtake its job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from ._file_errors import os_errors
from ._locks import UnfinishedJobs
from ._types import Keys
from .errors import StoreClosedError

T = TypeVar("T")

WRITER_THREADS = 16
FAST_WRITER_THREADS = 4
"""Writes of one record always use the same thread. At durability ``full`` many threads let
concurrent fsyncs overlap and share directory fsyncs (measured: 2,180 sets/s with 4, 2,860 with
16, at 64 tasks); at ``fast`` there is no fsync to overlap and the threads' Python work contends
for the GIL (64 tasks: about 1,200 sets/s with 16 threads, 1,700-1,950 with 4, 1,900-2,200 with
2), so four."""


class FileJobs:
    """The threads of one FileBackend, and the unfinished jobs that order later ones.

    Every job runs with its OS errors made ours (see `os_errors`), naming ``location`` (the
    store's directory) unless the job names its own.
    """

    def __init__(self, location: str, *, durable: bool) -> None:
        self._location = location
        # The unfinished jobs, and the clears not finished yet: what orders later operations.
        # Both are the jobs' own futures, done when the job is.
        self._jobs = UnfinishedJobs()
        self._clears: list[tuple[str, Keys, concurrent.futures.Future[Any]]] = []
        self._writers = [
            ThreadPoolExecutor(1, thread_name_prefix="rapid-dev-storage-write")
            for _ in range(WRITER_THREADS if durable else FAST_WRITER_THREADS)
        ]
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="rapid-dev-storage-read")
        self._closed = False

    def _check_open(self) -> None:
        """Raise `StoreClosedError` once closing began.

        An operation still running when the store closed gets our error, not the thread pool's
        "cannot schedule new futures after shutdown".
        """
        if self._closed:
            raise StoreClosedError(f"the store at {self._location} is closed")

    async def read(
        self,
        function: Callable[[], T],
        *,
        location: str | None = None,
        reading: tuple[str, Keys] | None = None,
    ) -> T:
        """Run ``function`` on a reader thread (``location`` and ``reading``: see `os_errors`)."""
        where = location or self._location
        self._check_open()

        def call() -> T:
            with os_errors(where, reading=reading):
                return function()

        return await asyncio.get_running_loop().run_in_executor(self._readers, call)

    async def write(
        self, path: str, group: str, keys: Keys, operation: Callable[[threading.Event], T]
    ) -> T:
        """Run a write, swap or delete of the record in ``path`` on the record's writer thread.

        The record's operations keep their order on its thread; the job first waits for the
        clears covering the record that were started before it.

        Cancellation follows the work: a caller cancelled before the job started cancels it; one
        cancelled while it runs sets the event passed to ``operation`` (the job gives up if it
        has not renamed yet) and waits until the job has given up or landed. So when the caller
        hears of its cancellation, the write will never land later, in this process or for any
        other.
        """
        self._check_open()
        writer = self._writers[hash(path) % len(self._writers)]  # the same for each record
        clears = self._unfinished_clears(group, keys)
        abandon = threading.Event()

        def job() -> T:
            concurrent.futures.wait(clears)
            with os_errors(path):
                return operation(abandon)

        future = writer.submit(job)
        self._jobs.add(future)
        return await _following(future, abandon)

    async def clear(
        self, group: str, prefix: Keys, location: str, work: Callable[[threading.Event], None]
    ) -> None:
        """Run ``work``, a clear of the records of ``group`` under ``prefix``, on a reader thread.

        A clear lands after every write started before it, and holds back the writes it covers
        that start after it (they wait for it on their thread). Cancelled while it runs, it stops
        before its next lock stripe (the event passed to ``work``); what it removed stays
        removed.
        """
        self._check_open()
        earlier = self._jobs.unfinished()
        abandon = threading.Event()

        def job() -> None:
            concurrent.futures.wait(earlier)
            with os_errors(location):
                work(abandon)

        future = self._readers.submit(job)
        self._clears.append((group, prefix, future))
        await _following(future, abandon)

    def _unfinished_clears(self, group: str, keys: Keys) -> list[concurrent.futures.Future[Any]]:
        if not self._clears:
            return []
        self._clears = [clear for clear in self._clears if not clear[2].done()]
        return [
            future
            for cleared_group, prefix, future in self._clears
            if cleared_group == group and keys[: len(prefix)] == prefix
        ]

    async def close(self) -> None:
        """Wait for every job to end, and let the threads go; later jobs are refused."""
        self._closed = True

        def shut_down() -> None:
            for executor in (*self._writers, self._readers):
                executor.shutdown(wait=True)

        await asyncio.get_running_loop().run_in_executor(None, shut_down)


async def _following(job: concurrent.futures.Future[T], abandon: threading.Event) -> T:
    """Await ``job``; if cancelled, set ``abandon`` and wait until the job is over."""
    try:
        return await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        abandon.set()
        # Until it has landed or given up (or never started): only then is the caller told.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(asyncio.wrap_future(job))
        raise


def forget(future: asyncio.Future[Any]) -> None:
    """Let go of a job's future nobody will await: cancel it, or retrieve how it ended.

    An error in a batch nobody reads is no news (and must not be logged as never retrieved).
    """
    if not future.cancel() and not future.cancelled():
        future.exception()
