"""What PostgresBackend adds to the conformance suite: a server, processes, SQL."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from typing import AsyncIterator

import asyncpg
import pytest
from _postgres import (
    DSN,
    fresh_schema,
    next_change,
    open_store,
    requires_postgres,
    sql,
    wait_for_row,
)
from _worker import count_in_processes

from rapid_dev_storage import (
    IncompatibleStoreError,
    InvalidKeyError,
    LockTimeoutError,
    NoValue,
    PostgresBackend,
    StorageIOError,
)
from rapid_dev_storage._postgres_sql import LISTENERS_TABLE, MAX_KEY_BYTES, Queries, table_name
from rapid_dev_storage._sql_stores import STORES_TABLE


def test_the_package_imports_without_asyncpg() -> None:
    """asyncpg is the optional extra: without it everything but PostgresBackend works."""
    code = (
        "import sys; sys.modules['asyncpg'] = None\n"
        "import asyncio, rapid_dev_storage, rapid_dev_storage.cli\n"
        "from rapid_dev_storage import PostgresBackend, UnsupportedOperationError\n"
        "try:\n"
        "    asyncio.run(PostgresBackend.create_backend_instance('postgresql://x/y', 'a', 1))\n"
        "except UnsupportedOperationError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install 'rapid_dev_storage[postgres]'" in result.stdout


def test_the_command_line_without_asyncpg_names_the_extra() -> None:
    """A PostgreSQL URL on the command line without asyncpg: the extra to install, no traceback."""
    code = (
        "import sys; sys.modules['asyncpg'] = None\n"
        "from rapid_dev_storage.cli import main\n"
        "sys.argv = ['rapid-dev-storage', *sys.argv[1:]]\n"
        "main()\n"
    )
    for arguments in (
        ["ls", "postgresql://x@localhost/x"],
        ["get", "postgresql://x@h/x", "G", "k"],
    ):
        result = subprocess.run(
            [sys.executable, "-c", code, *arguments], check=False, capture_output=True, text=True
        )
        assert result.returncode != 0, arguments
        assert "pip install 'rapid_dev_storage[postgres]'" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr


async def test_a_dsn_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a DSN"):
        await PostgresBackend.create_backend_instance("/var/lib/data", "a", 1)
    with pytest.raises(ValueError, match="pool holds at least 1"):
        await PostgresBackend.create_backend_instance("postgresql://h/d", "a", 1, pool_size=0)


async def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StorageIOError, match=r"cannot connect to postgresql://u:\*\*\*@127"):
        await PostgresBackend.create_backend_instance(
            "postgresql://u:secret@127.0.0.1:1/db", "a", 1
        )


@pytest.fixture
async def dsn() -> str:
    """A schema of the test's own on the server: tables, functions and all."""
    return await fresh_schema()


@requires_postgres
async def test_update_is_atomic_across_processes(dsn: str) -> None:
    assert await count_in_processes("postgres", dsn, atomic=True, processes=4, each=100) == 400


@requires_postgres
async def test_unlocked_read_then_write_loses_updates(dsn: str) -> None:
    """The control: without update(), the same workload loses increments, so the test can fail."""
    assert await count_in_processes("postgres", dsn, atomic=False, processes=4, each=100) < 400


@requires_postgres
async def test_stores_are_namespaced_and_reopen_with_their_codec(dsn: str) -> None:
    async with await open_store(dsn, "app", 1, codec="json") as first:
        await first.get_group("G")["k"].set_value("one")
    async with await open_store(dsn, "app", "1") as again, await open_store(dsn, "app", 2) as other:
        assert again.backend.codec.name == "json"
        assert await again.get_group("G")["k"].get_value() == "one"
        assert await other.get_group("G")["k"].get_value() is NoValue
    with pytest.raises(IncompatibleStoreError, match="codec 'json'"):
        await PostgresBackend.create_backend_instance(dsn, "app", 1, codec="msgpack")
    rows = await sql(dsn, f"SELECT name, unique_identifier, codec FROM {STORES_TABLE} ORDER BY 2")
    assert [tuple(row) for row in rows] == [("app", "1", "json"), ("app", "2", "msgpack")]
    long_name = "A very long store name, " * 10
    assert len(table_name(long_name, "x").encode()) <= 63
    assert table_name(long_name, "x") != table_name(long_name, "y")


