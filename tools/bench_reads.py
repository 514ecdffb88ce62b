"""First reads: of records whose bytes are not in the page cache (disk I/O on the event loop),
and of warm records beside the system calls they cannot do without.

A first read of a small record runs on the loop (a hop to a thread costs more than a warm read
does), so when the record's data is not cached the disk read holds the loop. Each record's
pages are evicted on their own (fsync, then ``posix_fadvise(DONTNEED)`` of that one file:
dropping the machine's caches would disturb everything else running on it), then read through
a store opened afresh (its read cache has seen nothing), and the same file, evicted again, by a
raw open+read+close+unpack beside it. The directory and the file's inode stay cached: this measures
the data read, not a cold path walk (after ``drop_caches`` the first reads also wait for
directory and inode blocks). Linux only (elsewhere no rows are added).

A first read of a warm record makes five system calls (lstat of the held group directory, open
relative to it, fstat, read, close), each guarding something (docs/benchmarks.md); the rows of
`measure_warm_reads` put our get beside those calls alone and beside diskcache's get, so the
Python over the floor and the floor itself are each a ratio of their own.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import diskcache
from bench_harness import ROUNDS, VALUE, Bench, Result, Target
from bench_peers import raw_read

from rapid_dev_storage import FileBackend, Storage
from rapid_dev_storage._file_io import READ_FLAGS, UnsafeEntryError, read_file
from rapid_dev_storage._file_scan import FIRST_READ
from rapid_dev_storage._hooks import NOT_READY

OURS = "FileBackend msgpack fast"
RAW = "raw files"
COLD = "first read, not cached"
COLD_LONGEST = "first read, not cached, longest"
WARM = "first read, warm"
FLOOR = "its system calls alone"
DISKCACHE = "diskcache.Cache"
PREAD = "FileBackend get, pread for fstat (experiment)"
PREAD_FLOOR = "its system calls, pread for fstat"

COLD_TARGETS = [  # Linux only: posix_fadvise evicts one file's pages
    Target(
        "(extra) first read of a record not in the page cache: longest <= 50 ms (on the loop)",
        (OURS, COLD_LONGEST),
        ("budget", "50000"),
        1.0,
    ),
]
WARM_TARGETS = [  # the issue's; the Python over a first read's five system calls; their floor
    Target(
        "first read of a record not read before (warm) <= 1.0x diskcache.Cache.get",
        (OURS, WARM),
        (DISKCACHE, WARM),
        1.0,
    ),
    Target(  # what the filer is asked about: a first read without its fstat
        "(experiment) first read, warm, pread for fstat <= 1.0x diskcache.Cache.get",
        (PREAD, WARM),
        (DISKCACHE, WARM),
        1.0,
    ),
    Target(
        "(extra) first read, warm: FileBackend get <= 1.5x its system calls alone",
        (OURS, WARM),
        (FLOOR, WARM),
        1.5,
    ),
    Target(
        "(extra) first read, warm: its system calls alone <= 1.0x diskcache.Cache.get",
        (FLOOR, WARM),
        (DISKCACHE, WARM),
        1.0,
    ),
]


class PreadBackend(FileBackend):
    """An experiment, not the library's read path: a first read's ``fstat`` replaced by ``pread``.

    ``pread`` refuses a FIFO (ESPIPE) and a directory (EISDIR), as scans rely on; a device node
    put at a record's name (only root can make one) would be read. With no ``fstat`` the read
    cache has no identity to keep the record by: it is filled at the record's second read
    (``_seen``), read the library's way.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._seen: set[str] = set()
        self._buffer = bytearray(FIRST_READ)  # the loop's thread only: measuring
        self._view = memoryview(self._buffer)

    def _read_at_once(self, group: str, keys: Any) -> Any:
        path = self.record_path(group, keys)
        if path in self._seen:
            return super()._read_at_once(group, keys)
        directory, _, name = path.rpartition(os.sep)
        try:
            descriptor, _ = self._directories.open_file(directory, name)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except UnsafeEntryError:
            raise
        except OSError:
            return read_file(path)
        try:
            # Into a buffer kept (a thread of its own each, were it the library's): a pread of
            # FIRST_READ bytes would make a bytes object of that size and shrink it (1 us more).
            size = os.preadv(descriptor, [self._buffer], 0)  # ESPIPE: a FIFO; EISDIR: a dir
        except OSError:
            return NOT_READY  # the thread's read names it
        finally:
            os.close(descriptor)
        if not 0 < size < FIRST_READ:
            return super()._read_at_once(group, keys)  # empty, or perhaps more: the usual way
        self._seen.add(path)
        return bytes(self._view[:size])


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


async def measure_warm_reads(bench: Bench, count: int) -> None:
    """Add first reads of ``count`` warm records: ours, its system calls alone, diskcache's.

    Each subject reads every record once, in rounds that visit the subjects in turn; ours on a
    store opened afresh, so nothing it reads is in its read cache.
    """
    root = Path(bench.root) / "warm"
    keys = [f"warm{index:06}" for index in range(count)]
    backend = await FileBackend.create_backend_instance(root, "warm", 1, durability="fast")
    async with Storage(backend) as store:
        group = store.get_group("warm")
        for start in range(0, count, 256):
            await asyncio.gather(
                *(group[key].set_value(VALUE) for key in keys[start : start + 256])
            )
    paths = {key: backend.record_path("warm", (key,)) for key in keys}
    directory = os.path.dirname(paths[keys[0]])
    held = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    cache = diskcache.Cache(str(root / "diskcache"))
    for key in keys:
        cache.set(key, VALUE)
    await asyncio.sleep(0.1)  # older than the read cache's racy window, as most records are

    def system_calls(key: str) -> bytes:
        os.lstat(directory)
        descriptor = os.open(os.path.basename(paths[key]), READ_FLAGS, dir_fd=held)
        try:
            return os.read(descriptor, os.fstat(descriptor).st_size + 1)
        finally:
            os.close(descriptor)

    buffer = bytearray(FIRST_READ)

    def pread_calls(key: str) -> bytes:
        os.lstat(directory)
        descriptor = os.open(os.path.basename(paths[key]), READ_FLAGS, dir_fd=held)
        try:
            return buffer[: os.preadv(descriptor, [buffer], 0)]
        finally:
            os.close(descriptor)

    try:
        async with (
            Storage(
                await FileBackend.create_backend_instance(root, "warm", 1, durability="fast")
            ) as store,
            Storage(
                await PreadBackend.create_backend_instance(root, "warm", 1, durability="fast")
            ) as experiment,
        ):
            group, experiment_group = store.get_group("warm"), experiment.get_group("warm")
            subjects: dict[str, Callable[[str], Any]] = {
                OURS: lambda key: group[key].get_value(),
                FLOOR: system_calls,
                DISKCACHE: cache.get,
                PREAD: lambda key: experiment_group[key].get_value(),
                PREAD_FLOOR: pread_calls,
            }
            orders = {name: random.sample(keys, count) for name in subjects}
            samples: dict[str, list[int]] = {name: [] for name in subjects}
            per_round = max(1, count // ROUNDS)
            for turn in range(ROUNDS):
                for name, read in subjects.items():
                    for key in orders[name][turn * per_round : (turn + 1) * per_round]:
                        start = time.perf_counter_ns()
                        result = read(key)
                        if asyncio.iscoroutine(result):
                            await result
                        samples[name].append(time.perf_counter_ns() - start)
    finally:
        os.close(held)
        cache.close()
    for name, timings in samples.items():
        bench.add(name, WARM, timings, f"of {len(timings)} records, each read once")
