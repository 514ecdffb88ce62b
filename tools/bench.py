"""Benchmark every backend beside the peers a user would pick instead, in one process and one run.

Prints median microseconds per operation and operations per second for each subject and
workload, then every target of the benchmark issue as a ratio measured in this same run (machines
are noisy: only side-by-side ratios mean anything). Latency workloads run in rounds that visit
every subject in turn, so a slow minute of the machine falls on all of them alike. ``--quick``
runs everything small, so CI proves the benchmark still works; it asserts no timings.

    python tools/bench.py [--quick] [--postgres DSN] [--markdown FILE] [--chart FILE.png]

With a PostgreSQL server (``--postgres``, or RAPID_DEV_STORAGE_TEST_POSTGRES as the tests use),
PostgresBackend runs beside plain asyncpg doing the same statements on the same table; the
tables live in a schema of their own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import inspect
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import aiosqlite
import asyncpg
import diskcache
import msgpack

try:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
except ImportError:  # only --chart needs it (the bench extra)
    pyplot = None

from rapid_dev_storage import (
    FileBackend,
    MemoryBackend,
    PostgresBackend,
    SQLiteBackend,
    Storage,
    StorageBackend,
)
from rapid_dev_storage._postgres import table_name as postgres_table
from rapid_dev_storage._sqlite import table_name

VALUE = {"name": "user 123", "settings": {"theme": "dark", "n": 3}, "tags": ["a", "b"]}


@dataclasses.dataclass
class Sizes:
    records: int  # records in the group that get, set and update work on
    operations: int  # timed operations per latency workload, over all rounds
    concurrent: int  # operations in total for the 64-task workloads
    scan_small: int
    scan_large: int


FULL = Sizes(
    records=10_000, operations=4_000, concurrent=3_200, scan_small=10_000, scan_large=100_000
)
QUICK = Sizes(records=300, operations=100, concurrent=256, scan_small=300, scan_large=1_000)
ROUNDS = 5

Operation = Callable[[], Any]  # a plain function, or one returning an awaitable


@dataclasses.dataclass
class Result:
    subject: str
    workload: str
    median_us: float
    ops_per_second: float
    note: str = ""


@dataclasses.dataclass
class Subject:
    name: str
    latency: dict[str, Operation] = dataclasses.field(default_factory=dict)
    concurrent: dict[str, Operation] = dataclasses.field(default_factory=dict)
    store: Storage | None = None  # ours: scanned and cleared too
    closers: list[Callable[[], Any]] = dataclasses.field(default_factory=list)


class Bench:
    """Collects results; each measurement helper adds one row."""

    def __init__(self, sizes: Sizes, root: Path) -> None:
        self.sizes = sizes
        self.root = root
        self.results: list[Result] = []
        self.keys = [f"user{index:06}" for index in range(sizes.records)]

    def add(self, subject: str, workload: str, samples_ns: list[int], note: str = "") -> None:
        median = statistics.median(samples_ns) / 1000
        self.results.append(Result(subject, workload, median, 1e6 / median, note))

    def add_throughput(
        self, subject: str, workload: str, count: int, seconds: float, note: str = ""
    ) -> None:
        self.results.append(Result(subject, workload, seconds / count * 1e6, count / seconds, note))

    def get(self, subject: str, workload: str) -> Result:
        for result in self.results:
            if (result.subject, result.workload) == (subject, workload):
                return result
        raise KeyError((subject, workload))

    def random_key(self) -> str:
        return random.choice(self.keys)

    def hot_key(self) -> str:
        """A key among the first 100: records an app reads again and again."""
        return random.choice(self.keys[:100])

    async def measure_latencies(self, subjects: list[Subject]) -> None:
        """Time every latency workload, in rounds that visit every subject in turn."""
        samples: dict[tuple[str, str], list[int]] = {}
        per_round = max(1, self.sizes.operations // ROUNDS)
        for _ in range(ROUNDS):
            for subject in subjects:
                for workload, operation in subject.latency.items():
                    timings = samples.setdefault((subject.name, workload), [])
                    for _ in range(per_round):
                        start = time.perf_counter_ns()
                        result = operation()
                        if inspect.isawaitable(result):
                            await result
                        timings.append(time.perf_counter_ns() - start)
        for (subject_name, workload), timings in samples.items():
            self.add(subject_name, workload, timings)

    async def measure_concurrency(self, subject: Subject) -> None:
        """Time 64 tasks doing ``concurrent`` operations between them, for each such workload."""
        each = self.sizes.concurrent // 64
        for workload, operation in subject.concurrent.items():

            async def worker(operation: Operation = operation) -> None:
                for _ in range(each):
                    await operation()

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(64)))
            seconds = time.perf_counter() - start
            self.add_throughput(subject.name, f"64 tasks {workload}", each * 64, seconds)


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Sample the resident set size every millisecond; yield a list that ends up [growth bytes]."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def rss() -> int:
        try:
            with open("/proc/self/statm", encoding="ascii") as statm:
                return int(statm.read().split()[1]) * page
        except OSError:
            return 0

    baseline, peak, stop = rss(), [rss()], threading.Event()

    def sample() -> None:
        while not stop.wait(0.001):
            peak[0] = max(peak[0], rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    growth = [0]
    try:
        yield growth
    finally:
        stop.set()
        sampler.join()
        growth[0] = max(peak[0], rss()) - baseline


# --- our backends -----------------------------------------------------------------------------

OURS = [
    ("file", "msgpack", "full"), ("file", "msgpack", "fast"), ("file", "json", "full"),
    ("file", "json", "fast"), ("sqlite", "msgpack", "full"), ("sqlite", "msgpack", "fast"),
    ("memory", "msgpack", "fast"),
]  # fmt: skip


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
    return Subject(name, operations, {"get": get, "set": put}, store)


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


# --- peers ------------------------------------------------------------------------------------


def raw_files(bench: Bench) -> Subject:
    """Raw synchronous file I/O on files laid out like FileBackend's."""
    directory = bench.root / "raw"
    directory.mkdir()
    data = msgpack.packb({"keys": ["k"], "value": VALUE})
    paths = [str(directory / f"{key}.msgpack") for key in bench.keys]
    for path in paths:
        Path(path).write_bytes(data)

    def read(path: str) -> Any:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            return msgpack.unpackb(os.read(descriptor, 1 << 16))
        finally:
            os.close(descriptor)

    def write(durable: bool) -> None:
        target = random.choice(paths)
        temp = f"{target}.{random.getrandbits(32)}.tmp"
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(descriptor, data)
        if durable:
            os.fsync(descriptor)
        os.close(descriptor)
        os.replace(temp, target)
        if durable:
            directory_descriptor = os.open(directory, os.O_RDONLY)
            os.fsync(directory_descriptor)
            os.close(directory_descriptor)

    return Subject(
        "raw files",
        {
            "get": lambda: read(random.choice(paths)),
            "get hot": lambda: read(random.choice(paths[:100])),
            "set full": lambda: write(True),
            "set fast": lambda: write(False),
        },
    )


