"""How get and set grow with the records in one group: 1,000 to 300,000 (``--quick``: small).

For each size, one group holds that many records, for FileBackend (msgpack), SQLiteBackend and,
beside them, raw files and `diskcache.Cache`. ``get`` reads records not read before (a store
opened afresh for each size, so neither the read cache nor the memo of file names has seen
them); ``set fast`` and ``set full`` replace random existing records. Subjects are visited in
turn, operation by operation, so the machine's slow moments fall on all of them alike.

Filling 300,000 records through the library would take minutes, so the stores are filled the
way their own formats say, in bulk: record files are written with the layout's own functions
(`encode_record`, `record_file_name`, `group_directory_name`: the names a store gives, not a
copy of its rule), SQLite rows in one transaction on the backend's own table. One record is
written through the library first and read back, proving the bulk bytes are the library's.
"""

from __future__ import annotations

import inspect
import os
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import diskcache
import msgpack
from bench_harness import VALUE, Bench
from bench_peers import raw_read, raw_write

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage, StorageGroup
from rapid_dev_storage._file_layout import encode_record, group_directory_name, record_file_name
from rapid_dev_storage._sqlite import table_name

GROUP = "scale"
FILE, SQLITE, RAW, DISKCACHE = (
    "FileBackend msgpack",
    "SQLiteBackend",
    "raw files",
    "diskcache.Cache",
)


def workload(name: str, count: int) -> str:
    """The workload's label at ``count`` records: ``get @100,000``."""
    return f"{name} @{count:,}"


def keys_for(count: int) -> list[str]:
    return [f"k{index:07}" for index in range(count)]


# --- filling, in bulk -------------------------------------------------------------------------


async def fill_files(directory: Path, count: int) -> FileBackend:
    """A FileBackend store whose group holds ``count`` records; returns it opened afresh."""
    backend = await FileBackend.create_backend_instance(
        directory, "scale", count, codec="msgpack", durability="fast"
    )
    async with Storage(backend) as store:
        await store.get_group(GROUP)["k0000000"].set_value(VALUE)  # the directory, and a proof
    group_directory = Path(backend.location) / group_directory_name(GROUP)
    proof = encode_record(backend.codec, ("k0000000",), VALUE)
    written = (
        group_directory / record_file_name(("k0000000",), backend.codec.extension)
    ).read_bytes()
    assert written == proof, "the bulk bytes are not the ones the library writes"
    extension = backend.codec.extension
    for key in keys_for(count)[1:]:
        path = group_directory / record_file_name((key,), extension)
        path.write_bytes(encode_record(backend.codec, (key,), VALUE))
    return await FileBackend.create_backend_instance(
        directory, "scale", count, codec="msgpack", durability="fast"
    )


