"""What SQLiteBackend adds to the conformance suite: files, processes, namespaces, SQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest
from _turns import count_turns
from _worker import count_in_processes

from rapid_dev_storage import (
    CorruptRecordError,
    IncompatibleStoreError,
    InvalidNameError,
    LockTimeoutError,
    SQLiteBackend,
    Storage,
)
from rapid_dev_storage._sql_stores import STORES_TABLE
from rapid_dev_storage._sqlite_sql import Queries, table_name

WORKER = Path(__file__).with_name("_worker.py")


async def open_store(
    path: Path | str, name: str = "app", uid: int | str = 1, **options: object
) -> Storage:
    return Storage(await SQLiteBackend.create_backend_instance(path, name, uid, **options))  # type: ignore[arg-type]


async def test_update_is_atomic_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite3")
    assert await count_in_processes("sqlite", path, atomic=True, processes=4, each=100) == 400


async def test_unlocked_read_then_write_loses_updates(tmp_path: Path) -> None:
    """The control: without update(), the same workload loses increments, so the test can fail."""
    path = str(tmp_path / "db.sqlite3")
    assert await count_in_processes("sqlite", path, atomic=False, processes=4, each=100) < 400


async def test_two_instances_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await open_store(path) as first, await open_store(path) as second:
        await first.get_group("G")["k"].set_value(1)
        assert await second.get_group("G")["k"].get_value() == 1
        await second.get_group("G")["k"].set_value(2)
        assert await first.get_group("G")["k"].get_value() == 2
        await second.get_group("G").clear_group()
        assert await first.list_groups() == []


async def test_stores_share_a_file_without_mixing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    names = [
        ("main store", 42),
        ("main store", 43),
        ("main store", "42:x"),
        ("main store:42", "x"),
        ('evil"; DROP TABLE x; --', 1),
        ("[bracket]", "%3A"),
    ]
    for name, uid in names:
        async with await open_store(path, name, uid) as store:
            await store.get_group("G")["who"].set_value([name, str(uid)])
    for name, uid in names:
        async with await open_store(path, name, uid) as store:
            assert await store.get_group("G")["who"].get_value() == [name, str(uid)]
    with sqlite3.connect(path) as connection:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        rows = connection.execute(
            f"SELECT name, unique_identifier, table_name FROM {STORES_TABLE}"
        ).fetchall()
    connection.close()
    assert tables == {STORES_TABLE} | {table_name(n, str(u)) for n, u in names}
    assert len(rows) == len(names)


async def test_int_and_str_identifiers_name_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await open_store(path, "app", 7) as store:
        await store.get_group("G")["k"].set_value("seven")
    async with await open_store(path, "app", "7") as store:
        assert await store.get_group("G")["k"].get_value() == "seven"


@pytest.mark.parametrize(
    ("name", "uid"), [("", 1), (None, 1), ("app", None), ("app", 1.5), ("app", True), ("a\x00b", 1)]
)
async def test_bad_store_names_are_refused(tmp_path: Path, name: object, uid: object) -> None:
    with pytest.raises(InvalidNameError):
        await SQLiteBackend.create_backend_instance(tmp_path / "db", name, uid)  # type: ignore[arg-type]
    assert not (tmp_path / "db").exists()


async def test_reopen_keeps_data_and_codec(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await open_store(path, codec="json") as store:
        await store.get_group("G")["k"].set_value({"theme": "dark"})
    async with await open_store(path) as store:
        assert store.backend.codec.name == "json"
        assert await store.get_group("G")["k"].get_value() == {"theme": "dark"}
    with pytest.raises(IncompatibleStoreError, match="codec 'json', not 'msgpack'"):
        await open_store(path, codec="msgpack")
    with sqlite3.connect(path) as connection:
        connection.execute(f"UPDATE {STORES_TABLE} SET format_version = 99")
    connection.close()
    with pytest.raises(IncompatibleStoreError, match="format version 99"):
        await open_store(path)


async def test_json_values_are_queryable_in_sql(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await open_store(path, codec="json") as store:
        await store.get_group("USER")["u1", "settings"].set_value({"theme": "dark"})
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            f'SELECT group_name, k1, k2, key_count, json_extract(CAST(data AS TEXT), "$.theme") '
            f'FROM "{table_name("app", "1")}"'
        ).fetchall()
    connection.close()
    assert rows == [("USER", "u1", "settings", 2, "dark")]


async def test_corrupt_record_is_reported_and_others_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await open_store(path, codec="json") as store:
        group = store.get_group("G")
        await group["good"].set_value(1)
        await group["bad"].set_value(2)
        with sqlite3.connect(path) as connection:
            connection.execute(
                f"UPDATE \"{table_name('app', '1')}\" SET data = X'7b0a3c3c3c' WHERE k1 = 'bad'"
            )
        connection.close()
        with pytest.raises(CorruptRecordError) as caught:
            await group["bad"].get_value()
        assert caught.value.group == "G"
        assert caught.value.keys == ("bad",)
        assert str(path) in str(caught.value)
        assert await group["good"].get_value() == 1
        with pytest.raises(CorruptRecordError):
            _ = [item async for item in group.all_items()]
        await group["bad"].set_value(3)
        assert await group["bad"].get_value() == 3


async def test_writes_time_out_on_a_held_lock_while_reads_go_on(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await open_store(path, lock_timeout=0.2) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value("before")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LockTimeoutError, match="lock") as caught:
                await handle.set_value("blocked")
            assert (caught.value.location, caught.value.timeout) == (str(path), 0.2)
            with pytest.raises(LockTimeoutError):
                await handle.update(lambda current: "blocked")
            assert await handle.get_value() == "before"
        finally:
            other.execute("ROLLBACK")
            other.close()
        await handle.set_value("after")
        assert await handle.get_value() == "after"


@pytest.mark.parametrize("lock_timeout", [float("inf"), 1e9])
async def test_a_lock_timeout_beyond_sqlites_range_waits(
    tmp_path: Path, lock_timeout: float
) -> None:
    """SQLite's busy timeout is int milliseconds: inf or a billion seconds became 0 (no wait)."""
    path = tmp_path / "db.sqlite3"
    async with await open_store(path, lock_timeout=lock_timeout) as store:
        backend = store.backend
        assert isinstance(backend, SQLiteBackend)
        busy = backend._connections.writer.execute("PRAGMA busy_timeout").fetchone()[0]
        assert busy == 2**31 - 1  # milliseconds: 24.8 days
        handle = store.get_group("G")["k"]
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(handle.set_value("waited"))
        try:
            done, _ = await asyncio.wait([write], timeout=0.3)
            assert not done  # waiting for the lock, not refused at once
        finally:
            other.execute("ROLLBACK")
            other.close()
        await write
        assert await handle.get_value() == "waited"


