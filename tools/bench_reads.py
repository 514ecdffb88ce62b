"""First reads of records whose bytes are not in the page cache: disk I/O on the event loop.

A first read of a small record runs on the loop (a hop to a thread costs more than a warm read
does), so when the record's data is not cached the disk read holds the loop. Each record's
pages are evicted on their own (fsync, then ``posix_fadvise(DONTNEED)`` of that one file:
dropping the machine's caches would disturb everything else running on it), then read through
a store opened afresh (its read cache has seen nothing), and the same file, evicted again, by a
raw open+read+close+unpack beside it. The directory and the file's inode stay cached: this measures
the data read, not a cold path walk (after ``drop_caches`` the first reads also wait for
directory and inode blocks). Linux only (elsewhere no rows are added).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from bench_harness import VALUE, Bench, Result
from bench_peers import raw_read

from rapid_dev_storage import FileBackend, Storage

OURS = "FileBackend msgpack fast"
RAW = "raw files"
COLD = "first read, not cached"
COLD_LONGEST = "first read, not cached, longest"


def evict(path: str) -> None:
    """Drop one file's pages from the page cache (written out first: dirty pages stay)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


async def measure_cold_reads(bench: Bench, count: int) -> None:
    """Add the median and longest first read of ``count`` evicted records, ours and raw."""
    if not hasattr(os, "posix_fadvise"):
        return
    root = Path(bench.root) / "cold"
    keys = [f"cold{index:05}" for index in range(count)]
    backend = await FileBackend.create_backend_instance(root, "cold", 1, durability="fast")
    async with Storage(backend) as store:
        group = store.get_group("cold")
        for key in keys:
            await group[key].set_value(VALUE)
    paths = [backend.record_path("cold", (key,)) for key in keys]
    for path in paths:  # written out now, so no timed read follows a file's own fsync
        evict(path)
    ours: list[int] = []
    raw: list[int] = []
    async with Storage(
        await FileBackend.create_backend_instance(root, "cold", 1, durability="fast")
    ) as store:  # opened afresh: nothing read yet
        group = store.get_group("cold")
        for index, (key, path) in enumerate(zip(keys, paths, strict=True)):
            # Each file is read twice, evicted before each: first by one, then by the other,
            # in turn (a block read a moment ago may still be in the disk's own cache).
            for which in (0, 1) if index % 2 else (1, 0):
                evict(path)
                start = time.perf_counter_ns()
                if which:
                    assert await group[key].get_value() == VALUE
                else:
                    raw_read(path)
                (ours if which else raw).append(time.perf_counter_ns() - start)
    for subject, samples in ((OURS, ours), (RAW, raw)):
        bench.add(subject, COLD, samples)
        longest = max(samples) / 1000
        note = f"of {count}; median {statistics.median(samples) / 1000:,.0f} µs"
        bench.results.append(Result(subject, COLD_LONGEST, longest, 1e6 / longest, note))