async def fill_sqlite(path: Path, count: int) -> SQLiteBackend:
    """An SQLiteBackend store whose group holds ``count`` records; returns it opened afresh."""
    backend = await SQLiteBackend.create_backend_instance(path, "scale", 1, durability="fast")
    async with Storage(backend) as store:
        await store.get_group(GROUP)["k0000000"].set_value(VALUE)
    table = '"' + table_name("scale", "1") + '"'
    data = msgpack.packb(VALUE)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        row = connection.execute(f"SELECT data FROM {table} WHERE k1 = 'k0000000'").fetchone()
        assert row[0] == data, "the bulk bytes are not the ones the library writes"
        connection.execute("BEGIN")
        connection.executemany(
            f"INSERT OR REPLACE INTO {table} VALUES (?, ?, '', '', '', '', 1, ?)",
            [(GROUP, key, data) for key in keys_for(count)],
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    return await SQLiteBackend.create_backend_instance(path, "scale", 1, durability="fast")


def fill_raw(directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True)
    data = msgpack.packb({"keys": ["k"], "value": VALUE})
    paths = [str(directory / f"{key}.msgpack") for key in keys_for(count)]
    for path in paths:
        Path(path).write_bytes(data)
    return paths


def fill_diskcache(cache: diskcache.Cache, count: int) -> None:
    with cache.transact():
        for key in keys_for(count):
            cache.set(key, VALUE)


# --- measuring ---------------------------------------------------------------------------------

Timed = Callable[[str], Awaitable[Any] | Any]


async def interleaved(
    bench: Bench, label: str, operations: dict[str, Timed], keys: list[str]
) -> None:
    """Run each subject's operation on each key in turn; add a row per subject (``label``)."""
    samples: dict[str, list[int]] = {name: [] for name in operations}
    for key in keys:
        for name, operation in operations.items():
            start = time.perf_counter_ns()
            result = operation(key)
            if inspect.isawaitable(result):
                await result
            samples[name].append(time.perf_counter_ns() - start)
    for name, timings in samples.items():
        bench.add(name, label, timings)


def library_sets(file_group: StorageGroup, sqlite_group: StorageGroup) -> dict[str, Timed]:
    return {
        FILE: lambda key: file_group[key].set_value(VALUE),
        SQLITE: lambda key: sqlite_group[key].set_value(VALUE),
    }


async def measure_size(bench: Bench, count: int, gets: int, sets: int) -> None:
    root = bench.root / f"scaling-{count}"
    print(f"scaling: filling {count:,} records...", file=sys.stderr)
    files = await fill_files(root / "file", count)
    sqlite = await fill_sqlite(root / "sqlite.db", count)
    raw_paths = dict(zip(keys_for(count), fill_raw(root / "raw", count), strict=True))
    cache = diskcache.Cache(str(root / "diskcache"))
    fill_diskcache(cache, count)
    # The bulk writes' dirty pages and journal go to disk now, not in the first fsyncs timed.
    os.sync()
    file_group = Storage(files).get_group(GROUP)
    sqlite_group = Storage(sqlite).get_group(GROUP)
    raw_data = msgpack.packb({"keys": ["k"], "value": VALUE})
    try:
        fresh = random.sample(keys_for(count), min(gets, count))  # each read once: not read before
        await interleaved(
            bench,
            workload("get", count),
            {
                FILE: lambda key: file_group[key].get_value(),
                SQLITE: lambda key: sqlite_group[key].get_value(),
                RAW: lambda key: raw_read(raw_paths[key]),
                DISKCACHE: cache.get,
            },
            fresh,
        )
        targets = [random.choice(fresh) for _ in range(sets)]
        await interleaved(
            bench,
            workload("set fast", count),
            {
                **library_sets(file_group, sqlite_group),
                RAW: lambda key: raw_write(raw_paths[key], raw_data, False),
                DISKCACHE: lambda key: cache.set(key, VALUE),
            },
            targets,
        )
    finally:
        await files.close()
        await sqlite.close()
        cache.close()
    await measure_full_sets(bench, root, count, max(8, sets // 4), raw_paths, raw_data)


async def measure_full_sets(
    bench: Bench, root: Path, count: int, sets: int, raw_paths: dict[str, str], raw_data: bytes
) -> None:
    """``set full`` on the same stores, reopened at durability full: fewer (each is an fsync)."""
    files = await FileBackend.create_backend_instance(
        root / "file", "scale", count, codec="msgpack", durability="full"
    )
    sqlite = await SQLiteBackend.create_backend_instance(
        root / "sqlite.db", "scale", 1, durability="full"
    )
    file_group = Storage(files).get_group(GROUP)
    sqlite_group = Storage(sqlite).get_group(GROUP)
    try:
        targets = random.sample(keys_for(count), min(sets, count))
        await interleaved(
            bench,
            workload("set full", count),
            {
                **library_sets(file_group, sqlite_group),
                RAW: lambda key: raw_write(raw_paths[key], raw_data, True),
            },
            targets,
        )
    finally:
        await files.close()
        await sqlite.close()


async def measure_scaling(bench: Bench) -> None:
    """Add get, set fast and set full rows at every size of ``bench.sizes.scaling``."""
    quick = bench.sizes.scaling[-1] < 10_000
    # A first pass at the smallest size, thrown away: the first operations of a process are
    # slower (imports, caches), and would make the smallest size look the slowest.
    warm_up = Bench(bench.sizes, bench.root / "warm-up")
    await measure_size(warm_up, bench.sizes.scaling[0], gets=100, sets=20)
    for count in bench.sizes.scaling:
        await measure_size(bench, count, gets=200 if quick else 2_000, sets=50 if quick else 400)


def growth_lines(bench: Bench) -> list[str]:
    """Lines saying how each subject's per-operation cost grows from the smallest size."""
    sizes = bench.sizes.scaling
    lines = []
    for name in (FILE, SQLITE, RAW, DISKCACHE):
        for label in ("get", "set fast", "set full"):
            try:
                base = bench.get(name, workload(label, sizes[0])).median_us
                grown = [bench.get(name, workload(label, size)).median_us / base for size in sizes]
            except KeyError:
                continue
            steps = ", ".join(
                f"{size:,}: {ratio:.2f}x" for size, ratio in zip(sizes, grown, strict=True)
            )
            lines.append(f"{name} {label}: {steps}")
    return lines
