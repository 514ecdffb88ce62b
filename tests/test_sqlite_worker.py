"""SQLiteBackend's worker thread: order, errors, and cancellation that follows the work."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import warnings

import pytest

from rapid_dev_storage._sqlite_worker import Worker


async def test_jobs_run_in_order_and_hand_back_results_and_errors() -> None:
    worker = Worker("test-worker")
    ran: list[int] = []
    try:
        results = await asyncio.gather(*(worker.run(ran.append, index) for index in range(50)))
        assert ran == list(range(50))
        assert results == [None] * 50
        assert await worker.run(pow, 2, 10) == 1024
        with pytest.raises(ZeroDivisionError):
            await worker.run(divmod, 1, 0)
        assert threading.current_thread().name != "test-worker"
        assert await worker.run(lambda: threading.current_thread().name) == "test-worker"
    finally:
        worker.stop()


async def test_a_job_cancelled_before_it_started_never_runs() -> None:
    worker = Worker("test-worker")
    release = threading.Event()
    ran: list[str] = []
    try:
        blocking = asyncio.ensure_future(worker.run(release.wait, 10, write=True))
        queued = asyncio.ensure_future(worker.run(ran.append, "cancelled", write=True))
        await asyncio.sleep(0.05)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert worker.writes_pending  # the blocking write still runs
        release.set()
        assert await blocking is True
        await worker.run(ran.append, "after")
        assert ran == ["after"]
        assert not worker.writes_pending
    finally:
        release.set()
        worker.stop()


async def test_a_started_write_runs_to_its_end_and_stays_pending_until_then() -> None:
    worker = Worker("test-worker")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def write() -> None:
        started.set()
        release.wait(10)
        ran.append("write")

    try:
        task = asyncio.ensure_future(worker.run(write, write=True))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert worker.writes_pending  # the write goes on: later writes must queue behind it
        release.set()
        await worker.run(ran.append, "next")
        assert ran == ["write", "next"]
        assert not worker.writes_pending
    finally:
        release.set()
        worker.stop()


async def test_stop_finishes_queued_jobs_and_ends_the_thread() -> None:
    worker = Worker("test-worker")
    ran: list[int] = []
    for index in range(20):
        worker.submit(ran.append, index)
    worker.stop()
    assert ran == list(range(20))
    assert "test-worker" not in {thread.name for thread in threading.enumerate()}


def test_a_worker_dropped_without_stop_ends_its_thread() -> None:
    worker = Worker("test-dropped-worker")
    thread = next(t for t in threading.enumerate() if t.name == "test-dropped-worker")
    del worker
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def _fork_and_exit_child() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: forking with threads
        pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
async def test_a_fork_waits_until_the_worker_is_between_jobs() -> None:
    """A job holding a database lock at the fork would leave the child unable to write."""
    worker = Worker("test-worker")
    started = threading.Event()
    ran: list[str] = []

    def job() -> None:
        started.set()
        time.sleep(0.2)  # forking meanwhile
        ran.append("job")

    try:
        running = asyncio.ensure_future(worker.run(job))
        assert await asyncio.to_thread(started.wait, 10)
        _fork_and_exit_child()
        assert ran == ["job"]  # the fork happened after the job, not in its middle
        await running
    finally:
        worker.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_fork_waits_for_an_inline_operation_and_a_stopped_worker_no_more() -> None:
    worker = Worker("test-worker")
    forked = threading.Event()

    def fork() -> None:
        _fork_and_exit_child()
        forked.set()

    forking = threading.Thread(target=fork)
    with worker.inline_lock:  # the loop's thread runs an operation inline
        forking.start()
        assert not forked.wait(0.2)
    assert forked.wait(10)
    forking.join()
    worker.stop()
    worker.inline_lock.acquire()  # a stopped worker's lock holds no fork up
    _fork_and_exit_child()