async def test_durability_maps_to_synchronous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def synchronous(store: Storage) -> int:
        backend = store.backend
        assert isinstance(backend, SQLiteBackend)
        return int(backend._connections.writer.execute("PRAGMA synchronous").fetchone()[0])

    async with await open_store(tmp_path / "a.sqlite3") as store:
        assert synchronous(store) == 2  # FULL
    monkeypatch.setenv("RAPID_DEV_STORAGE_DURABILITY", "fast")
    async with await open_store(tmp_path / "b.sqlite3") as store:
        assert synchronous(store) == 1  # NORMAL
    async with await open_store(tmp_path / "c.sqlite3", durability="full") as store:
        assert synchronous(store) == 2
    monkeypatch.setenv("RAPID_DEV_STORAGE_DURABILITY", "sometimes")
    with pytest.raises(ValueError, match="RAPID_DEV_STORAGE_DURABILITY"):
        await open_store(tmp_path / "d.sqlite3")
    with pytest.raises(ValueError, match="durability must be one of"):
        await open_store(tmp_path / "d.sqlite3", durability="never")


def test_every_query_uses_the_primary_key_index() -> None:
    queries = Queries("rds:t:1")
    connection = sqlite3.connect(":memory:")
    connection.execute(queries.create)
    statements = [
        (queries.select, 7),
        (queries.delete, 7),
        *((sql, 1 + width) for width, sql in enumerate(queries.delete_prefix[1:], start=1)),
        *((sql, 1 + width + (6 - width) + 1) for width, sql in enumerate(queries.scan_page)),
    ]
    for sql, parameter_count in statements:
        plan = " ".join(
            row[3]
            for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", ("x",) * parameter_count)
        )
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sql, plan)
        assert "TEMP B-TREE" not in plan, (sql, plan)
    connection.close()


async def test_directory_is_created_and_closing_ends_the_worker(tmp_path: Path) -> None:
    before = threading.active_count()
    for index in range(20):
        store = await open_store(tmp_path / "nested" / "dir" / "db.sqlite3", "app", index)
        await store.get_group("G")["k"].set_value(index)
        await store.close()
    assert threading.active_count() == before


async def test_original_serializer_arguments(tmp_path: Path) -> None:
    def serializer(value: object) -> bytes:
        return json.dumps(value).encode()

    def deserializer(data: bytes) -> object:
        return json.loads(data)

    backend = await SQLiteBackend.create_backend_instance(
        ":memory:", "test", 1, serializer=serializer, deserializer=deserializer
    )
    async with Storage(backend) as store:
        await store.get_group("G")["k"].set_value({"a": [1, 2]})
        assert await store.get_group("G")["k"].get_value() == {"a": [1, 2]}
    with pytest.raises(ValueError, match="go together"):
        await SQLiteBackend.create_backend_instance(":memory:", "test", 1, serializer=serializer)
    with pytest.raises(ValueError, match="unknown codec 'yaml'"):
        await SQLiteBackend.create_backend_instance(":memory:", "test", 1, codec="yaml")


