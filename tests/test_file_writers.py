"""FileBackend's writer threads: every job runs, one writer at a time keeps one thread hot."""

from __future__ import annotations

import threading
import time

from rapid_dev_storage._file_writers import WriterThreads


def test_writes_one_at_a_time_are_run_by_the_thread_idle_the_shortest_time() -> None:
    """A task writing in a loop wakes the thread that ran its last write, not each in turn."""
    ran_on: list[int] = []
    done = threading.Semaphore(0)

    def run(job: int) -> None:
        ran_on.append(threading.get_ident())
        done.release()

    pool: WriterThreads[int] = WriterThreads(4, "test-writer", run)
    pool.start()
    try:
        for job in range(40):
            pool.submit(job)
            assert done.acquire(timeout=10)
            time.sleep(0.002)  # the thread goes idle again before the next write comes
    finally:
        pool.stop()
    assert len(ran_on) == 40
    assert len(set(ran_on)) == 1


def test_jobs_queued_while_every_thread_is_busy_all_run_before_stop_returns() -> None:
    ran: list[int] = []
    lock = threading.Lock()
    release = threading.Event()
    put_aside: set[int] = set()

    def run(job: int) -> float | None:
        release.wait(10)
        if job % 7 == 0 and job not in put_aside:  # asks to be run again a little later
            put_aside.add(job)
            return 0.001
        with lock:
            ran.append(job)
        return None

    pool: WriterThreads[int] = WriterThreads(3, "test-writer", run)
    pool.start()
    for job in range(200):
        pool.submit(job)
    release.set()
    deadline = time.monotonic() + 30
    while len(ran) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.stop()
    assert sorted(ran) == list(range(200))
    assert len(put_aside) == 29
