"""The peers our backends are measured beside: raw files, plain sqlite3, diskcache, aiosqlite,
plain asyncpg and a bare thread round trip, each doing the same work with no library around it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import diskcache
import msgpack
from bench_harness import VALUE, Bench, Subject, peak_rss_growth

from rapid_dev_storage._postgres import table_name as postgres_table
from rapid_dev_storage._sqlite import table_name


def raw_files(bench: Bench) -> Subject:
    """Raw synchronous file I/O on files laid out like FileBackend's."""
    directory = bench.root / "raw"
    directory.mkdir()
    data = msgpack.packb({"keys": ["k"], "value": VALUE})
    paths = [str(directory / f"{key}.msgpack") for key in bench.keys]
    for path in paths:
        Path(path).write_bytes(data)

    return Subject(
        "raw files",
        {
            "get": lambda: raw_read(random.choice(paths)),
            "get hot": lambda: raw_read(random.choice(paths[:100])),
            "set full": lambda: raw_write(random.choice(paths), data, True),
            "set fast": lambda: raw_write(random.choice(paths), data, False),
        },
    )


def raw_read(path: str) -> Any:
    """Read and unpack a record file, as plain code would (no checks, no cache)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return msgpack.unpackb(os.read(descriptor, 1 << 16))
    finally:
        os.close(descriptor)


def raw_write(target: str, data: bytes, durable: bool) -> None:
    """Replace ``target`` as a write should: temp file, (fsync,) rename, (directory fsync)."""
    temp = f"{target}.{random.getrandbits(32)}.tmp"
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(descriptor, data)
    if durable:
        os.fsync(descriptor)
    os.close(descriptor)
    os.replace(temp, target)
    if durable:
        directory_descriptor = os.open(os.path.dirname(target), os.O_RDONLY)
        os.fsync(directory_descriptor)
        os.close(directory_descriptor)


def raw_scan(directory: Path) -> None:
    """Read and decode every file of ``directory``: scandir + open + read + close + unpack."""
    with os.scandir(directory) as entries:
        for entry in entries:
            descriptor = os.open(entry.path, os.O_RDONLY)
            try:
                msgpack.unpackb(os.read(descriptor, 1 << 16))
            finally:
                os.close(descriptor)


def measure_raw_scans(bench: Bench) -> None:
    data = msgpack.packb({"keys": ["k"], "value": VALUE})
    for count in (bench.sizes.scan_small, bench.sizes.scan_large):
        scan_directory = bench.root / f"raw-scan{count}"
        scan_directory.mkdir()
        for index in range(count):
            (scan_directory / f"r{index:07}.msgpack").write_bytes(data)
        start = time.perf_counter()
        with peak_rss_growth() as growth:
            raw_scan(scan_directory)
        seconds = time.perf_counter() - start
        note = f"RSS +{growth[0] / 1e6:.1f} MB"
        bench.add_throughput("raw files", f"all_items {count:,}", count, seconds, note)


def plain_sqlite(bench: Bench, synchronous: str, connection: sqlite3.Connection) -> Subject:
    """Plain sqlite3 on SQLiteBackend's own table and file: the same work, no library around it."""
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    table = '"' + table_name("bench", "1") + '"'
    unused = "k2 = '' AND k3 = '' AND k4 = '' AND k5 = '' AND key_count = 1"
    select = f"SELECT data FROM {table} WHERE group_name = ? AND k1 = ? AND {unused}"
    upsert = f"INSERT OR REPLACE INTO {table} VALUES (?, ?, '', '', '', '', 1, ?)"
    data = msgpack.packb(VALUE)

    def get(key: str) -> Any:
        row = connection.execute(select, ("bench", key)).fetchone()
        return msgpack.unpackb(row[0])

    def put() -> None:
        connection.execute(upsert, ("bench", bench.random_key(), data))

    return Subject(
        f"plain sqlite3 {synchronous}",
        {
            "get": lambda: get(bench.random_key()),
            "get hot": lambda: get(bench.hot_key()),
            "set": put,
        },
    )


def measure_plain_sqlite_scans(bench: Bench, connection: sqlite3.Connection) -> None:
    table = '"' + table_name("bench", "1") + '"'
    scan = (
        f"SELECT k1, k2, k3, k4, k5, key_count, data FROM {table} WHERE group_name = ? "
        "ORDER BY k1, k2, k3, k4, k5, key_count"
    )
    for count in (bench.sizes.scan_small, bench.sizes.scan_large):
        start = time.perf_counter()
        for row in connection.execute(scan, (f"scan{count}",)):
            msgpack.unpackb(row[-1])
        seconds = time.perf_counter() - start
        bench.add_throughput("plain sqlite3 NORMAL", f"all_items {count:,}", count, seconds)


