"""Benchmark every backend beside the peers a user would pick instead, in one process and one run.

Prints median microseconds per operation and operations per second for each subject and
workload, then every target of the benchmark issue as a ratio measured in this same run (machines
are noisy: only side-by-side ratios mean anything). Latency workloads run in rounds that visit
every subject in turn, so a slow minute of the machine falls on all of them alike. ``--quick``
runs everything small, so CI proves the benchmark still works; it asserts no timings.

    python tools/bench.py [--quick] [--sync | --large | --scaling] [--postgres DSN]
                          [--open-records N]
                          [--markdown FILE] [--chart FILE.png] [--json FILE]

``--json`` keeps the run's rows and target ratios for ``tools/bench_ranges.py``, which turns three
or more runs into the ranges docs/benchmarks.md reports.

With a PostgreSQL server (``--postgres``, or RAPID_DEV_STORAGE_TEST_POSTGRES as the tests use),
PostgresBackend runs beside plain asyncpg doing the same statements on the same table; the
tables live in a schema of their own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosqlite
import diskcache
from bench_concurrency import measure_concurrency_rows
from bench_harness import FULL, QUICK, VALUE, Bench, Result, Subject, peak_rss_growth
from bench_large import measure_large
from bench_peers import (
    aiosqlite_subject,
    bench_schema,
    disk_cache,
    measure_plain_asyncpg_scans,
    measure_plain_sqlite_scans,
    measure_raw_scans,
    plain_asyncpg,
    plain_sqlite,
    raw_files,
    thread_hop,
)
from bench_policy import policy_floor
from bench_reads import measure_cold_reads, measure_warm_reads
from bench_report import as_json, chart, machine, report
from bench_scaling import measure_scaling
from bench_scans import measure_scans_side_by_side
from bench_startup import measure_startup
from bench_sync import measure_sync
from bench_write_path import measure_write_path

from rapid_dev_storage import (
    FileBackend,
    MemoryBackend,
    PostgresBackend,
    SQLiteBackend,
    Storage,
    StorageBackend,
)

# --- our backends -----------------------------------------------------------------------------

OURS = [
    ("file", "msgpack", "full"),
    ("file", "msgpack", "fast"),
    ("file", "json", "full"),
    ("file", "json", "fast"),
    ("sqlite", "msgpack", "full"),
    ("sqlite", "msgpack", "fast"),
    ("memory", "msgpack", "fast"),
]


async def open_ours(
    bench: Bench, kind: str, codec: str, durability: str, server: str = ""
) -> Subject:
    root = bench.root
    if kind == "postgres":
        name = f"PostgresBackend {codec} {durability}"
        backend: StorageBackend = await PostgresBackend.create_backend_instance(
            server, "bench", codec, codec=codec, durability=durability
        )
    elif kind == "file":
        name = f"FileBackend {codec} {durability}"
        backend = await FileBackend.create_backend_instance(
            root / "file", "bench", f"{codec}-{durability}", codec=codec, durability=durability
        )
    elif kind == "sqlite":
        name = f"SQLiteBackend {durability}"
        backend = await SQLiteBackend.create_backend_instance(
            root / f"sqlite-{durability}.db", "bench", 1, codec=codec, durability=durability
        )
    else:
        name, backend = "MemoryBackend", MemoryBackend(codec)
    store = Storage(backend)
    group = store.get_group("bench")
    await fill(store, "bench", bench.keys)

    def bump(current: Any) -> Any:
        return {**current, "n": current.get("n", 0) + 1}

    async def get() -> Any:
        return await group[bench.random_key()].get_value()

    async def get_hot() -> Any:
        return await group[bench.hot_key()].get_value()

    async def put() -> None:
        await group[bench.random_key()].set_value(VALUE)

    async def update() -> Any:
        return await group[bench.random_key()].update(bump)

    operations = {"get": get, "get hot": get_hot, "set": put, "update": update}
    # 64 tasks setting FileBackend and SQLiteBackend records: bench_concurrency, beside raw threads.
    concurrent = {"get": get, "set": put} if kind in ("postgres", "memory") else {"get": get}
    return Subject(name, operations, concurrent, store)


async def fill(store: Storage, group_name: str, keys: list[str]) -> None:
    group = store.get_group(group_name)
    for start in range(0, len(keys), 256):
        await asyncio.gather(*(group[key].set_value(VALUE) for key in keys[start : start + 256]))


async def measure_scans(bench: Bench, subject: Subject, *, server: bool = False) -> None:
    """all_items over a small and a large group (time, RSS growth), then clearing a group.

    On a server (``server``), only the small group, read once untimed first: PostgreSQL's first
    read of new rows writes their hint bits, which the peer, reading later, would not pay.
    """
    assert subject.store is not None
    store = subject.store
    sizes = [bench.sizes.scan_small] if server else [bench.sizes.scan_small, bench.sizes.scan_large]
    for count in sizes:
        await fill(store, f"scan{count}", [f"r{index:07}" for index in range(count)])
        if server:
            async for _ in store.get_group(f"scan{count}").all_items():
                pass
        start = time.perf_counter()
        with peak_rss_growth() as growth:
            seen = sum([1 async for _ in store.get_group(f"scan{count}").all_items()])
        seconds = time.perf_counter() - start
        assert seen == count, (seen, count)
        note = f"RSS +{growth[0] / 1e6:.1f} MB"
        bench.add_throughput(subject.name, f"all_items {count:,}", count, seconds, note)
    count = bench.sizes.scan_small
    await fill(store, "clear", [f"r{index:07}" for index in range(count)])
    start = time.perf_counter()
    await store.get_group("clear").clear_group()
    bench.add_throughput(subject.name, f"clear {count:,}", count, time.perf_counter() - start)


# --- change notifications -------------------------------------------------------------------

WRITER = """
import asyncio, sys, time
from rapid_dev_storage import FileBackend, PostgresBackend, SQLiteBackend, Storage