@requires_postgres
async def test_concurrent_creation_of_one_store_is_safe(dsn: str) -> None:
    backends = await asyncio.gather(
        *(PostgresBackend.create_backend_instance(dsn, "new", 1) for _ in range(5))
    )
    await backends[0].write_data("G", "k", value=1)
    assert [await backend.get_data("G", "k") for backend in backends] == [1] * 5
    for backend in backends:
        await backend.close()


@requires_postgres
async def test_json_values_are_jsonb_and_queryable_in_sql(dsn: str) -> None:
    async with await open_store(dsn, codec="json") as store:
        users = store.get_group("USER")
        await users["42", "settings"].set_value({"theme": "dark", "size": 3})
        await users["43", "settings"].set_value({"theme": "light", "size": -0.0, "big": 1e300})
        table = table_name("app", "1")
        rows = await sql(
            dsn,
            f"SELECT k1, data->>'theme', jsonb_typeof(data), raw IS NOT NULL FROM {table} "
            "WHERE group_name = 'USER' ORDER BY k1",
        )
        # -0.0 and 1e300 would come back altered from jsonb, so the JSON is also kept as written.
        assert [tuple(row) for row in rows] == [
            ("42", "dark", "object", False),
            ("43", "light", "object", True),
        ]
        value = await users["43", "settings"].get_value()
        assert str(value["size"]) == "-0.0"
        assert value["big"] == 1e300


@requires_postgres
async def test_keys_with_nul_are_stored_and_read_back(dsn: str) -> None:
    async with await open_store(dsn) as store:
        group = store.get_group("G\x00")
        keys = [("a\x00b",), ("a\uffff0b",), ("a\uffffb",), ("a\uffff",), ("plain", "x")]
        for index, key in enumerate(keys):
            await group[key].set_value(index)
        assert {k: v async for k, v in group.all_items()} == {k: i for i, k in enumerate(keys)}
        assert await store.list_groups() == ["G\x00"]
        rows = await sql(dsn, f"SELECT k1 FROM {table_name('app', '1')} WHERE k2 = 'x'")
        assert [row[0] for row in rows] == ["plain"]  # plain keys are stored as themselves


