"""Where a FileBackend first read and a scan spend their time: each layer beside its peer.

First reads: rounds of 1,000 gets of small records not read before (the read cache emptied
before each layer's round; the files are warm in the page cache) through each layer in turn,
interleaved, so a slow moment of the machine falls on all of them. Each layer includes the
ones below it:

- diskcache: the bench's peer (``diskcache.Cache.get`` of the same keys);
- raw: the bench's raw files peer (open by path, read, close, unpack);
- system calls: what a first read makes (lstat of the group directory, open relative to it,
  fstat, read, close), with nothing around them;
- read_small: `_file_read.read_small` (the file side's Python: held directory, cache keep);
- hook: `FileBackend._read` (the record's path, the read cache's miss);
- get_data: `StorageBackend.get_data` (the policy: checks, decode, turns);
- group[key]: ``group[key].get_value()``, as the bench's get row does.

``--pread`` adds an experiment (not the library's read path): the system calls with the
``fstat`` replaced by one ``pread`` (which refuses a FIFO with ESPIPE and a directory with
EISDIR, as scans rely on), and a get doing so at a record's first read (`bench_reads.PreadBackend`).

Scans (``--scan``): all_items of a group beside the raw scandir+read+unpack loop, the scan
without its decoding (`_file_scan.scan_group`), and with the backend's decoding as it reads
(``_scan_records``) but not the policy's loop, per record. ``--cold``: as a process that did
not write or read the records scans them (their names proven by digest, not by the paths
remembered for their keys).

    python tools/measure_file_reads.py [--pread | --scan [--cold]] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import diskcache
from bench_harness import VALUE
from bench_peers import raw_read, raw_scan
from bench_reads import PreadBackend

from rapid_dev_storage import FileBackend, Storage
from rapid_dev_storage._file_io import READ_FLAGS
from rapid_dev_storage._file_read import ReadCache, read_small
from rapid_dev_storage._file_scan import FIRST_READ, scan_group

RECORDS = 1_000
SCAN_RECORDS = 20_000

Layer = Callable[[int], Awaitable[Any]]


async def interleave(
    layers: dict[str, Layer], rounds: int, calls: int, per: int, before: Callable[[], None]
) -> dict[str, list[float]]:
    """Time ``calls`` calls of each layer in turn, ``rounds`` times: µs per one of ``per``."""
    samples: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(rounds):
        for name, layer in layers.items():
            before()
            start = time.perf_counter()
            for index in range(calls):
                await layer(index)
            samples[name].append((time.perf_counter() - start) / per * 1e6)
    return samples


def report(samples: dict[str, list[float]], base: str) -> None:
    middle = statistics.median(samples[base])
    for name, values in samples.items():
        median = statistics.median(values)
        tenth = sorted(values)[len(values) // 10]
        print(f"{name:14} median {median:6.2f} us  p10 {tenth:6.2f} us  {median / middle:5.2f}x")


def pread_layers(
    layers: dict[str, Layer],
    paths: list[str],
    held: int,
    experiment: Callable[[str], Awaitable[Any]],
    keys: list[str],
) -> dict[str, Layer]:
    """The ``--pread`` layers: system calls and a get, each with and without the ``fstat``."""

    buffer = bytearray(FIRST_READ)

    async def pread_calls(index: int) -> Any:
        directory, _, name = paths[index].rpartition(os.sep)
        os.lstat(directory)
        descriptor = os.open(name, READ_FLAGS, dir_fd=held)
        try:
            return buffer[: os.preadv(descriptor, [buffer], 0)]  # as PreadBackend reads
        finally:
            os.close(descriptor)

    async def pread_get(index: int) -> Any:
        return await experiment(keys[index])

    return {
        "diskcache": layers["diskcache"],
        "system calls": layers["system calls"],
        "pread calls": pread_calls,
        "group[key]": layers["group[key]"],
        "pread get": pread_get,
    }


async def first_reads(root: str, rounds: int, *, pread: bool) -> None:
    backend = await FileBackend.create_backend_instance(root, "bench", 1, durability="fast")
    store = Storage(backend)
    group = store.get_group("bench")
    keys = [f"user{index:06}" for index in range(RECORDS)]
    for key in keys:
        await group[key].set_value(VALUE)
    paths = [backend.record_path("bench", (key,)) for key in keys]
    cache = diskcache.Cache(os.path.join(root, "diskcache"))
    for key in keys:
        cache.set(key, VALUE)
    await asyncio.sleep(0.1)  # past the read cache's racy window: what is read is worth keeping
    inline_limit = backend._inline_limit  # measuring only
    directories = backend._directories

    async def disk_cache(index: int) -> Any:
        return cache.get(keys[index])

    async def raw(index: int) -> Any:
        return raw_read(paths[index])

    async def system_calls(index: int) -> Any:
        directory, _, name = paths[index].rpartition(os.sep)
        os.lstat(directory)
        descriptor = os.open(name, READ_FLAGS, dir_fd=held)
        try:
            os.fstat(descriptor)
            return os.read(descriptor, 65537)
        finally:
            os.close(descriptor)

    async def file_side(index: int) -> Any:
        return read_small(paths[index], inline_limit, fresh[0], directories)

    async def hook(index: int) -> Any:
        return await backend._read("bench", (keys[index],))

    async def get_data(index: int) -> Any:
        return await backend.get_data("bench", keys[index])

    async def group_key(index: int) -> Any:
        return await group[keys[index]].get_value()

    held = os.open(os.path.dirname(paths[0]), os.O_RDONLY | os.O_DIRECTORY)
    fresh = [ReadCache()]
    layers: dict[str, Layer] = {
        "diskcache": disk_cache,
        "raw": raw,
        "system calls": system_calls,
        "read_small": file_side,
        "hook": hook,
        "get_data": get_data,
        "group[key]": group_key,
    }
    experiment = await PreadBackend.create_backend_instance(root, "bench", 1, durability="fast")
    experiment_group = Storage(experiment).get_group("bench")
    if pread:
        layers = pread_layers(
            layers, paths, held, lambda key: experiment_group[key].get_value(), keys
        )

    def forget() -> None:
        backend._cache = fresh[0] = ReadCache()  # not read before
        experiment._cache = ReadCache()
        experiment._seen.clear()

    report(await interleave(layers, rounds, RECORDS, RECORDS, forget), "diskcache")
    os.close(held)
    cache.close()
    await store.close()
    await experiment.close()


async def scans(root: str, rounds: int, *, cold: bool) -> None:
    backend = await FileBackend.create_backend_instance(root, "scan", 1, durability="fast")
    store = Storage(backend)
    group = store.get_group("scan")
    names = [f"r{index:07}" for index in range(SCAN_RECORDS)]
    for start in range(0, SCAN_RECORDS, 256):
        await asyncio.gather(*(group[key].set_value(VALUE) for key in names[start : start + 256]))
    directory = backend._group_directory("scan")  # measuring only

    async def raw(_: int) -> Any:
        raw_scan(Path(directory))  # as the bench's raw files peer reads

    async def reads(_: int) -> Any:
        limit, extension = backend._inline_limit, backend._extension
        jobs, check = backend._jobs, backend._check_open
        async for _ in scan_group(jobs, directory, "scan", extension, check, limit):
            pass

    async def decoded(_: int) -> Any:
        async for _ in backend._scan_records("scan", ()):  # measuring only
            pass

    async def all_items(_: int) -> Any:
        async for _ in group.all_items():
            pass

    layers: dict[str, Layer] = {
        "raw": raw,
        "scan_group": reads,
        "+ decoded as read": decoded,
        "all_items": all_items,
    }

    def forget() -> None:
        if cold:  # a process that never wrote or read these records: every name digested
            backend._record_paths.clear()

    report(await interleave(layers, rounds, 1, SCAN_RECORDS, forget), "raw")
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", action="store_true", help="measure scans, not first reads")
    parser.add_argument(
        "--cold", action="store_true", help="scans: by a process that did not write the records"
    )
    parser.add_argument(
        "--pread", action="store_true", help="first reads: the experiment without the fstat"
    )
    parser.add_argument("--rounds", type=int, default=15)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rds-file-reads-") as root:
        if arguments.scan:
            asyncio.run(scans(root, arguments.rounds, cold=arguments.cold))
        else:
            asyncio.run(first_reads(root, arguments.rounds, pread=arguments.pread))


if __name__ == "__main__":
    main()