async def main(kind, path, count):
    if kind == "postgres":
        backend = await PostgresBackend.create_backend_instance(path, "watch", 1, durability="fast")
    elif kind == "sqlite":
        backend = await SQLiteBackend.create_backend_instance(path, "watch", 1, durability="fast")
    else:
        backend = await FileBackend.create_backend_instance(path, "watch", 1, durability="fast")
    async with Storage(backend) as store:
        for index in range(count):
            await asyncio.sleep(0.05)
            await store.get_group("G")[f"k{index % 10}"].set_value({"at": time.time()})

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def measure_notifications(bench: Bench, kind: str, count: int, server: str = "") -> None:
    """Another process's write to our callback: p50 and p95; then an idle watcher's CPU."""
    name = {"file": "FileBackend", "sqlite": "SQLiteBackend", "postgres": "PostgresBackend"}[kind]
    name += " fast"
    path: Path | str = bench.root / ("watch" if kind == "file" else "watch.db")
    if kind == "postgres":
        path = server
    if kind == "postgres":
        backend: StorageBackend = await PostgresBackend.create_backend_instance(
            server, "watch", 1, durability="fast"
        )
    elif kind == "file":
        backend = await FileBackend.create_backend_instance(path, "watch", 1, durability="fast")
    else:
        backend = await SQLiteBackend.create_backend_instance(path, "watch", 1, durability="fast")
    latencies: list[float] = []
    async with Storage(backend) as store:
        subscription = await store.subscribe(
            lambda change: latencies.append(time.time() - change.value["at"]), "G"
        )
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, kind, str(path), str(count)
        )
        await writer.wait()
        for _ in range(100):
            if len(latencies) >= count:
                break
            await asyncio.sleep(0.02)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(2.0)
        idle = (time.process_time() - cpu) / (time.perf_counter() - wall) * 100
        await subscription.close()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e6
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1e6
    note = f"p95 {p95 / 1000:.1f} ms; idle watcher {idle:.2f}% of a core; {len(latencies)}/{count}"
    bench.results.append(Result(name, "change seen, p50", p50, 1e6 / p50, note))
    bench.results.append(Result(name, "change seen, p95", p95, 1e6 / p95))


async def open_subjects(
    bench: Bench, stack: contextlib.AsyncExitStack, server: str
) -> tuple[list[Subject], sqlite3.Connection]:
    """Open and fill ours and the peers; return them and the plain NORMAL sqlite3 connection."""
    ours = list(OURS)
    if server:
        ours += [
            ("postgres", "msgpack", "full"),
            ("postgres", "json", "full"),
            ("postgres", "msgpack", "fast"),
        ]
    subjects = []
    for kind, codec, durability in ours:
        print(f"filling {kind} {codec} {durability}...", file=sys.stderr)
        subject = await open_ours(bench, kind, codec, durability, server)
        assert subject.store is not None
        stack.push_async_callback(subject.store.close)
        subjects.append(subject)
    print("filling peers...", file=sys.stderr)
    if server:
        for peer in await plain_asyncpg(bench, server):
            for closer in peer.closers:
                stack.push_async_callback(closer)
            subjects.append(peer)
    for synchronous, durability in (("FULL", "full"), ("NORMAL", "fast")):
        connection = sqlite3.connect(bench.root / f"sqlite-{durability}.db", isolation_level=None)
        stack.callback(connection.close)
        subjects.append(plain_sqlite(bench, synchronous, connection))
    subjects.append(raw_files(bench))
    cache = stack.enter_context(diskcache.Cache(str(bench.root / "diskcache")))
    subjects.append(disk_cache(bench, cache))
    db = await stack.enter_async_context(
        aiosqlite.connect(bench.root / "aio.db", isolation_level=None)
    )
    subjects.append(await aiosqlite_subject(bench, db))
    subjects.append(policy_floor(bench))
    hop, executor = thread_hop()
    stack.callback(executor.shutdown)
    subjects.append(hop)
    return subjects, connection


