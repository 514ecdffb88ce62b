"""FileBackend's writer threads: a queue of write jobs, and the jobs put aside to try again.

A `ThreadPoolExecutor` made a `concurrent.futures.Future` (a Condition and an RLock) and took
two locks on the loop for every write: a fifth of the loop's time per write with 64 tasks
writing (py-spy, tmpfs). Here the loop hands the job to the thread that went idle last (a
stack, not a queue: one task writing in a loop keeps one thread hot, where a queue woke each
sleeping thread in turn, each wake-up of a cold thread costing tens of microseconds on a VM),
or queues it when every thread is busy; a thread that finishes a job takes the next one queued
without going back to sleep, so while writes keep coming the threads do several each per
wake-up.

A job that cannot go on yet (its lock stripe is held by another process: `_file_locks`) is not
waited for on its thread, which would hold that thread (8 such writes would hold every one
until the lock timeout): it is put aside for the delay it asks for, and the first thread that
comes back for work after that tries it again; meanwhile the threads run other records' writes.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import threading
import time
from typing import Callable, Generic, TypeVar

from ._threads import runs_no_program_code, stop_at_exit, stopped

J = TypeVar("J")


class _Idle:
    """A thread waiting for work: released with a job in ``job`` (None: stop)."""

    __slots__ = ("early", "job", "wait", "wake")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()  # held while the thread has no job: it waits to acquire it
        self.job: object = None
        self.early = False  # made idle by `finishing`, before the thread got back to waiting
        self.wait = -1.0  # the longest to wait, set as the thread goes idle (-1: no limit)


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
        self._threads: list[threading.Thread] = []
        # Guards the rest. Invariant: a thread is idle only while no job is queued.
        self._lock = threading.Lock()
        self._queued: collections.deque[J | None] = collections.deque()  # None: a thread stops
        self._idle: list[_Idle] = []  # a stack: the last to go idle is woken first
        self._later: list[tuple[float, int, J]] = []  # a heap: (when, tie-breaker, job)
        self._order = itertools.count()
        self._local = threading.local()  # on each of the threads: its `_Idle`

    def start(self) -> None:
        """Start every thread at once (a pool that grew later would look like a leak)."""
        for index in range(self._count):
            thread = threading.Thread(target=self._work, name=f"{self._name}_{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        stop_at_exit(self)  # queued writes land before the interpreter goes

    def submit(self, job: J | None) -> None:
        """Give ``job`` to the thread idle the shortest time, or queue it (None: a thread stops)."""
        with self._lock:
            if not self._idle:
                self._queued.append(job)
                return
            idle = self._idle.pop()
        idle.job = job
        idle.wake.release()

    def stop(self) -> None:
        """Let the threads go once the jobs queued before are done; wait for them (a thread)."""
        stopped(self)
        for _ in self._threads:
            self.submit(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def finishing(self) -> None:
        """On a writer thread about to answer its job: take the next job submitted.

        The answer wakes the loop, whose task may submit its next write at once, often before
        this thread is back waiting (the wake-up itself hands the GIL over): the job went to
        another, sleeping thread, and one task writing in a loop woke two threads in turn.
        Idle from now on, this thread is the one chosen; a job given to it before it is back
        waits only for the rest of this job's answer. Does nothing on any other thread.
        """
        idle: _Idle | None = getattr(self._local, "idle", None)
        if idle is None or idle.early:
            return
        with self._lock:
            idle.early = self._go_idle(idle)  # else the thread takes a job on its way back

    def _work(self) -> None:
        runs_no_program_code()
        idle = self._local.idle = _Idle()
        while True:
            job = self._next(idle)
            if job is None:
                return
            try:
                delay = self._run(job)
            except BaseException:  # ``run`` has told the job's caller; the thread goes on
                continue
            if delay is not None:
                with self._lock:
                    heapq.heappush(self._later, (time.monotonic() + delay, next(self._order), job))

    def _go_idle(self, idle: _Idle) -> bool:
        """Under the lock: make ``idle``'s thread idle, unless a job is there for it to take.

        False: a job put aside is due, or one is queued. True: the thread is on the idle
        stack, to wait ``idle.wait`` seconds at most (until the first job put aside is due).
        """
        now = time.monotonic()
        if self._queued or (self._later and self._later[0][0] <= now):
            return False
        idle.wait = max(0.0, self._later[0][0] - now) if self._later else -1
        self._idle.append(idle)
        return True

    def _next(self, idle: _Idle) -> J | None:
        """Return this thread's next job: one put aside and due, one queued, or one submitted.

        It waits for a job submitted, or until the first job put aside is due.
        """
        while True:
            if idle.early:  # already idle (`finishing`): perhaps chosen already
                idle.early = False
            else:
                with self._lock:
                    if not self._go_idle(idle):
                        if self._later and self._later[0][0] <= time.monotonic():
                            return heapq.heappop(self._later)[2]
                        return self._queued.popleft()
            woken = idle.wake.acquire(timeout=idle.wait)
            if not woken:
                with self._lock:
                    if idle in self._idle:  # nobody chose it: look for a job put aside again
                        self._idle.remove(idle)
                        continue
                idle.wake.acquire()  # chosen as the wait ran out: its job is on its way
            job, idle.job = idle.job, None
            return job  # type: ignore[return-value]  # what `submit` was given
