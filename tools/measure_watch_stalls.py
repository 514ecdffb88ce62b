"""Measure what watching costs the event loop and memory on a bad day.

The event loop: a 1 ms ticker task records the longest gap between its ticks (the longest
stall) while each workload runs; "no single stall over 50 ms" is the target.

- ``start``: start a watch on a FileBackend store of 20,000 records.
- ``sqlite``: another process inserts 100,000 rows into a watched SQLite store in one
  transaction (as the ``sqlite3`` shell would); measured until every change has arrived.
- ``rewrite``: another process rewrites 5,000 record files of a watched store at once (a
  checkout); measured until every change has arrived.
- ``conflicts``: 49 records get a merge's conflict markers, then another process writes a
  valid record; how late that write is reported.
- ``noise``: the same rewrite with nobody watching: the stalls this machine causes by itself
  (another process holding both cores stalls the loop as surely as a blocking call).

Memory (what Python holds, by tracemalloc, and RSS growth; after a garbage collection):

- ``big``: start a watch on a store of four 50 MB records.
- ``slow``: one record rewritten 20,000 times while an ``async with store.watch()`` consumer
  reads nothing.

    python tools/measure_watch_stalls.py [--workloads start,sqlite,rewrite,...] [--scale 1]
        [--repeat 1]

On a shared machine the longest stall varies from run to run: repeat each workload, compare
medians with ``noise``, and run the code before a change the same way (``PYTHONPATH=<an older
checkout>``) in between.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from loop_ticker import longest_stall

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage
from rapid_dev_storage._sqlite import table_name

_REWRITER = """
import json, os, sys
paths = sys.argv[1:]
for index, path in enumerate(paths):
    with open(path, "rb") as file:
        record = json.load(file)
    record["value"] = {"rewritten": index, "pad": "y" * 100}
    temp = path + ".tmp-rewrite"
    with open(temp, "w") as file:
        json.dump(record, file)
    os.replace(temp, path)
"""

_INSERTER = """
import sqlite3, sys
path, table, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
connection = sqlite3.connect(path, isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
connection.executemany(
    f'INSERT OR REPLACE INTO "{table}" (group_name, k1, k2, k3, k4, k5, key_count, data) '
    "VALUES (?, ?, '', '', '', '', 1, ?)",
    (("G", f"k{index}", sys.argv[4].encode()) for index in range(count)),
)
connection.execute("COMMIT")
"""


def _rss_mb() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def _file_store(root: Path, count: int, value: Any) -> Storage:
    """A json FileBackend store of ``count`` records, written straight to their files (fast)."""
    backend = await FileBackend.create_backend_instance(
        root, "measure", 1, codec="json", durability="fast"
    )

    def write_all() -> None:
        os.makedirs(os.path.dirname(backend.record_path("G", ("k0",))), exist_ok=True)
        for index in range(count):
            keys = (f"k{index}",)
            Path(backend.record_path("G", keys)).write_bytes(backend._encode_record(keys, value))

    await asyncio.to_thread(write_all)
    return Storage(backend)


async def _drain_until(changes: Any, wanted: int) -> None:
    seen: set[Any] = set()
    async for change in changes:
        seen.add(change.keys)
        if len(seen) >= wanted:
            return


async def measure_start(root: Path, scale: float) -> str:
    count = int(20_000 * scale)
    store = await _file_store(root, count, {"index": 1, "pad": "x" * 100})
    async with store:
        watch = store.watch()
        stall, taken = await longest_stall(watch.start)
        await watch.close()
    return f"start a watch on {count} file records: longest stall {stall:.1f} ms ({taken:.2f} s)"


async def measure_sqlite(root: Path, scale: float) -> str:
    count = int(100_000 * scale)
    path = root / "db.sqlite3"
    backend = await SQLiteBackend.create_backend_instance(
        path, "measure", 1, codec="json", durability="fast"
    )
    async with Storage(backend) as store, store.watch() as changes:
        data = backend._encode("G", ("k",), {"inserted": True, "pad": "z" * 50})

        arguments = (str(path), table_name("measure", "1"), str(count), data.decode())
        stall, taken = await longest_stall(
            lambda: _write_elsewhere(changes, count, _INSERTER, *arguments)
        )
    return (
        f"SQLite backlog of {count} rows from another process: longest stall {stall:.1f} ms "
        f"({taken:.2f} s until every change arrived)"
    )


async def _write_elsewhere(changes: Any, count: int, script: str, *arguments: str) -> None:
    """Run ``script`` in another process, then wait until ``count`` changes have arrived."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, *arguments)
    assert await process.wait() == 0
    await asyncio.wait_for(_drain_until(changes, count), 600)


async def measure_rewrite(root: Path, scale: float) -> str:
    count = int(5_000 * scale)
    store = await _file_store(root, count, {"index": 0})
    async with store, store.watch() as changes:
        paths = [store.backend.record_path("G", (f"k{i}",)) for i in range(count)]  # type: ignore[attr-defined]

        stall, taken = await longest_stall(
            lambda: _write_elsewhere(changes, count, _REWRITER, *paths)
        )
    return (
        f"{count} files rewritten by another process: longest stall {stall:.1f} ms "
        f"({taken:.2f} s until every change arrived)"
    )


class _Growth:
    """Memory grown from entering to `measure`: (traced by tracemalloc, RSS), in MB."""

    def __enter__(self) -> _Growth:
        gc.collect()
        tracemalloc.start()
        self._rss = _rss_mb()
        return self

    async def measure(self) -> str:
        # A thread pool's worker drops its last job (and the result it holds) only after the
        # loop has taken the result: let it get that far before counting.
        await asyncio.sleep(0.1)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] / 1e6
        return f"Python holds +{traced:.1f} MB, RSS +{_rss_mb() - self._rss:.0f} MB"

    def __exit__(self, *exc_info: object) -> None:
        tracemalloc.stop()


