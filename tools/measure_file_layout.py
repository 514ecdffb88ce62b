"""Measure whether large groups need fan-out directories, side by side in one run.

The same ``--records`` files are laid out twice: flat in one directory (what FileBackend does)
and fanned out over 256 subdirectories by the first two hex digits of their name (what it could
do). For each layout it times a raw ``os.open``/``os.read`` of a random file, a full scan
(``os.scandir`` + read), and creating-and-renaming a file in place. If the flat layout is not
slower, fan-out buys nothing and costs a directory level in every path. It also times
FileBackend's own ``get`` and ``all_items`` on a group of that size.

    python tools/measure_file_layout.py [--records N]
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

from rapid_dev_storage import FileBackend, Storage
from rapid_dev_storage._names import key_digest

DATA = b"\x82\xa4keys\x91\xa1k\xa5value\x81\xa5theme\xa4dark"


def lay_out(root: Path, names: list[str], fan_out: bool) -> list[str]:
    paths = []
    for name in names:
        directory = root / name[:2] if fan_out else root
        directory.mkdir(exist_ok=True)
        path = directory / name
        path.write_bytes(DATA)
        paths.append(str(path))
    return paths


def median_us(operation: object, count: int = 5_000) -> float:
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        operation()  # type: ignore[operator]
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def read(path: str) -> bytes:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return os.read(descriptor, 1 << 16)
    finally:
        os.close(descriptor)


def replace(path: str) -> None:
    temp = f"{path}.tmp"
    with open(temp, "wb") as file:
        file.write(DATA)
    os.replace(temp, path)


def scan(root: Path) -> float:
    start = time.perf_counter()
    count = 0
    for directory, _, files in os.walk(root):
        for name in files:
            read(os.path.join(directory, name))
            count += 1
    return (time.perf_counter() - start) / count * 1e6


def write_records(backend: FileBackend, keys: list[tuple[str]]) -> None:
    """Write the group's files straight to disk: the layout is the point, not the write path."""
    Path(backend.record_path("g", keys[0])).parent.mkdir(parents=True)
    for record_keys in keys:
        data = backend._encode_record(record_keys, {"theme": "dark"})
        Path(backend.record_path("g", record_keys)).write_bytes(data)


async def measure_backend(root: Path, records: int) -> tuple[float, float]:
    backend = await FileBackend.create_backend_instance(root, "layout", 1, durability="fast")
    async with Storage(backend) as store:
        keys = [(f"user{index:07}",) for index in range(records)]
        write_records(backend, keys)
        group = store.get_group("g")
        samples = []
        for _ in range(5_000):
            handle = group[random.choice(keys)]
            start = time.perf_counter_ns()
            await handle.get_value()
            samples.append(time.perf_counter_ns() - start)
        start = time.perf_counter()
        seen = sum([1 async for _ in group.all_items()])
        scan_us = (time.perf_counter() - start) / seen * 1e6
    return statistics.median(samples) / 1000, scan_us


def main(records: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="rds-layout-"))
    names = [key_digest((f"user{index:07}",)) + ".msgpack" for index in range(records)]
    rows = {}
    for fan_out in (False, True):
        directory = root / ("fanned" if fan_out else "flat")
        directory.mkdir()
        paths = lay_out(directory, names, fan_out)
        rows["fan-out (256 dirs)" if fan_out else "flat (one dir)"] = (
            median_us(lambda paths=paths: read(random.choice(paths))),
            median_us(lambda paths=paths: replace(random.choice(paths)), 2_000),
            scan(directory),
        )
    get_us, all_items_us = asyncio.run(measure_backend(root / "backend", records))
    shutil.rmtree(root)
    print(f"{records:,} files, one run\n")
    print(f"{'layout':20} {'read us':>8} {'replace us':>11} {'scan us/file':>13}")
    for label, (read_us, replace_us, scan_us) in rows.items():
        print(f"{label:20} {read_us:8.1f} {replace_us:11.1f} {scan_us:13.1f}")
    flat, fanned = rows["flat (one dir)"], rows["fan-out (256 dirs)"]
    print(
        f"\nflat / fan-out: read {flat[0] / fanned[0]:.2f}x, replace {flat[1] / fanned[1]:.2f}x, "
        f"scan {flat[2] / fanned[2]:.2f}x"
    )
    print(
        f"FileBackend on a flat group of {records:,}: get {get_us:.1f} us, "
        f"all_items {all_items_us:.1f} us a record"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    main(parser.parse_args().records)