def measure_raw_scans(bench: Bench) -> None:
    data = msgpack.packb({"keys": ["k"], "value": VALUE})
    for count in (bench.sizes.scan_small, bench.sizes.scan_large):
        scan_directory = bench.root / f"raw-scan{count}"
        scan_directory.mkdir()
        for index in range(count):
            (scan_directory / f"r{index:07}.msgpack").write_bytes(data)
        start = time.perf_counter()
        with peak_rss_growth() as growth, os.scandir(scan_directory) as entries:
            for entry in entries:
                descriptor = os.open(entry.path, os.O_RDONLY)
                try:
                    msgpack.unpackb(os.read(descriptor, 1 << 16))
                finally:
                    os.close(descriptor)
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


# --- report -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    label: str
    ours: tuple[str, str]  # (subject, workload); "{large}" in a workload is the large scan size
    reference: tuple[str, str]  # or ("budget", microseconds): a fixed bound
    bound: float
    higher_is_better: bool = False  # compare throughput instead of latency


FILE_FULL, FILE_FAST = "FileBackend msgpack full", "FileBackend msgpack fast"
SQLITE_FULL, SQLITE_FAST = "SQLiteBackend full", "SQLiteBackend fast"
SCAN_LARGE = "all_items {large}"
TARGETS = [
    Target("FileBackend get, warm <= 1.0x diskcache.Cache.get",
           (FILE_FULL, "get"), ("diskcache.Cache", "get"), 1.0),
    Target("(extra) FileBackend get of 100 hot records <= 1.0x diskcache.Cache.get",
           (FILE_FULL, "get hot"), ("diskcache.Cache", "get hot"), 1.0),
    Target("FileBackend set full <= 1.3x raw write+fsync+replace+dir fsync",
           (FILE_FULL, "set"), ("raw files", "set full"), 1.3),
    Target("FileBackend set fast <= 1.3x raw write+replace",
           (FILE_FAST, "set"), ("raw files", "set fast"), 1.3),
    Target("64 tasks set full: FileBackend throughput >= plain sqlite3 FULL",
           (FILE_FULL, "64 tasks set"), ("plain sqlite3 FULL", "set"), 1.0, higher_is_better=True),
    Target("all_items 100k: FileBackend <= 1.2x raw scandir+read+unpack",
           (FILE_FAST, SCAN_LARGE), ("raw files", SCAN_LARGE), 1.2),
    Target("SQLiteBackend get <= 1.3x plain sqlite3",
           (SQLITE_FULL, "get"), ("plain sqlite3 FULL", "get"), 1.3),
    Target("SQLiteBackend set full <= 1.3x plain sqlite3 FULL",
           (SQLITE_FULL, "set"), ("plain sqlite3 FULL", "set"), 1.3),
    Target("SQLiteBackend set fast <= 1.3x plain sqlite3 NORMAL",
           (SQLITE_FAST, "set"), ("plain sqlite3 NORMAL", "set"), 1.3),
    Target("SQLiteBackend scan 100k <= 1.3x plain sqlite3",
           (SQLITE_FAST, SCAN_LARGE), ("plain sqlite3 NORMAL", SCAN_LARGE), 1.3),
    Target("SQLiteBackend get faster than aiosqlite",
           (SQLITE_FULL, "get"), ("aiosqlite FULL", "get"), 1.0),
    Target("SQLiteBackend set faster than aiosqlite",
           (SQLITE_FULL, "set"), ("aiosqlite FULL", "set"), 1.0),
    Target("FileBackend update full <= 2x set full",
           (FILE_FULL, "update"), (FILE_FULL, "set"), 2.0),
    Target("FileBackend update fast <= 2x set fast",
           (FILE_FAST, "update"), (FILE_FAST, "set"), 2.0),
    Target("another process's write to callback, FileBackend: p50 <= 25 ms",
           ("FileBackend fast", "change seen, p50"), ("budget", "25000"), 1.0),
    Target("another process's write to callback, FileBackend: p95 <= 50 ms",
           ("FileBackend fast", "change seen, p95"), ("budget", "50000"), 1.0),
    Target("another process's write to callback, SQLiteBackend: p50 <= 25 ms",
           ("SQLiteBackend fast", "change seen, p50"), ("budget", "25000"), 1.0),
    Target("another process's write to callback, SQLiteBackend: p95 <= 50 ms",
           ("SQLiteBackend fast", "change seen, p95"), ("budget", "50000"), 1.0),
    Target("SQLiteBackend update full <= 2x set full",
           (SQLITE_FULL, "update"), (SQLITE_FULL, "set"), 2.0),
]  # fmt: skip
POSTGRES = "PostgresBackend msgpack full"
POSTGRES_TARGETS = [
    Target("PostgresBackend get <= 1.3x plain asyncpg (one connection)",
           (POSTGRES, "get"), ("asyncpg connection", "get"), 1.3),
    Target("PostgresBackend set <= 1.3x plain asyncpg (one connection)",
           (POSTGRES, "set"), ("asyncpg connection", "set"), 1.3),
    Target("(extra) PostgresBackend get <= 1.3x plain asyncpg (default pool)",
           (POSTGRES, "get"), ("asyncpg pool", "get"), 1.3),
    Target("(extra) PostgresBackend set <= 1.3x plain asyncpg (default pool)",
           (POSTGRES, "set"), ("asyncpg pool", "set"), 1.3),
    Target("(extra) 64 tasks set: PostgresBackend throughput >= plain asyncpg pool",
           (POSTGRES, "64 tasks set"), ("asyncpg pool", "64 tasks set"), 1.0,
           higher_is_better=True),
    Target("(extra) all_items 10k: PostgresBackend <= 1.3x asyncpg cursor",
           ("PostgresBackend msgpack fast", "all_items {small}"),
           ("asyncpg connection", "all_items {small}"), 1.3),
    Target("PostgresBackend update <= 2x set",
           (POSTGRES, "update"), (POSTGRES, "set"), 2.0),
    Target("another process's write to callback, PostgresBackend: p50 <= 25 ms",
           ("PostgresBackend fast", "change seen, p50"), ("budget", "25000"), 1.0),
    Target("another process's write to callback, PostgresBackend: p95 <= 50 ms",
           ("PostgresBackend fast", "change seen, p95"), ("budget", "50000"), 1.0),
]  # fmt: skip