_WRITER = """
import json, os, sys
path, record = sys.argv[1], sys.argv[2]
with open(path + ".tmp-write", "w") as file:
    file.write(record)
os.replace(path + ".tmp-write", path)
"""


async def measure_conflicts(root: Path, scale: float) -> str:
    count = max(1, int(49 * scale))
    store = await _file_store(root, count, {"index": 0})
    async with store, store.watch() as changes:
        backend = store.backend

        def conflict() -> None:
            for index in range(count):
                Path(backend.record_path("G", (f"k{index}",))).write_text(  # type: ignore[attr-defined]
                    f'<<<<<<< HEAD\n{{"keys": ["k{index}"], "value": 1}}\n=======\n>>>>>>> b\n'
                )

        await asyncio.to_thread(conflict)
        fresh = backend.record_path("G", ("fresh",))  # type: ignore[attr-defined]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, fresh, '{"keys": ["fresh"], "value": "valid"}'
        )
        assert await process.wait() == 0
        written = time.perf_counter()
        async for change in changes:
            if change.keys == ("fresh",):
                break
        late = time.perf_counter() - written
    return f"{count} conflicted records, then another process's write: reported {late:.2f} s later"


async def measure_noise(root: Path, scale: float) -> str:
    count = int(5_000 * scale)
    store = await _file_store(root, count, {"index": 0})
    async with store:
        paths = [store.backend.record_path("G", (f"k{i}",)) for i in range(count)]  # type: ignore[attr-defined]

        async def work() -> None:
            process = await asyncio.create_subprocess_exec(sys.executable, "-c", _REWRITER, *paths)
            assert await process.wait() == 0

        stall, _taken = await longest_stall(work)
    return (
        f"{count} files rewritten by another process, nobody watching: longest stall {stall:.1f} ms"
    )


async def measure_big(root: Path, scale: float) -> str:
    size = int(50_000_000 * scale)
    store = await _file_store(root, 4, {"pad": "b" * size})
    async with store:
        with _Growth() as growth:
            watch = store.watch()
            await watch.start()
            grown = await growth.measure()
            await watch.close()
    return f"watch on 4 records of {size / 1e6:.0f} MB: {grown} while watching"


async def measure_slow(root: Path, scale: float) -> str:
    writes = int(20_000 * scale)
    store = await _file_store(root, 1, 0)
    async with store:
        handle = store.get_group("G")["k0"]
        async with store.watch():
            with _Growth() as growth:
                for index in range(writes):
                    await handle.set_value({"index": index, "pad": "s" * 10_000})
                grown = await growth.measure()
    return f"{writes} rewrites of one record, consumer reads nothing: {grown}"


WORKLOADS = {
    "start": measure_start,
    "sqlite": measure_sqlite,
    "rewrite": measure_rewrite,
    "conflicts": measure_conflicts,
    "noise": measure_noise,
    "big": measure_big,
    "slow": measure_slow,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--scale", type=float, default=1.0, help="shrink for a quick run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each workload")
    arguments = parser.parse_args()
    for name in arguments.workloads.split(","):
        for _ in range(arguments.repeat):
            root = Path(tempfile.mkdtemp(prefix="rds-measure-"))
            try:
                print(await WORKLOADS[name](root, arguments.scale), flush=True)
            finally:
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