async def test_reads_run_inline_and_writes_on_the_worker(tmp_path: Path) -> None:
    """The bridge decision: a read never leaves the loop's thread; a write never runs on it."""
    async with await open_store(tmp_path / "db.sqlite3") as store:
        backend = store.backend
        assert isinstance(backend, SQLiteBackend)
        threads: dict[str, str] = {}
        loop_thread = threading.current_thread().name
        connection = backend._connections.writer

        def trace(statement: str) -> None:
            threads.setdefault(statement.split(maxsplit=1)[0], threading.current_thread().name)

        connection.set_trace_callback(trace)
        backend._connections.inline.set_trace_callback(trace)
        await store.get_group("G")["k"].set_value(1)
        assert await store.get_group("G")["k"].get_value() == 1
        await asyncio.sleep(0)
        assert threads["SELECT"] == loop_thread
        assert threads["INSERT"] != loop_thread


async def test_fast_writes_run_inline_and_queue_behind_a_lock_in_order(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await open_store(path, durability="fast", lock_timeout=5) as store:
        backend = store.backend
        assert isinstance(backend, SQLiteBackend)
        loop = asyncio.get_running_loop()
        loop_thread = threading.current_thread().name
        threads: list[str] = []
        on_the_worker = asyncio.Event()  # a write began on the worker (and waits for the lock)

        def trace(statement: str) -> None:
            if statement.startswith("INSERT"):
                threads.append(threading.current_thread().name)
                if threads[-1] != loop_thread:
                    loop.call_soon_threadsafe(on_the_worker.set)

        backend._connections.inline.set_trace_callback(trace)
        backend._connections.writer.set_trace_callback(trace)
        handle = store.get_group("G")["k"]
        await handle.set_value("inline")
        assert threads == [loop_thread]
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        # The first write meets the lock and waits on the worker; the second is made later, so
        # it must land later, even though the lock is free by the time it could run inline.
        first = asyncio.ensure_future(handle.set_value("first"))
        await asyncio.wait_for(on_the_worker.wait(), 10)
        other.execute("COMMIT")
        await handle.set_value("second")
        await first
        other.close()
        assert await handle.get_value() == "second"
        assert any(name != loop_thread for name in threads)  # the worker


@pytest.mark.parametrize("path", ["file", ":memory:"])
async def test_a_scan_over_pages_of_small_and_large_values_yields_each_once(
    tmp_path: Path, path: str
) -> None:
    """Pages of small values take the short way, a page holding a large one the long way."""
    store = await open_store(tmp_path / "db.sqlite3" if path == "file" else path)
    group = store.get_group("G")
    large = "x" * 300_000  # over LARGE_RECORD: NULL in the page, read by itself
    expected = {(f"{index:04}",): index for index in range(600)}  # three pages of 256
    for keys, value in expected.items():
        await group[keys].set_value(value)
    expected[("0300",)] = large
    await group["0300"].set_value(large)
    async with store:
        assert {keys: value async for keys, value in group.all_items()} == expected
        assert [keys async for keys, _ in group.all_items()] == sorted(expected)


async def test_durable_sets_waiting_for_the_worker_are_given_no_extra_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each durable set waits for the worker, so the loop had its round: no sleep(0) on top."""
    backend = await SQLiteBackend.create_backend_instance(
        tmp_path / "s.db", "s", 1, durability="full"
    )
    turns = count_turns(backend, monkeypatch)
    group = Storage(backend).get_group("g")
    # Well over TURN_EVERY of back-to-back sets: before, a turn every millisecond or so.
    for index in range(40):
        await group[f"k{index}"].set_value(index)
    assert turns == []
    for index in range(40):
        assert await group[f"k{index}"].get_value() == index
    await backend.close()


async def test_records_of_every_key_count_stay_distinct(tmp_path: Path) -> None:
    """Reads and writes use one statement per key count; unused slots and empty keys differ."""
    store = await open_store(tmp_path / "s.db")
    group = store.get_group("g")
    all_keys = [("a",), ("a", ""), ("a", "", ""), ("a", "b", "c", "d"), ("", "", "", "", "")]
    for index, keys in enumerate(all_keys):
        await group[keys].set_value(index)
    for index, keys in enumerate(all_keys):
        assert await group[keys].get_value() == index
    assert sorted([keys async for keys, _ in group.all_items()]) == sorted(all_keys)
    await store.close()
    connection = sqlite3.connect(tmp_path / "s.db")  # the rows as any reader sees them
    try:
        rows = connection.execute(
            f'SELECT k1, k2, k3, k4, k5, key_count FROM "{table_name("app", "1")}"'
        ).fetchall()
    finally:
        connection.close()
    expected = [(*keys, *[""] * (5 - len(keys)), len(keys)) for keys in all_keys]
    assert sorted(rows) == sorted(expected)