def target_rows(bench: Bench) -> list[tuple[str, float, bool]]:
    rows = []
    sizes = {"large": f"{bench.sizes.scan_large:,}", "small": f"{bench.sizes.scan_small:,}"}
    with_postgres = any(r.subject.startswith("PostgresBackend") for r in bench.results)
    for target in TARGETS + (POSTGRES_TARGETS if with_postgres else []):
        ours = bench.get(target.ours[0], target.ours[1].format(**sizes))
        if target.reference[0] == "budget":  # an absolute bound, in microseconds
            ratio = ours.median_us / float(target.reference[1])
            rows.append((target.label, ratio, ratio <= target.bound))
            continue
        theirs = bench.get(target.reference[0], target.reference[1].format(**sizes))
        if target.higher_is_better:
            ratio = ours.ops_per_second / theirs.ops_per_second
            rows.append((target.label, ratio, ratio >= target.bound))
        else:
            ratio = ours.median_us / theirs.median_us
            rows.append((target.label, ratio, ratio <= target.bound))
    return rows


def machine() -> str:
    cpus = os.cpu_count()
    return (
        f"{platform.system()} {platform.release()}, {platform.machine()}, {cpus} CPUs, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def report(bench: Bench, markdown: bool) -> str:
    lines = []
    if markdown:
        lines += ["| subject | workload | median µs/op | ops/s | note |", "|---|---|---:|---:|---|"]
        lines += [
            f"| {r.subject} | {r.workload} | {r.median_us:,.1f} | {r.ops_per_second:,.0f} "
            f"| {r.note} |"
            for r in bench.results
        ]
        lines += ["", "| target | measured ratio | met |", "|---|---:|---|"]
        lines += [
            f"| {label} | {ratio:.2f}x | {'yes' if met else '**no**'} |"
            for label, ratio, met in target_rows(bench)
        ]
        return "\n".join(lines)
    lines.append(f"{'subject':28} {'workload':18} {'median us/op':>13} {'ops/s':>11}  note")
    for r in bench.results:
        numbers = f"{r.median_us:13,.1f} {r.ops_per_second:11,.0f}"
        lines.append(f"{r.subject:28} {r.workload:18} {numbers}  {r.note}")
    lines.append("")
    for label, ratio, met in target_rows(bench):
        lines.append(f"{'met ' if met else 'MISS'} {ratio:6.2f}x  {label}")
    return "\n".join(lines)


def chart(bench: Bench, path: Path) -> None:
    """Draw get and set latency of every subject that has them, ours in blue, peers in grey."""
    if pyplot is None:
        raise SystemExit("--chart needs matplotlib: pip install '.[bench]'")
    figure, axes = pyplot.subplots(1, 2, figsize=(13, 6))
    for axis, workload in zip(axes, ("get", "set"), strict=True):
        shown = (workload, f"{workload} full", f"{workload} fast")
        rows = [r for r in bench.results if r.workload in shown]
        names = [
            r.subject if r.workload == workload else f"{r.subject} ({r.workload})" for r in rows
        ]
        peers = ("raw", "plain", "disk", "aio", "asyncpg")
        colors = ["#999999" if name.startswith(peers) else "#3b7dd8" for name in names]
        axis.barh(names, [r.median_us for r in rows], color=colors)
        axis.set_xscale("log")
        axis.set_xlabel("median µs per operation (log scale; shorter is faster)")
        axis.set_title(workload)
        axis.invert_yaxis()
    figure.suptitle(f"rapid_dev_storage (blue) and peers (grey), one run: {machine()}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


async def open_subjects(
    bench: Bench, stack: contextlib.AsyncExitStack, server: str
) -> tuple[list[Subject], sqlite3.Connection]:
    """Open and fill ours and the peers; return them and the plain NORMAL sqlite3 connection."""
    ours = list(OURS)
    if server:
        ours += [("postgres", "msgpack", "full"), ("postgres", "json", "full"),
                 ("postgres", "msgpack", "fast")]  # fmt: skip
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
    hop, executor = thread_hop()
    stack.callback(executor.shutdown)
    subjects.append(hop)
    return subjects, connection


async def measure_all(bench: Bench, postgres: str, quick: bool) -> None:
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
        measure_raw_scans(bench)
        measure_plain_sqlite_scans(bench, plain_normal)  # on the fast file, filled by ours
        if server:
            await measure_plain_asyncpg_scans(bench, server)
        print("measuring change notifications...", file=sys.stderr)
        for kind in ("file", "sqlite", "postgres") if server else ("file", "sqlite"):
            await measure_notifications(bench, kind, 10 if quick else 60, server)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: proves it runs")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    parser.add_argument("--chart", type=Path, help="also draw a PNG chart here (needs matplotlib)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("RAPID_DEV_STORAGE_TEST_POSTGRES", ""),
        help="a PostgreSQL DSN: adds PostgresBackend and plain asyncpg",
    )
    arguments = parser.parse_args()
    bench = Bench(QUICK if arguments.quick else FULL, Path(tempfile.mkdtemp(prefix="rds-bench-")))
    print(machine(), file=sys.stderr)
    try:
        await measure_all(bench, arguments.postgres, arguments.quick)
    finally:
        shutil.rmtree(bench.root, ignore_errors=True)
    print(report(bench, markdown=False))
    if arguments.markdown:
        arguments.markdown.write_text(report(bench, markdown=True) + "\n", encoding="utf-8")
    if arguments.chart:
        chart(bench, arguments.chart)


if __name__ == "__main__":
    asyncio.run(main())
