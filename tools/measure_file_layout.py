"""Measure whether large groups need fan-out directories, side by side in one run.

For a group of ``--small`` and one of ``--large`` records it times, on the same files: a raw
``os.open``/``os.read`` of a random record, a FileBackend ``get_value`` of a random record, and a
full iteration (raw ``os.scandir`` + read + msgpack unpack against ``all_items``). If the large
group's per-record costs stay close to the small group's, one flat directory per group is enough.

    python tools/measure_file_layout.py [--small N] [--large N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import msgpack

from rapid_dev_storage import FileBackend, Storage


def fill(backend: FileBackend, group: str, count: int) -> list[tuple[str, ...]]:
    """Write ``count`` records straight to disk (the layout is the point, not the write path)."""
    keys = [(f"user{index:07}", "settings") for index in range(count)]
    Path(backend.record_path(group, keys[0])).parent.mkdir(parents=True, exist_ok=True)
    for record_keys in keys:
        data = backend._encode_record(record_keys, {"theme": "dark", "n": 1})
        Path(backend.record_path(group, record_keys)).write_bytes(data)
    return keys


def raw_read(path: str) -> bytes:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return os.read(descriptor, 1 << 16)
    finally:
        os.close(descriptor)


def raw_scan(directory: str) -> int:
    count = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            msgpack.unpackb(raw_read(entry.path))
            count += 1
    return count


async def measure(store: Storage, backend: FileBackend, group: str, count: int) -> list[float]:
    keys = fill(backend, group, count)
    paths = [backend.record_path(group, k) for k in keys]
    handles = store.get_group(group)
    samples_raw, samples_get = [], []
    for _ in range(5_000):
        index = random.randrange(count)
        start = time.perf_counter_ns()
        raw_read(paths[index])
        samples_raw.append(time.perf_counter_ns() - start)
        start = time.perf_counter_ns()
        await handles[keys[index]].get_value()
        samples_get.append(time.perf_counter_ns() - start)
    directory = os.path.dirname(paths[0])
    start = time.perf_counter()
    raw_scan(directory)
    raw_scan_seconds = time.perf_counter() - start
    start = time.perf_counter()
    async for _ in handles.all_items():
        pass
    scan_seconds = time.perf_counter() - start
    return [
        statistics.median(samples_raw) / 1000,
        statistics.median(samples_get) / 1000,
        raw_scan_seconds / count * 1e6,
        scan_seconds / count * 1e6,
    ]


async def main(small: int, large: int) -> None:
    root = tempfile.mkdtemp(prefix="rds-layout-")
    backend = await FileBackend.create_backend_instance(root, "layout", 1, durability="fast")
    async with Storage(backend) as store:
        rows = {
            count: await measure(store, backend, f"g{count}", count) for count in (small, large)
        }
    shutil.rmtree(root)
    header = ("records in group", "raw read us", "get us", "raw scan us/rec", "all_items us/rec")
    print(f"{header[0]:>18} {header[1]:>12} {header[2]:>8} {header[3]:>16} {header[4]:>17}")
    for count, (raw, get, raw_scan_us, scan_us) in rows.items():
        print(f"{count:>18,} {raw:12.1f} {get:8.1f} {raw_scan_us:16.1f} {scan_us:17.1f}")
    (raw_s, get_s, _, scan_s), (raw_l, get_l, raw_scan_l, scan_l) = rows[small], rows[large]
    print(f"\nlarge/small: raw read {raw_l / raw_s:.2f}x, get {get_l / get_s:.2f}x, "
          f"all_items per record {scan_l / scan_s:.2f}x")  # fmt: skip
    print(f"all_items / raw scan+read+unpack at {large:,}: {scan_l / raw_scan_l:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.small, arguments.large))