async def measure_all(bench: Bench, postgres: str, quick: bool, open_records: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(bench_schema(postgres)) if postgres else ""
        subjects, plain_normal = await open_subjects(bench, stack, server)
        print("measuring latencies...", file=sys.stderr)
        await bench.measure_latencies(subjects)
        print("measuring concurrency, scans and clears...", file=sys.stderr)
        for subject in subjects:
            await bench.measure_concurrency(subject)
            if subject.name in ("FileBackend msgpack fast", "SQLiteBackend fast"):
                await measure_scans(bench, subject)
            if subject.name == "PostgresBackend msgpack fast":
                await measure_scans(bench, subject, server=True)
        print("measuring concurrent writes beside raw threads...", file=sys.stderr)
        await measure_concurrency_rows(bench)
        print("measuring one task's sets on tmpfs beside raw files...", file=sys.stderr)
        await measure_write_path(bench)
        measure_raw_scans(bench)
        print("measuring all_items beside a raw scan, in turns...", file=sys.stderr)
        await measure_scans_side_by_side(bench)
        print("measuring first reads of records not in the page cache...", file=sys.stderr)
        await measure_cold_reads(bench, 30 if quick else 300)
        print("measuring first reads of warm records beside their system calls...", file=sys.stderr)
        await measure_warm_reads(bench, 300 if quick else 4_000)
        measure_plain_sqlite_scans(bench, plain_normal)  # on the fast file, filled by ours
        if server:
            await measure_plain_asyncpg_scans(bench, server)
        print("measuring get and set as a group grows...", file=sys.stderr)
        await measure_scaling(bench)
        print("measuring the synchronous API...", file=sys.stderr)
        await measure_sync(bench)
        print("measuring change notifications...", file=sys.stderr)
        for kind in ("file", "sqlite", "postgres") if server else ("file", "sqlite"):
            await measure_notifications(bench, kind, 10 if quick else 60, server)
    # With the peers closed (aiosqlite's thread, the thread hop's pool): a thread of the
    # program's own makes a write check a copy of its snapshot (docs/codecs.md), and a program
    # storing large values with only our threads about does not pay that.
    print("measuring large values...", file=sys.stderr)
    await measure_large(bench, quick)
    print("measuring start-up and opening...", file=sys.stderr)
    await measure_startup(bench, runs=3 if quick else 15, open_records=open_records)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: proves it runs")
    parser.add_argument(
        "--sync", action="store_true", help="only the synchronous API and its two references"
    )
    parser.add_argument(
        "--large", action="store_true", help="only the large values (50 KB, 1 MB) and their peers"
    )
    parser.add_argument(
        "--scaling", action="store_true", help="only get and set at each group size"
    )
    parser.add_argument(
        "--open-records",
        type=int,
        help="records in the large store opened (default 100,000; --quick 1,000)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    parser.add_argument("--chart", type=Path, help="also draw a PNG chart here (needs matplotlib)")
    parser.add_argument("--json", type=Path, help="also keep rows and ratios here, for ranges")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("RAPID_DEV_STORAGE_TEST_POSTGRES", ""),
        help="a PostgreSQL DSN: adds PostgresBackend and plain asyncpg",
    )
    arguments = parser.parse_args()
    bench = Bench(QUICK if arguments.quick else FULL, Path(tempfile.mkdtemp(prefix="rds-bench-")))
    print(machine(), file=sys.stderr)
    try:
        if arguments.sync:
            await measure_sync(bench)
        elif arguments.scaling:
            await measure_scaling(bench)
        elif arguments.large:
            await measure_large(bench, arguments.quick)
        else:
            records = arguments.open_records or (1_000 if arguments.quick else 100_000)
            await measure_all(bench, arguments.postgres, arguments.quick, records)
    finally:
        shutil.rmtree(bench.root, ignore_errors=True)
    print(report(bench, markdown=False))
    if arguments.markdown:
        arguments.markdown.write_text(report(bench, markdown=True) + "\n", encoding="utf-8")
    if arguments.chart:
        chart(bench, arguments.chart)
    if arguments.json:
        arguments.json.write_text(json.dumps(as_json(bench), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
