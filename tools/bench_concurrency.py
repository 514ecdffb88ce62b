"""Concurrent writes of distinct records, beside raw threads making the same system calls.

FileBackend (msgpack) at both durabilities and SQLiteBackend (FULL and NORMAL) are written by 64
tasks at once, each setting records no other task sets; the peers are 1, 16 and 64 plain Python
threads doing what a FileBackend write does underneath (temp file open, write, fsync, close,
``os.replace``, directory fsync; no fsync at ``fast``) on records in one directory. At ``fast``
FileBackend is also written by one task, to see whether throughput grows with concurrency.

The same FileBackend and raw-thread rows are measured again on tmpfs (``/dev/shm``, where there
is one), suffixed ", tmpfs": with no disk to wait for, they compare the Python each write costs
(ours: the loop's share and the writer threads') with the bare system calls'.

Each row's note also gives the process's CPU time (every thread's, user and system) per
operation, as a range over its rounds, split into user and system time, the event loop thread's
share and the context switches: on a VM of two shared cores the durable rows are bound by CPU,
and a context switch of the GIL handed over shows there, not in a profile of our Python.

Rounds visit every subject in turn (after one untimed round each, so every timed write replaces
a record, as an application's mostly do), so a slow minute of the machine falls on all of them
alike; each row's note gives the range over its rounds.

    python tools/bench_concurrency.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable

try:
    import resource
except ImportError:  # Windows: no rusage, the notes give zeros
    resource = None  # type: ignore[assignment]

import msgpack
from bench_harness import FULL, QUICK, VALUE, Bench
from bench_peers import raw_write

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage

TASKS = 64
RAW_THREADS = (16, 64)
RAW = {"full": "raw threads full", "fast": "raw threads fast"}
BEST = "best of 16/64 threads"
ONE_TASK = "1 task set"
TASKS_SET = f"{TASKS} tasks set"
FILE = {"full": "FileBackend msgpack full", "fast": "FileBackend msgpack fast"}
SQLITE = {"full": "SQLiteBackend full", "fast": "SQLiteBackend fast"}
ROUNDS = 3
TMPFS = ", tmpfs"
TMPFS_ROOT = "/dev/shm"

Round = Callable[[], Awaitable[float]]  # runs one round of writes, returns its seconds


def raw_round(directory: Path, names: list[str], threads: int, durable: bool) -> Round:
    """``threads`` threads writing ``names`` (each its share) the way FileBackend does."""
    data = msgpack.packb({"keys": ["k"], "value": VALUE})
    directory.mkdir(parents=True, exist_ok=True)

    def write(name: str) -> None:
        raw_write(os.path.join(directory, name), data, durable)

    async def run() -> float:
        start = threading.Barrier(threads + 1)

        def work(share: list[str]) -> None:
            start.wait()
            for name in share:
                write(name)

        workers = [
            threading.Thread(target=work, args=(names[index::threads],)) for index in range(threads)
        ]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        for worker in workers:
            worker.join()
        return time.perf_counter() - began

    return run


def tasks_round(store: Storage, names: list[str], tasks: int) -> Round:
    """``tasks`` tasks setting ``names`` (each its share) through ``store``."""
    group = store.get_group("concurrent")

    async def run() -> float:
        async def work(share: list[str]) -> None:
            for name in share:
                await group[name].set_value(VALUE)

        began = time.perf_counter()
        await asyncio.gather(*(work(names[index::tasks]) for index in range(tasks)))
        return time.perf_counter() - began

    return run


async def measure_concurrency_rows(bench: Bench, rounds: int = ROUNDS) -> None:
    """Add the rows `bench_targets.CONCURRENCY_TARGETS` compare (and their tmpfs twins)."""
    await _measure(bench, bench.root / "concurrency", rounds, "")
    if writable(TMPFS_ROOT):
        root = Path(tempfile.mkdtemp(prefix="rds-bench-", dir=TMPFS_ROOT))
        try:
            await _measure(bench, root / "concurrency", rounds, TMPFS)
        finally:
            shutil.rmtree(root, ignore_errors=True)


async def _measure(bench: Bench, root: Path, rounds: int, suffix: str) -> None:
    """Measure every subject in ``root``, workloads named with ``suffix`` (no SQLite on tmpfs)."""
    count = bench.sizes.concurrent
    names = [f"r{index:06}" for index in range(count)]
    files = [f"{name}.msgpack" for name in names]
    stores: list[Storage] = []
    subjects: dict[tuple[str, str], tuple[Round, int]] = {}
    try:
        for durability in ("full", "fast"):
            durable = durability == "full"
            for threads in (1, *RAW_THREADS) if not durable and not suffix else RAW_THREADS:
                where = root / f"raw-{durability}-{threads}"
                subjects[RAW[durability], _threads(threads) + suffix] = (
                    raw_round(where, files, threads, durable),
                    count,
                )
            file_store = Storage(
                await FileBackend.create_backend_instance(
                    root / "file", "concurrent", durability, durability=durability
                )
            )
            stores.append(file_store)
            subjects[FILE[durability], TASKS_SET + suffix] = (
                tasks_round(file_store, names, TASKS),
                count,
            )
            if not durable:  # one task writes a quarter as much: it is the slow one
                quarter = names[: max(TASKS, count // 4)]
                subjects[FILE[durability], ONE_TASK + suffix] = (
                    tasks_round(file_store, quarter, 1),
                    len(quarter),
                )
            if suffix:
                continue
            sqlite_store = Storage(
                await SQLiteBackend.create_backend_instance(
                    root / f"sqlite-{durability}.db", "concurrent", 1, durability=durability
                )
            )
            stores.append(sqlite_store)
            subjects[SQLITE[durability], TASKS_SET] = (
                tasks_round(sqlite_store, names, TASKS),
                count,
            )
        for run, _ in subjects.values():  # untimed: every timed write replaces a record
            await run()
        seconds: dict[tuple[str, str], list[float]] = {key: [] for key in subjects}
        cpu: dict[tuple[str, str], list[Spent]] = {key: [] for key in subjects}
        for _ in range(rounds):
            for key, (run, _) in subjects.items():
                before = Spent.now()
                seconds[key].append(await run())
                cpu[key].append(Spent.now() - before)
        for (subject, workload), spent in seconds.items():
            written = subjects[subject, workload][1]
            rates = sorted(written / each for each in spent)
            note = f"rounds {rates[0]:,.0f}-{rates[-1]:,.0f}/s, " + Spent.note(
                cpu[subject, workload], written
            )
            bench.add_throughput(subject, workload, written * len(spent), sum(spent), note)
        for durability in ("full", "fast"):
            best = max(
                (bench.get(RAW[durability], _threads(threads) + suffix) for threads in RAW_THREADS),
                key=lambda result: result.ops_per_second,
            )
            bench.results.append(
                type(best)(
                    RAW[durability], BEST + suffix, best.median_us, best.ops_per_second, best.note
                )
            )
    finally:
        for store in stores:
            await store.close()
        shutil.rmtree(root, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class Spent:
    """The process's CPU time (user, system), the loop thread's, and its context switches."""

    user: float
    system: float
    loop: float
    switches: int

    @classmethod
    def now(cls) -> Spent:
        if resource is None:
            return cls(0.0, 0.0, time.thread_time(), 0)
        usage = resource.getrusage(resource.RUSAGE_SELF)  # to the microsecond, unlike os.times
        return cls(
            usage.ru_utime, usage.ru_stime, time.thread_time(), usage.ru_nvcsw + usage.ru_nivcsw
        )

    def __sub__(self, other: Spent) -> Spent:
        return Spent(
            self.user - other.user,
            self.system - other.system,
            self.loop - other.loop,
            self.switches - other.switches,
        )

    @staticmethod
    def note(rounds: list[Spent], written: int) -> str:
        """Ranges over ``rounds`` per operation: CPU, user and system, the loop's, switches.

        The loop thread's share is ours alone (a raw row's loop only waits); the rest of a
        FileBackend row's is its writer threads' (our Python and their system calls). System
        time covers the kernel's own work, e.g. finding a free inode for each new temp file,
        which grows with the inodes deleted in its directory's block group lately (ext4).
        """

        def span(values: list[float], scale: float = 1e6) -> str:
            ordered = sorted(value / written * scale for value in values)
            low, high = ordered[0], ordered[-1]
            return f"{low:,.0f}-{high:,.0f}" if scale > 1 else f"{low:.1f}-{high:.1f}"

        return (
            f"CPU {span([each.user + each.system for each in rounds])} us each "
            f"(user {span([each.user for each in rounds])}, "
            f"system {span([each.system for each in rounds])}, "
            f"loop thread {span([each.loop for each in rounds])}; "
            f"{span([float(each.switches) for each in rounds], 1)} context switches)"
        )


def writable(directory: str) -> bool:
    return os.path.isdir(directory) and os.access(directory, os.W_OK)


def _threads(threads: int) -> str:
    return f"set, {threads} thread{'s' if threads > 1 else ''}"


async def run_alone(
    description: str, measure: Callable[[Bench, int], Awaitable[None]], rounds: int
) -> Bench:
    """Run ``measure`` as a script of its own (``--quick`` and ``--rounds`` from its arguments)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes: proves it runs")
    parser.add_argument("--rounds", type=int, default=rounds)
    arguments = parser.parse_args()
    bench = Bench(QUICK if arguments.quick else FULL, Path(tempfile.mkdtemp(prefix="rds-bench-")))
    try:
        await measure(bench, arguments.rounds)
    finally:
        shutil.rmtree(bench.root, ignore_errors=True)
    return bench


async def main() -> None:
    bench = await run_alone(__doc__.splitlines()[0], measure_concurrency_rows, ROUNDS)
    for result in bench.results:
        print(
            f"{result.subject:26} {result.workload:22} {result.ops_per_second:9,.0f}/s  "
            f"{result.note}",
            file=sys.stdout,
        )


if __name__ == "__main__":
    asyncio.run(main())
