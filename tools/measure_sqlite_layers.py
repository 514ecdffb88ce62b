"""Where a SQLiteBackend get spends its time: each layer beside plain sqlite3, in one run.

Rounds of 1,000 gets of a small record through each layer in turn (interleaved, so a slow
moment of the machine falls on all of them), 25 rounds; each layer's median and 10th percentile
per get. The layers, each including the ones below it:

- plain sqlite3: the bench's peer (SELECT on the backend's own table and file, msgpack unpack);
- SQL core: `_sqlite_core.read_small` on the backend's loop connection (no decode);
- hook: `SQLiteBackend._read`, what the policy calls (no decode);
- get_data: `StorageBackend.get_data`, the policy (checks, decode, the write-back rule, turns);
- handle: ``StorageValue.get_value`` on a handle made beforehand;
- group[key]: ``group[key].get_value()``, as the bench's get row does.

    python tools/measure_sqlite_layers.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from typing import Awaitable, Callable

import msgpack
from bench_harness import VALUE

from rapid_dev_storage import SQLiteBackend, Storage
from rapid_dev_storage._sqlite_core import read_small

ROUNDS = 25
RECORDS = 1_000


async def main() -> None:
    root = tempfile.mkdtemp(prefix="rds-sqlite-layers-")
    backend = await SQLiteBackend.create_backend_instance(
        f"{root}/layers.db", "bench", 1, durability="fast"
    )
    store = Storage(backend)
    group = store.get_group("bench")
    keys = [f"k{index}" for index in range(RECORDS)]
    for key in keys:
        await group[key].set_value(VALUE)
    connection, queries = backend._connections.inline, backend._queries  # measuring only
    handles = [group[key] for key in keys]

    async def plain(index: int) -> None:
        row = connection.execute(queries.select, ("bench", keys[index], "", "", "", "", 1))
        msgpack.unpackb(row.fetchone()[0])

    async def core(index: int) -> None:
        read_small(connection, queries, "bench", (keys[index],))

    async def hook(index: int) -> None:
        await backend._read("bench", (keys[index],))

    async def get_data(index: int) -> None:
        await backend.get_data("bench", keys[index])

    async def handle(index: int) -> None:
        await handles[index].get_value()

    async def group_key(index: int) -> None:
        await group[keys[index]].get_value()

    layers: dict[str, Callable[[int], Awaitable[None]]] = {
        "plain sqlite3": plain,
        "SQL core": core,
        "hook": hook,
        "get_data": get_data,
        "handle": handle,
        "group[key]": group_key,
    }
    samples: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(ROUNDS):
        for name, layer in layers.items():
            start = time.perf_counter()
            for index in range(RECORDS):
                await layer(index)
            samples[name].append((time.perf_counter() - start) / RECORDS * 1e6)
    base = statistics.median(samples["plain sqlite3"])
    for name, values in samples.items():
        median = statistics.median(values)
        tenth = sorted(values)[len(values) // 10]
        print(f"{name:14} median {median:6.2f} us  p10 {tenth:6.2f} us  {median / base:5.2f}x")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