def disk_cache(bench: Bench, cache: diskcache.Cache) -> Subject:
    for key in bench.keys:
        cache.set(key, VALUE)
    return Subject(
        "diskcache.Cache",
        {
            "get": lambda: cache.get(bench.random_key()),
            "get hot": lambda: cache.get(bench.hot_key()),
            "set": lambda: cache.set(bench.random_key(), VALUE),
        },
    )


async def aiosqlite_subject(bench: Bench, db: aiosqlite.Connection) -> Subject:
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    data = msgpack.packb(VALUE)
    await db.executemany("INSERT INTO kv VALUES (?, ?)", [(key, data) for key in bench.keys])

    async def get() -> Any:
        async with db.execute(
            "SELECT value FROM kv WHERE key = ?", (bench.random_key(),)
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return msgpack.unpackb(row[0])

    async def put() -> None:
        await db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (bench.random_key(), data))

    return Subject("aiosqlite FULL", {"get": get, "set": put})


def thread_hop() -> tuple[Subject, ThreadPoolExecutor]:
    """The round trip every off-loop operation pays: the floor under a write with an fsync."""
    executor = ThreadPoolExecutor(1)

    async def hop() -> None:
        await asyncio.get_running_loop().run_in_executor(executor, int)

    return Subject("thread round trip", {"empty call": hop}), executor


async def plain_asyncpg(bench: Bench, server: str) -> list[Subject]:
    """Plain asyncpg on PostgresBackend's own table: the same statements, no library around them.

    Two peers: a default pool (what plain asyncpg code writes: ``pool.fetchval``), whose release
    runs a reset query; and one connection, the floor any library on asyncpg stands on.
    """
    table = '"' + postgres_table("bench", "msgpack") + '"'
    unused = "k2 = '' AND k3 = '' AND k4 = '' AND k5 = '' AND key_count = 1"
    select = f"SELECT data FROM {table} WHERE group_name = $1 AND k1 = $2 AND {unused}"
    upsert = (
        f"INSERT INTO {table} VALUES ($1, $2, '', '', '', '', 1, $3) ON CONFLICT "
        "(group_name, k1, k2, k3, k4, k5, key_count) DO UPDATE SET data = EXCLUDED.data"
    )
    data = msgpack.packb(VALUE)
    pool = await asyncpg.create_pool(server, min_size=1, max_size=10)
    connection = await asyncpg.connect(server)

    def subject(name: str, runner: Any) -> Subject:
        async def get(key: str) -> Any:
            return msgpack.unpackb(await runner.fetchval(select, "bench", key))

        async def put() -> None:
            await runner.execute(upsert, "bench", bench.random_key(), data)

        operations = {
            "get": lambda: get(bench.random_key()),
            "get hot": lambda: get(bench.hot_key()),
            "set": put,
        }
        subject = Subject(name, operations, {"get": operations["get"], "set": put})
        subject.closers.append(runner.close)
        return subject

    # One connection cannot run 64 tasks' statements at once: it has no concurrent workloads.
    single = subject("asyncpg connection", connection)
    single.concurrent = {}
    return [subject("asyncpg pool", pool), single]


async def measure_plain_asyncpg_scans(bench: Bench, server: str) -> None:
    table = '"' + postgres_table("bench", "msgpack") + '"'
    connection = await asyncpg.connect(server)
    try:
        count = bench.sizes.scan_small
        start = time.perf_counter()
        async with connection.transaction():
            async for row in connection.cursor(
                f"SELECT k1, k2, k3, k4, k5, key_count, data FROM {table} WHERE group_name = $1",
                f"scan{count}",
                prefetch=500,
            ):
                msgpack.unpackb(row[-1])
        seconds = time.perf_counter() - start
        bench.add_throughput("asyncpg connection", f"all_items {count:,}", count, seconds)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def bench_schema(dsn: str) -> Any:
    """Yield a DSN whose tables go into a new schema, dropped afterwards."""
    schema = f"rds_bench_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in dsn else "?"
        yield f"{dsn}{separator}search_path={schema}"
    finally:
        await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        await connection.close()
