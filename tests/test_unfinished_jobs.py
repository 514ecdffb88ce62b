"""`UnfinishedJobs`: what later SQLite writes queue behind, at a cost that does not grow with it."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from rapid_dev_storage._locks import UnfinishedJobs


class CountedFuture(concurrent.futures.Future[Any]):
    """A real future that counts how often anyone asks whether it is done."""

    asked = 0

    def done(self) -> bool:
        CountedFuture.asked += 1
        return super().done()


def test_jobs_leave_as_they_finish_on_any_thread() -> None:
    jobs = UnfinishedJobs()
    assert not jobs
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        gate = threading.Event()
        first = pool.submit(gate.wait)
        second = pool.submit(lambda: None)
        jobs.add(first)
        jobs.add(second)
        assert jobs  # neither finished: the worker waits at the gate
        gate.set()
        second.result()
    assert not jobs
    finished: concurrent.futures.Future[Any] = concurrent.futures.Future()
    finished.set_result(None)
    jobs.add(finished)  # over before it was added: never counted
    assert not jobs
    cancelled: concurrent.futures.Future[Any] = concurrent.futures.Future()
    jobs.add(cancelled)
    assert jobs
    cancelled.cancel()  # a job cancelled before it started is over at once
    assert not jobs


def test_adding_and_asking_look_at_no_other_job() -> None:
    """5,000 jobs queued behind a slow disk: each add and each question is one step, where
    re-filtering the queue on every add was 5.8 million done() calls for 4,000 writes."""
    jobs = UnfinishedJobs()
    queued = [CountedFuture() for _ in range(5000)]
    CountedFuture.asked = 0
    for job in queued:
        jobs.add(job)
        assert jobs
    assert CountedFuture.asked <= len(queued)  # add_done_callback may ask each its own once
    for job in queued:
        job.set_result(None)
    assert not jobs
