"""The benchmark's harness: sizes, subjects, results, rounds that visit every subject in turn."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from rapid_dev_storage import Storage

VALUE = {"name": "user 123", "settings": {"theme": "dark", "n": 3}, "tags": ["a", "b"]}


@dataclasses.dataclass
class Sizes:
    records: int  # records in the group that get, set and update work on
    operations: int  # timed operations per latency workload, over all rounds
    concurrent: int  # operations in total for the 64-task workloads
    scan_small: int
    scan_large: int
    scaling: tuple[int, ...]  # records in one group, for get and set at each size


FULL = Sizes(
    records=10_000,
    operations=4_000,
    concurrent=3_200,
    scan_small=10_000,
    scan_large=100_000,
    scaling=(1_000, 10_000, 100_000, 300_000),
)
QUICK = Sizes(
    records=300,
    operations=100,
    concurrent=256,
    scan_small=300,
    scan_large=1_000,
    scaling=(300, 1_000),
)
ROUNDS = 5


@dataclasses.dataclass
class Target:
    label: str
    ours: tuple[str, str]  # (subject, workload); "{large}" in a workload is the large scan size
    reference: tuple[str, str]  # or ("budget", microseconds): a fixed bound
    bound: float
    higher_is_better: bool = False  # compare throughput instead of latency


Operation = Callable[[], Any]  # a plain function, or one returning an awaitable


@dataclasses.dataclass
class Result:
    subject: str
    workload: str
    median_us: float
    ops_per_second: float
    note: str = ""


@dataclasses.dataclass
class Subject:
    name: str
    latency: dict[str, Operation] = dataclasses.field(default_factory=dict)
    concurrent: dict[str, Operation] = dataclasses.field(default_factory=dict)
    store: Storage | None = None  # ours: scanned and cleared too
    closers: list[Callable[[], Any]] = dataclasses.field(default_factory=list)


class Bench:
    """Collects results; each measurement helper adds one row."""

    def __init__(self, sizes: Sizes, root: Path) -> None:
        self.sizes = sizes
        self.root = root
        self.results: list[Result] = []
        self.keys = [f"user{index:06}" for index in range(sizes.records)]

    def add(self, subject: str, workload: str, samples_ns: list[int], note: str = "") -> None:
        median = statistics.median(samples_ns) / 1000
        self.results.append(Result(subject, workload, median, 1e6 / median, note))

    def add_throughput(
        self, subject: str, workload: str, count: int, seconds: float, note: str = ""
    ) -> None:
        self.results.append(Result(subject, workload, seconds / count * 1e6, count / seconds, note))

    def get(self, subject: str, workload: str) -> Result:
        for result in self.results:
            if (result.subject, result.workload) == (subject, workload):
                return result
        raise KeyError((subject, workload))

    def random_key(self) -> str:
        return random.choice(self.keys)

    def hot_key(self) -> str:
        """A key among the first 100: records an app reads again and again."""
        return random.choice(self.keys[:100])

    async def measure_latencies(self, subjects: list[Subject], operations: int = 0) -> None:
        """Time every latency workload, in rounds that visit every subject in turn.

        ``operations``: timed operations per workload over all rounds (0: the size's own).
        """
        samples: dict[tuple[str, str], list[int]] = {}
        per_round = max(1, (operations or self.sizes.operations) // ROUNDS)
        for _ in range(ROUNDS):
            for subject in subjects:
                for workload, operation in subject.latency.items():
                    timings = samples.setdefault((subject.name, workload), [])
                    for _ in range(per_round):
                        start = time.perf_counter_ns()
                        result = operation()
                        if inspect.isawaitable(result):
                            await result
                        timings.append(time.perf_counter_ns() - start)
        for (subject_name, workload), timings in samples.items():
            self.add(subject_name, workload, timings)

    async def measure_concurrency(self, subject: Subject) -> None:
        """Time 64 tasks doing ``concurrent`` operations between them, for each such workload."""
        each = self.sizes.concurrent // 64
        for workload, operation in subject.concurrent.items():

            async def worker(operation: Operation = operation) -> None:
                for _ in range(each):
                    await operation()

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(64)))
            seconds = time.perf_counter() - start
            self.add_throughput(subject.name, f"64 tasks {workload}", each * 64, seconds)


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Sample the resident set size every millisecond; yield a list that ends up [growth bytes]."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def rss() -> int:
        try:
            with open("/proc/self/statm", encoding="ascii") as statm:
                return int(statm.read().split()[1]) * page
        except OSError:
            return 0

    baseline, peak, stop = rss(), [rss()], threading.Event()

    def sample() -> None:
        while not stop.wait(0.001):
            peak[0] = max(peak[0], rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth = [0]
    try:
        yield growth
    finally:
        stop.set()
        sampler.join()
        growth[0] = max(peak[0], rss()) - baseline
