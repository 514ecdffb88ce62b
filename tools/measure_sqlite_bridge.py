"""Measure how SQLiteBackend crosses between the event loop and sqlite3, side by side in one run.

It compares, on the same table and data: plain synchronous sqlite3; our reads inline on the loop
(the design); the same reads sent to the worker thread (the alternative); writes at each
durability. It also measures the longest stall of the event loop (a 1 ms ticker) during each
workload, which is what "not blocking the loop" means in practice.

    python tools/measure_sqlite_bridge.py [--records N] [--operations N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from loop_ticker import ticking

from rapid_dev_storage import SQLiteBackend, Storage
from rapid_dev_storage._sqlite import table_name
from rapid_dev_storage._sqlite_core import read


async def _timed(operation: Callable[[int], Awaitable[Any]], count: int) -> tuple[float, float]:
    """Return (median microseconds per operation, longest loop stall in ms) over ``count`` runs."""
    samples = []
    async with ticking() as stall:
        for index in range(count):
            start = time.perf_counter_ns()
            await operation(index)
            samples.append(time.perf_counter_ns() - start)
            await asyncio.sleep(0)  # let the ticker run: a stall is one operation's blocking time
    return statistics.median(samples) / 1000, stall[0]


def _plain_sqlite(
    path: Path, table: str, keys: list[str], count: int, sync: str
) -> tuple[float, float]:
    """Median microseconds of a primary-key select and of an autocommit upsert in plain sqlite3."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA synchronous = {sync}")
    quoted = '"' + table + '"'
    where = " AND ".join(f"{column} = ?" for column in ("group_name", "k1", "k2", "k3", "k4", "k5"))
    select = f"SELECT data FROM {quoted} WHERE {where} AND key_count = ?"
    upsert = f"INSERT OR REPLACE INTO {quoted} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    reads, writes = [], []
    for _ in range(count):
        key = random.choice(keys)
        start = time.perf_counter_ns()
        connection.execute(select, ("G", key, "", "", "", "", 1)).fetchall()
        reads.append(time.perf_counter_ns() - start)
        start = time.perf_counter_ns()
        connection.execute(upsert, ("G", key, "", "", "", "", 1, b"\x81\xa1n\x01"))
        writes.append(time.perf_counter_ns() - start)
    connection.close()
    return statistics.median(reads) / 1000, statistics.median(writes) / 1000


async def _measure_backend(
    path: Path, keys: list[str], operations: int, durability: str
) -> list[tuple[str, float, float]]:
    backend = await SQLiteBackend.create_backend_instance(path, "bench", 1, durability=durability)
    rows = []
    async with Storage(backend) as store:
        group = store.get_group("G")

        async def get_inline(index: int) -> Any:
            return await group[random.choice(keys)].get_value()

        async def get_via_worker(index: int) -> Any:
            connections = backend._connections
            return await connections.on_worker(read, backend._queries, "G", (random.choice(keys),))

        async def set_value(index: int) -> None:
            await group[random.choice(keys)].set_value({"n": index})

        async def scan(index: int) -> None:
            async for _ in group.all_items():
                pass

        if durability == "full":
            for key in keys:
                await group[key].set_value({"n": 1})
            rows.append(("get: inline on the loop (chosen)", *await _timed(get_inline, operations)))
            rows.append(("get: via the worker thread", *await _timed(get_via_worker, operations)))
            rows.append((f"all_items over {len(keys)} records", *await _timed(scan, 3)))
        rows.append((f"set: durability={durability}", *await _timed(set_value, operations // 4)))
    return rows


async def main(records: int, operations: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="rds-bridge-"))
    path = directory / "bench.sqlite3"
    keys = [f"user{i:06}" for i in range(records)]
    rows: list[tuple[str, float, float]] = []
    for durability in ("full", "fast"):
        rows += await _measure_backend(path, keys, operations, durability)
    table = table_name("bench", "1")
    plain_read, plain_full = _plain_sqlite(path, table, keys, operations // 4, "FULL")
    _, plain_normal = _plain_sqlite(path, table, keys, operations // 4, "NORMAL")
    print(f"{records} records, {operations} operations, sqlite {sqlite3.sqlite_version}\n")
    print(f"{'workload':40} {'median us':>10} {'max loop stall ms':>18}")
    for label, median, stall in rows:
        print(f"{label:40} {median:10.1f} {stall:18.2f}")
    print(f"{'plain sqlite3 select (blocking)':40} {plain_read:10.1f}")
    print(f"{'plain sqlite3 upsert FULL (blocking)':40} {plain_full:10.1f}")
    print(f"{'plain sqlite3 upsert NORMAL (blocking)':40} {plain_normal:10.1f}")
    by_label = {label: median for label, median, _ in rows}
    ratios = [
        ("get inline / plain select", by_label["get: inline on the loop (chosen)"] / plain_read),
        ("get via worker / plain select", by_label["get: via the worker thread"] / plain_read),
        ("set full / plain upsert FULL", by_label["set: durability=full"] / plain_full),
        ("set fast / plain upsert NORMAL", by_label["set: durability=fast"] / plain_normal),
    ]
    print()
    for label, ratio in ratios:
        print(f"{label:40} {ratio:10.2f}x")
    shutil.rmtree(directory)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--operations", type=int, default=4_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.records, arguments.operations))