@requires_postgres
async def test_keys_beyond_the_index_limit_are_refused_and_nothing_is_lost(dsn: str) -> None:
    async with await open_store(dsn) as store:
        group = store.get_group("G")
        await group["k"].set_value("kept")
        too_long = "é" * (MAX_KEY_BYTES // 2)
        with pytest.raises(InvalidKeyError, match="PostgreSQL's index limit"):
            await group[too_long].set_value(1)
        with pytest.raises(InvalidKeyError, match="index limit"):
            await group[too_long].update(lambda current: 1)
        assert await group[too_long].get_value() is NoValue
        assert {k: v async for k, v in group.all_items()} == {("k",): "kept"}
        # The longest keys that fit, all control characters: JSON would escape each in six
        # bytes, past NOTIFY's 8000, so the notification carries them base64-encoded.
        longest = "\x01" * (MAX_KEY_BYTES - 1)
        async with await open_store(dsn) as other, other.watch("G") as changes:
            await group[longest].set_value("fits")
            change = await asyncio.wait_for(changes.__anext__(), 5)
        assert (change.keys, change.value, change.origin) == ((longest,), "fits", "external")


@requires_postgres
async def test_sql_edits_by_hand_arrive(dsn: str) -> None:
    async with await open_store(dsn, codec="json") as store:
        group = store.get_group("G")
        for index in range(5):
            await group[f"k{index}"].set_value(index)
        table = table_name("app", "1")
        async with store.watch("G") as changes:
            await sql(dsn, f"""UPDATE {table} SET data = '"edited"' WHERE k1 = 'k1'""")
            change = await next_change(changes)
            assert (change.keys, change.value, change.origin) == (("k1",), "edited", "external")
            await sql(dsn, f"UPDATE {table} SET k1 = 'renamed' WHERE k1 = 'k2'")
            seen = {(c.kind, c.keys) for c in [await next_change(changes) for _ in range(2)]}
            assert seen == {("cleared", ("k2",)), ("set", ("renamed",))}
            # From a session with the default search_path, naming the schema itself.
            schema = dsn.rpartition("search_path=")[2]
            await sql(DSN, f"DELETE FROM {schema}.{table} WHERE group_name = 'G'")
            cleared = {(await next_change(changes)).keys for _ in range(5)}
            assert cleared == {("k0",), ("k1",), ("renamed",), ("k3",), ("k4",)}


@requires_postgres
async def test_writes_notify_only_while_someone_watches(dsn: str) -> None:
    """A NOTIFY serialises commits, so triggers send one only to registered listeners."""
    listeners = f"SELECT count(*) FROM {LISTENERS_TABLE}"
    async with await open_store(dsn) as store:
        assert (await sql(dsn, listeners))[0][0] == 0
        async with store.watch() as changes, await open_store(dsn) as other:
            assert (await sql(dsn, listeners))[0][0] == 1
            await other.get_group("G")["k"].set_value(1)
            assert (await next_change(changes)).value == 1
        assert (await sql(dsn, listeners))[0][0] == 0
        # A watcher that vanished without unregistering is swept by the next one.
        await sql(
            dsn,
            f"INSERT INTO {LISTENERS_TABLE} VALUES ($1, 999999)",
            store.backend._queries.channel,
        )
        async with store.watch():
            assert (await sql(dsn, f"SELECT pid FROM {LISTENERS_TABLE}"))[0][0] != 999999
            assert (await sql(dsn, listeners))[0][0] == 1


WAITING_FOR_A_LOCK = (
    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
    "datname = current_database()"
)


@contextlib.asynccontextmanager
async def rows_locked(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold a row lock on every record of store ('app', 1), as another machine's transaction."""
    holder = await asyncpg.connect(dsn)
    try:
        async with holder.transaction():
            await holder.execute(f"SELECT 1 FROM {table_name('app', '1')} FOR UPDATE")
            yield holder
    finally:
        await holder.close()


@requires_postgres
async def test_a_held_row_lock_times_out_as_lock_timeout_error(dsn: str) -> None:
    async with await open_store(dsn, lock_timeout=0.2) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        async with rows_locked(dsn):
            with pytest.raises(LockTimeoutError, match="lock_timeout") as caught:
                await handle.update(lambda current: current + 1)
            assert caught.value.timeout == 0.2
            assert caught.value.location == store.backend.location
            assert await handle.get_value() == 1  # reads never wait for row locks
        assert await handle.update(lambda current: current + 1) == 2


@requires_postgres
async def test_a_statement_cancelled_mid_flight_leaves_the_store_usable(dsn: str) -> None:
    async with await open_store(dsn) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        async with rows_locked(dsn) as holder:
            waiting = asyncio.ensure_future(handle.set_value(2))
            await wait_for_row(holder, WAITING_FOR_A_LOCK)  # the set waits for the row lock
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # The connection goes back to the pool once the server cancelled the statement,
            # still waiting for the lock: only then is the lock released.
            backend = store.backend
            assert isinstance(backend, PostgresBackend)
            await asyncio.gather(*backend._statements.releasing)
        assert await handle.get_value() == 1  # the cancelled write never landed
        await asyncio.gather(*(store.get_group("G")[str(i)].set_value(i) for i in range(20)))
        assert await handle.update(lambda current: current + 1) == 2
        assert len([keys async for keys, _ in store.get_group("G").all_items()]) == 21


@requires_postgres
async def test_durability_maps_to_synchronous_commit(dsn: str) -> None:
    for durability, expected in (("full", "on"), ("fast", "off")):
        backend = await PostgresBackend.create_backend_instance(
            dsn, "app", 1, durability=durability
        )
        try:
            assert (
                await backend._statements.statement("fetchval", "SHOW synchronous_commit")
                == expected
            )
        finally:
            await backend.close()


@requires_postgres
async def test_every_query_uses_the_primary_key_index(dsn: str) -> None:
    async with await open_store(dsn) as store:
        group = store.get_group("G")
        await asyncio.gather(
            *(group[str(i), str(j)].set_value(j) for i in range(50) for j in range(40))
        )
        table = table_name("app", "1")
        await sql(dsn, f"ANALYZE {table}")
        queries = Queries(table, jsonb=False, channel="unused")
        record = ("G", "1", "2", "", "", "", 2)
        plans = {
            "select": (queries.select, record),
            "swap": (queries.swap_update, (*record, b"x", 1, b"y", 2)),
            "delete prefix": (queries.delete_prefix[1], ("G", "7")),
            "scan page": (queries.scan_page[1], ("G", "7", "", "", "", "", 0)),
            "groups": (queries.groups, ()),
        }
        for label, (statement, params) in plans.items():
            rows = await sql(dsn, f"EXPLAIN {statement}", *params)
            plan = "\n".join(row[0] for row in rows)
            assert "_pkey" in plan, f"{label}:\n{plan}"
            assert "Seq Scan" not in plan, f"{label}:\n{plan}"
