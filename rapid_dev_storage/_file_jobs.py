"""FileBackend's threads, and the order its operations keep on them.

Each operation crosses to a thread once, whole. Reads of large records, scans, listings and
clears run on two reader threads. Writes, swaps and deletes run on a pool of writer threads,
never on the loop at any durability: a rename or an unlink can block for hundreds of
milliseconds in the kernel (measured: 100-425 ms for single inline renames while 64 tasks wrote
at ``fast``, on ext4 under its journal's commits), and the loop must never stall that long.

A record's operations keep their order: a write of a record starts only once the one before it
has landed (renamed, removed, failed or given up), so writes of distinct records run side by side
on every thread while one record's never overtake each other. A durable write is acknowledged
later, by the directory fsync that covers it (`_file_commit`), and its thread goes on meanwhile.
A clear waits for the writes before it and holds back the writes after it that it covers.
Finished writes reach the loop in batches: one wake-up of the loop for all the writes that
finished since it last looked, not one each.

What decides "still running" is the job itself, never the task that awaited it: a cancelled
caller does not let later writes overtake its job. A write whose lock stripe another process
holds gives its thread back and is tried again a little later (`_file_writers`), so it holds
back only its own record's later writes.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from ._file_commit import Later
from ._file_errors import os_errors
from ._file_locks import Abandon, Retry, StripeBusy
from ._file_write_job import Deliveries, WriteJob
from ._file_writers import WriterThreads
from ._threads import on_own_thread, runs_no_program_code
from ._types import Keys
from .errors import StoreClosedError

T = TypeVar("T")

WRITER_THREADS = 8
FAST_WRITER_THREADS = 4
"""At durability ``full`` a writer thread spends most of a write waiting for its file's fsync,
and no longer waits for the directory's (group commit), so a few threads overlap enough fsyncs:
more only queue for the group directory's lock and the GIL (64 tasks, interleaved rounds on a
2-core VM: 8 threads 1,265-1,490 sets/s, 16 1,033-1,354, 32 795-1,080, 64 637-975). At ``fast``
there is no fsync to overlap and more threads only contend for the GIL."""
READER_THREADS = 2


class FileJobs:
    """The threads of one FileBackend, and the unfinished jobs that order later ones.

    Every job runs with its OS errors made ours (see `os_errors`), naming ``location`` (the
    store's directory) unless the job names its own.
    """

    def __init__(self, location: str, *, durable: bool) -> None:
        self._location = location
        # The writes not over yet (what clears and closing wait for), and the clears not
        # finished yet (what later writes of the records they cover wait for).
        self._unfinished: set[WriteJob[Any]] = set()
        self._over = threading.Condition()
        self._watching = 0  # threads waiting on ``_over``: only then is it notified
        self._clears: list[tuple[str, Keys, concurrent.futures.Future[Any]]] = []
        # Records with a write running: the writes queued behind it, in order.
        self._order = threading.Lock()
        self._records: dict[str, collections.deque[WriteJob[Any]]] = {}
        writers = WRITER_THREADS if durable else FAST_WRITER_THREADS
        self._writers = WriterThreads(writers, "rapid-dev-storage-write", self._run)
        self._readers = ThreadPoolExecutor(
            READER_THREADS,
            thread_name_prefix="rapid-dev-storage-read",
            initializer=runs_no_program_code,
        )
        # Each pool starts at its first job: a process that only reads never starts writers.
        self._readers_started = False
        self._writers_started = False
        self._deliveries: Deliveries | None = None
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
        if not self._readers_started:
            self._start_readers()

        def call() -> T:
            with os_errors(where, reading=reading):
                return function()

        return await asyncio.get_running_loop().run_in_executor(self._readers, call)

    async def write(
        self, path: str, group: str, keys: Keys, operation: Callable[[Retry, Later], T]
    ) -> T:
        """Run a write, swap or delete of the record in ``path`` on a writer thread.

        It starts once the record's earlier writes have landed and the clears covering the
        record that were started before it are over. ``operation`` may defer its
        acknowledgement to a directory fsync (see `Later`): the caller hears then. It may
        raise `StripeBusy` having changed nothing: it is run again a little later.

        Cancellation follows the work: a caller cancelled before the job started cancels it; one
        cancelled while it runs sets the flag ``operation`` is given (the job gives up if it
        has not renamed yet) and waits until the job has given up or landed. So when the caller
        hears of its cancellation, the write will never land later, in this process or for any
        other.
        """
        if self._closed:
            self._check_open()
        if not self._writers_started:
            self._writers_started = True
            self._writers.start()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        deliveries = self._deliveries
        if deliveries is None or deliveries.loop is not loop:
            deliveries = self._deliveries = Deliveries(loop, self._writers.finishing)
        job = WriteJob(path, operation, waiter, deliveries.deliver, self.ended)
        if self._clears:
            job.clears = self._unfinished_clears(group, keys)
        self._unfinished.add(job)
        with self._order:
            queued = self._records.get(path)
            if queued is None:
                self._records[path] = collections.deque()
                job.started = True
            else:
                queued.append(job)
        if job.started:
            self._submit(job)
        try:
            return await waiter
        except asyncio.CancelledError:
            job.abandoned = True
            with self._order:
                never_started = not job.started
                job.started = True  # now it never will: the record's queue passes it by
            if never_started:
                job.end()
            else:  # until it has landed or given up: only then is the caller told
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(job.ended(loop))
            raise

    def _start_readers(self) -> None:
        """Start every reader thread, at the first read or clear (writers: at the first write).

        A pool starts its threads as work comes, so it would grow, one more each time a few
        jobs overlap, long after the store opened: to anyone counting threads, a leak. Each of
        the readers' first jobs waits until all of them run, so each has a thread of its own.
        """
        self._readers_started = True
        ready = threading.Barrier(READER_THREADS)

        def wait() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                ready.wait(timeout=5.0)  # a thread that cannot start: the pool is smaller

        for _ in range(READER_THREADS):
            self._readers.submit(wait)

    def _submit(self, job: WriteJob[Any]) -> None:
        """Hand ``job`` to a writer thread once the clears it waits for are over.

        It waits off the threads: a write waiting on a thread for a clear could hold the last
        free thread that an earlier write, which the clear waits for, needs.
        """
        clears = [clear for clear in job.clears if not clear.done()]
        if not clears:
            self._writers.submit(job)
            return
        remaining = [len(clears)]
        lock = threading.Lock()

        def cleared(_: concurrent.futures.Future[Any]) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            self._writers.submit(job)

        for clear in clears:
            clear.add_done_callback(cleared)

    def _run(self, job: WriteJob[Any]) -> float | None:
        """Run ``job`` on this writer thread; then start the next write of its record.

        Return the delay after which to run it again if its lock stripe was held elsewhere.
        """
        error: BaseException | None = None
        result: Any = None
        try:
            with os_errors(job.path):
                result = job.operation(job, job)
        except StripeBusy:
            job.delay = min(job.delay * 2, 0.02)  # as long as the lock timeout allows
            return job.delay
        except BaseException as exc:
            error = exc
        self._landed(job.path)
        job.finish(result=result, error=error)
        for work in job.after:  # a directory fsync this write leads (`_file_commit`)
            work()
        return None

    def _landed(self, path: str) -> None:
        """Start the write queued behind the record's write that has just landed, if any."""
        with self._order:
            queued = self._records[path]
            while queued:
                job = queued.popleft()
                if not job.started:  # not cancelled meanwhile
                    job.started = True
                    break
            else:
                del self._records[path]
                return
        self._submit(job)

    def ended(self, job: WriteJob[Any]) -> None:
        """``job`` is over (its caller's answer is known): wake whoever waits for writes."""
        self._unfinished.discard(job)
        if self._watching:
            with self._over:
                self._over.notify_all()

    def _wait_for(self, jobs: set[WriteJob[Any]]) -> None:
        """On a thread: return once every one of ``jobs`` is over."""
        with self._over:
            self._watching += 1
            try:
                while not jobs.isdisjoint(self._unfinished):
                    self._over.wait(0.1)
            finally:
                self._watching -= 1

    async def clear(
        self, group: str, prefix: Keys, location: str, work: Callable[[Abandon], None]
    ) -> None:
        """Run ``work``, a clear of the records of ``group`` under ``prefix``, on a reader thread.

        A clear lands after every write started before it, and holds back the writes it covers
        that start after it (they wait for it on their thread). Cancelled while it runs, it stops
        before its next lock stripe (the event passed to ``work``); what it removed stays
        removed.
        """
        self._check_open()
        if not self._readers_started:
            self._start_readers()
        earlier = set(self._unfinished)
        abandon = threading.Event()

        def job() -> None:
            self._wait_for(earlier)
            with os_errors(location):
                work(abandon)

        future = self._readers.submit(job)
        self._clears.append((group, prefix, future))
        await _following(future, abandon)

    def _unfinished_clears(self, group: str, keys: Keys) -> list[concurrent.futures.Future[Any]]:
        self._clears = [clear for clear in self._clears if not clear[2].done()]
        return [
            future
            for cleared_group, prefix, future in self._clears
            if cleared_group == group and keys[: len(prefix)] == prefix
        ]

    async def close(self) -> None:
        """Wait for every job to end, and let the threads go; later jobs are refused."""
        self._closed = True
        if not (self._readers_started or self._writers_started):  # a command line's get
            self._readers.shutdown(wait=False)  # no job ever ran: nothing to wait for
            return
        writers_started = self._writers_started

        def shut_down() -> None:
            # Every write first: a write that lands starts the next one queued on its record.
            self._wait_for(set(self._unfinished))
            if writers_started:
                self._writers.stop()
            self._readers.shutdown(wait=True)

        await on_own_thread(shut_down)  # not the loop's executor: no thread outlives close


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
