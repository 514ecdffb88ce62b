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

With ``--sets full`` or ``--sets fast``, the same for a set at that durability:

- plain sqlite3: the bench's peer (msgpack pack, the upsert, on the loop's thread: at FULL its
  fsync holds the loop, which we never let happen);
- plain on the worker: the same on a SQLiteBackend-style worker thread (`_sqlite_worker`), the
  floor of a set that keeps the loop free;
- hook: `SQLiteBackend._write` of encoded bytes;
- write_data, handle, group[key]: the policy above it (checks, encode and value check, turns).

    python tools/measure_sqlite_layers.py [--sets full|fast]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import statistics
import tempfile
import time
from typing import Awaitable, Callable

import msgpack
from bench_harness import VALUE

from rapid_dev_storage import SQLiteBackend, Storage
from rapid_dev_storage._sqlite import table_name
from rapid_dev_storage._sqlite_core import read_small
from rapid_dev_storage._sqlite_worker import Worker

ROUNDS = 25
RECORDS = 1_000
SET_RECORDS = {"full": 100, "fast": 1_000}
"""Sets per layer and round: a set at full waits for an fsync."""

Layers = dict[str, Callable[[int], Awaitable[None]]]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", choices=("full", "fast"), help="measure sets at this durability")
    sets = parser.parse_args().sets
    root = tempfile.mkdtemp(prefix="rds-sqlite-layers-")
    backend = await SQLiteBackend.create_backend_instance(
        f"{root}/layers.db", "bench", 1, durability=sets or "fast"
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

    layers: Layers = {
        "plain sqlite3": plain,
        "SQL core": core,
        "hook": hook,
        "get_data": get_data,
        "handle": handle,
        "group[key]": group_key,
    }
    cleanup = contextlib.ExitStack()
    if sets:
        layers = set_layers(backend, store, f"{root}/layers.db", sets, keys, cleanup)
    count = SET_RECORDS[sets] if sets else RECORDS
    samples: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(ROUNDS):
        for name, layer in layers.items():
            start = time.perf_counter()
            for index in range(count):
                await layer(index)
            samples[name].append((time.perf_counter() - start) / count * 1e6)
    base = statistics.median(samples["plain sqlite3"])
    for name, values in samples.items():
        median = statistics.median(values)
        tenth = sorted(values)[len(values) // 10]
        print(f"{name:20} median {median:7.2f} us  p10 {tenth:7.2f} us  {median / base:5.2f}x")
    cleanup.close()
    await store.close()


def set_layers(
    backend: SQLiteBackend,
    store: Storage,
    path: str,
    durability: str,
    keys: list[str],
    cleanup: contextlib.ExitStack,
) -> Layers:
    """The layers of a set at ``durability``, each writing the records ``keys`` name."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    cleanup.callback(connection.close)
    connection.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
    upsert = (
        f"INSERT OR REPLACE INTO \"{table_name('bench', '1')}\" VALUES (?, ?, '', '', '', '', 1, ?)"
    )
    worker = Worker("measure-sqlite-layers")
    cleanup.callback(worker.stop)
    group = store.get_group("bench")
    handles = [group[key] for key in keys]
    data = msgpack.packb(VALUE)

    def plain_set(key: str) -> None:
        connection.execute(upsert, ("bench", key, msgpack.packb(VALUE)))

    async def plain(index: int) -> None:
        plain_set(keys[index])

    async def plain_on_worker(index: int) -> None:
        await worker.run(plain_set, keys[index])

    async def hook(index: int) -> None:
        await backend._write("bench", (keys[index],), data)

    async def write_data(index: int) -> None:
        await backend.write_data("bench", keys[index], value=VALUE)

    async def handle(index: int) -> None:
        await handles[index].set_value(VALUE)

    async def group_key(index: int) -> None:
        await group[keys[index]].set_value(VALUE)

    return {
        "plain sqlite3": plain,
        "plain on the worker": plain_on_worker,
        "hook": hook,
        "write_data": write_data,
        "handle": handle,
        "group[key]": group_key,
    }


if __name__ == "__main__":
    asyncio.run(main())
