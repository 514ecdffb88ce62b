"""One task's sets on tmpfs, beside raw files: the cost of the write path where no disk hides it.

On a disk, a small set's time is mostly the kernel's (the rename, the fsyncs), and the rows of
`bench.py` move by a third from one minute to the next on a shared VM. On tmpfs (``/dev/shm``,
where there is one) what is left is what the library adds per write: the system calls beyond
the raw write's four (the locks, the currency checks), the Python around them and the round
trip to a writer thread. One FileBackend (msgpack) at each durability and the raw write at each
are visited in turn, a round of sets each, so a slow second falls on all of them alike.

    python tools/bench_write_path.py [--quick] [--rounds N]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

import msgpack
from bench_concurrency import TMPFS, TMPFS_ROOT, run_alone, writable
from bench_harness import VALUE, Bench
from bench_peers import raw_write

from rapid_dev_storage import FileBackend, Storage

FILE = {"full": "FileBackend msgpack full", "fast": "FileBackend msgpack fast"}
RAW = "raw files"
SET = "set" + TMPFS
RAW_SET = {"full": "set full" + TMPFS, "fast": "set fast" + TMPFS}
RECORDS = 100  # sets rotate over these records: every timed set replaces one
ROUNDS = 5

Round = Callable[[int], Awaitable[list[int]]]  # ``count`` sets; the nanoseconds of each


def raw_round(directory: Path, durable: bool) -> Round:
    data = msgpack.packb({"keys": ["k"], "value": VALUE})
    directory.mkdir(parents=True, exist_ok=True)
    paths = [os.path.join(directory, f"r{index:03}.msgpack") for index in range(RECORDS)]

    async def run(count: int) -> list[int]:
        samples = []
        for index in range(count):
            began = time.perf_counter_ns()
            raw_write(paths[index % RECORDS], data, durable)
            samples.append(time.perf_counter_ns() - began)
        return samples

    return run


def store_round(store: Storage) -> Round:
    group = store.get_group("write-path")
    handles = [group[f"r{index:03}"] for index in range(RECORDS)]

    async def run(count: int) -> list[int]:
        samples = []
        for index in range(count):
            began = time.perf_counter_ns()
            await handles[index % RECORDS].set_value(VALUE)
            samples.append(time.perf_counter_ns() - began)
        return samples

    return run


async def measure_write_path(bench: Bench, rounds: int = ROUNDS) -> None:
    """Add the tmpfs rows `bench_targets.WRITE_PATH_TARGETS` compare (none without tmpfs)."""
    if not writable(TMPFS_ROOT):
        return
    root = Path(tempfile.mkdtemp(prefix="rds-bench-", dir=TMPFS_ROOT))
    stores: list[Storage] = []
    try:
        subjects: dict[tuple[str, str], Round] = {}
        for durability in ("full", "fast"):
            store = Storage(
                await FileBackend.create_backend_instance(
                    root / "file", "write-path", durability, durability=durability
                )
            )
            stores.append(store)
            subjects[FILE[durability], SET] = store_round(store)
            subjects[RAW, RAW_SET[durability]] = raw_round(root / durability, durability == "full")
        count = max(RECORDS, bench.sizes.operations // rounds)
        for run in subjects.values():  # untimed: every timed set replaces a record
            await run(RECORDS)
        samples: dict[tuple[str, str], list[int]] = {key: [] for key in subjects}
        for _ in range(rounds):
            for key, run in subjects.items():
                samples[key] += await run(count)
        for (subject, workload), taken in samples.items():
            bench.add(subject, workload, taken)
    finally:
        for store in stores:
            await store.close()
        shutil.rmtree(root, ignore_errors=True)


async def main() -> None:
    bench = await run_alone(__doc__.splitlines()[0], measure_write_path, ROUNDS)
    if not bench.results:
        print(f"no {TMPFS_ROOT} to write to: nothing measured", file=sys.stderr)
    for result in bench.results:
        print(f"{result.subject:28} {result.workload:18} {result.median_us:9.1f} us")


if __name__ == "__main__":
    asyncio.run(main())
