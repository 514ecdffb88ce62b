"""FileBackend's writer threads: a queue of write jobs, and the jobs put aside to try again.

A `ThreadPoolExecutor` made a `concurrent.futures.Future` (a Condition and an RLock) and took
two locks on the loop for every write: a fifth of the loop's time per write with 64 tasks
writing (py-spy, tmpfs). Here the loop puts the job on a `queue.SimpleQueue` (implemented in C)
and a thread takes it; a thread that finishes a job takes the next one queued without going
back to sleep, so while writes keep coming the threads do several each per wake-up.

A job that cannot go on yet (its lock stripe is held by another process: `_file_locks`) is not
waited for on its thread, which would hold that thread (8 such writes would hold every one
until the lock timeout): it is put aside for the delay it asks for, and the first thread that
comes back for work after that tries it again; meanwhile the threads run other records' writes.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import queue
import threading
import time
import weakref
from typing import Callable, Generic, TypeVar

J = TypeVar("J")

_LIVE: weakref.WeakSet[WriterThreads[object]] = weakref.WeakSet()


class WriterThreads(Generic[J]):
    """``count`` threads running ``run`` on each job submitted.

    ``run`` returns None when the job is done, or the seconds after which it wants to be run
    again. A job's errors are ``run``'s to report: one that escapes is dropped, the thread
    goes on.
    """

    def __init__(self, count: int, name: str, run: Callable[[J], float | None]) -> None:
        self._count = count
        self._name = name
        self._run = run
        self._queue: queue.SimpleQueue[J | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # guards ``_later``
        self._later: list[tuple[float, int, J]] = []  # a heap: (when, tie-breaker, job)
        self._order = itertools.count()

    def start(self) -> None:
        """Start every thread at once (a pool that grew later would look like a leak)."""
        for index in range(self._count):
            thread = threading.Thread(target=self._work, name=f"{self._name}_{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        _LIVE.add(self)  # type: ignore[arg-type]  # (the set holds pools of every job type)

    def submit(self, job: J) -> None:
        self._queue.put(job)

    def stop(self) -> None:
        """Let the threads go once the jobs queued before are done; wait for them (a thread)."""
        _LIVE.discard(self)  # type: ignore[arg-type]
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _work(self) -> None:
        get = self._queue.get
        while True:
            job = self._due() if self._later else None
            if job is None:
                wait = self._until_next()
                try:
                    job = get() if wait is None else get(timeout=wait)
                except queue.Empty:
                    continue
                if job is None:
                    return
            try:
                delay = self._run(job)
            except BaseException:  # ``run`` has told the job's caller; the thread goes on
                continue
            if delay is not None:
                with self._lock:
                    heapq.heappush(self._later, (time.monotonic() + delay, next(self._order), job))

    def _due(self) -> J | None:
        """Take a job put aside whose time has come, if any."""
        with self._lock:
            if self._later and self._later[0][0] <= time.monotonic():
                return heapq.heappop(self._later)[2]
        return None

    def _until_next(self) -> float | None:
        """Seconds until the next job put aside is due (None: none is)."""
        with self._lock:
            if not self._later:
                return None
            return max(0.0, self._later[0][0] - time.monotonic())


@atexit.register
def _finish_at_exit() -> None:
    """Let queued writes land before the interpreter goes, as a ThreadPoolExecutor's would.

    The threads are daemons (an idle one must not keep a process alive whose store was never
    closed); atexit handlers run while daemon threads still do.
    """
    for pool in list(_LIVE):
        pool.stop()
