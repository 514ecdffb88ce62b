"""PostgresBackend on an operator's bad day: terminated backends, restarts, least-privilege roles,
hostile schema names, TRUNCATE by hand. Everything against the real server."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
import pytest
from _postgres import (
    DSN,
    Progress,
    cluster,
    fresh_schema,
    next_change,
    open_store,
    requires_cluster,
    requires_postgres,
    sql,
    wait_for_row,
)

from rapid_dev_storage import (
    NoValue,
    ReadOnlyStoreError,
    Storage,
    StorageIOError,
)
from rapid_dev_storage._postgres import list_stores, table_name

WORKER = Path(__file__).with_name("_worker.py")

TERMINATE_OTHERS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> "
    "pg_backend_pid() AND backend_type = 'client backend' AND datname = current_database()"
)


@pytest.fixture
async def dsn() -> str:
    return await fresh_schema()


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def dsn_for(schema: str, user: str | None = None) -> str:
    """The test server's DSN with ``search_path`` set to ``schema`` (quoted), as ``user``."""
    parts = urllib.parse.urlsplit(DSN)
    if user is not None:
        parts = parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}")
    query = urllib.parse.urlencode({"search_path": quoted(schema)})
    return urllib.parse.urlunsplit(parts._replace(query=query))


# --- an update whose connection was lost ---------------------------------------------------------


@requires_postgres
async def test_a_lost_update_is_not_taken_for_landed_when_another_wrote_the_same_value(
    dsn: str,
) -> None:
    """Another session holds the row lock, terminates our backend, then commits 5 -> 6 itself.

    The record then holds the 6 our update meant to write: only the row's version tells that
    ours did not land. The increment is applied again, so the count is 7, not 6.
    """
    async with await open_store(dsn, codec="json") as store:
        counter = store.get_group("G")["counter"]
        await counter.set_value(5)
        table = table_name("app", "1")
        other = await asyncpg.connect(dsn)
        try:
            async with other.transaction():
                await other.execute(f"UPDATE {table} SET data = '6' WHERE k1 = 'counter'")
                updating = asyncio.ensure_future(counter.update(lambda current: current + 1))
                waiting = await wait_for_row(
                    other,
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                    "datname = current_database()",
                )
                await other.execute("SELECT pg_terminate_backend($1)", waiting["pid"])
            assert await updating == 7
        finally:
            await other.close()
        assert await counter.get_value() == 7


@requires_postgres
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_increments_count_exactly_under_repeated_backend_termination(dsn: str) -> None:
    """4 processes x 200 increments while every backend is terminated every 50 ms (100 times).

    Each increment either landed and said so, or raised StorageIOError (it could not tell):
    the count lies between the two sums, and without a failure it is exact.
    """
    async with await open_store(dsn, "shared", 1, durability="fast") as store:
        await store.get_group("G")["counter"].set_value(0)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "increment-counting",
            "postgres",
            dsn,
            "200",
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert await worker.stdout.readline() == b"ready\n"
    done = asyncio.ensure_future(asyncio.gather(*(worker.communicate() for worker in workers)))
    terminations = terminated = 0
    admin = await asyncpg.connect(DSN)
    try:
        while not done.done() and terminations < 100:  # about 5 s of terminations at most
            terminated += await admin.fetchval(TERMINATE_OTHERS)
            terminations += 1
            await asyncio.wait([done], timeout=0.05)
    finally:
        await admin.close()
    outputs = await done
    assert [worker.returncode for worker in workers] == [0] * 4
    acknowledged = failed = 0
    for stdout, _ in outputs:
        landed, unknown = map(int, stdout.split())
        acknowledged += landed
        failed += unknown
    async with await open_store(dsn, "shared", 1) as store:
        count = await store.get_group("G")["counter"].get_value()
    rounds = f"{terminations} rounds, {terminated} backends terminated"
    print(f"{rounds}: {acknowledged} acknowledged, {failed} unknown, counted {count}")
    assert acknowledged + failed == 800
    assert terminated > 0
    assert acknowledged <= count <= acknowledged + failed


# --- every lost connection retried ----------------------------------------------------------------


async def churn(
    store: Storage, stop: asyncio.Event, errors: list[BaseException], progress: Progress
) -> dict[str, Any]:
    """Sets, reads and clears on 4 tasks until ``stop``; return what each key should hold.

    ``progress`` counts each round of a task (its write and read, or its error).
    """
    group = store.get_group("G")
    expected: dict[str, Any] = {}

    async def work(task: int) -> None:
        sequence = 0
        while not stop.is_set():
            sequence += 1
            key = f"t{task}-{sequence % 10}"
            try:
                if sequence % 7 == 0:
                    await group[key].clear_value()
                    expected[key] = NoValue
                else:
                    await group[key].set_value(sequence)
                    expected[key] = sequence
                assert await group[key].get_value() == expected[key]
                if sequence % 50 == 0:
                    await group.clear_prefix(f"t{task}-9")
                    expected[f"t{task}-9"] = NoValue
            except StorageIOError as exc:
                errors.append(exc)
            progress.add()

    await asyncio.gather(*(work(task) for task in range(4)))
    return expected


async def check_stored(store: Storage, expected: dict[str, Any]) -> None:
    group = store.get_group("G")
    for key, value in expected.items():
        assert await group[key].get_value() == value, key


@requires_postgres
async def test_reads_sets_and_clears_survive_terminated_backends(dsn: str) -> None:
    errors: list[BaseException] = []
    stop = asyncio.Event()
    progress = Progress()
    async with await open_store(dsn) as store:
        working = asyncio.ensure_future(churn(store, stop, errors, progress))
        admin = await asyncpg.connect(dsn)
        try:
            for _ in range(20):
                await progress.beyond(20)  # the writers got on between terminations
                await admin.fetchval(TERMINATE_OTHERS)
        finally:
            await admin.close()
        stop.set()
        expected = await working
        await check_stored(store, expected)
    assert errors == []


@requires_postgres
@requires_cluster
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_reads_sets_and_clears_survive_ten_fast_restarts(dsn: str) -> None:
    errors: list[BaseException] = []
    stop = asyncio.Event()
    progress = Progress()
    async with await open_store(dsn, "restart", 1) as store:
        working = asyncio.ensure_future(churn(store, stop, errors, progress))
        for _ in range(10):
            await cluster("restart")
            await progress.beyond(20)  # writes go on between restarts
        stop.set()
        expected = await working
        await check_stored(store, expected)
    assert errors == []


# --- a server that crashes, restarts or stops -----------------------------------------------------


@requires_postgres
@requires_cluster
@pytest.mark.slow  # a crash restart replays the WAL: 1.4 s on a quiet machine, up to 9 s loaded
@pytest.mark.timeout(180)
async def test_acknowledged_writes_survive_a_server_crash_and_restart(dsn: str) -> None:
    acknowledged: dict[tuple[str, ...], int] = {}
    writes = updates = 0
    stop = asyncio.Event()
    progress = Progress()  # acknowledged sets and updates
    async with await open_store(dsn, "restart", 1) as store:
        group = store.get_group("G")

        async def write(writer: int) -> None:
            nonlocal writes
            sequence = 0
            while not stop.is_set():
                sequence += 1
                keys = (f"w{writer}", str(sequence % 50))
                await group[keys].set_value(sequence)
                acknowledged[keys] = sequence
                writes += 1
                progress.add()

        async def increment() -> None:
            nonlocal updates
            while not stop.is_set():
                await group["counter"].update(lambda current: (current or 0) + 1)
                updates += 1
                progress.add()

        tasks = [asyncio.ensure_future(write(n)) for n in range(4)]
        tasks += [asyncio.ensure_future(increment()) for _ in range(2)]
        await progress.until(lambda: len(acknowledged) == 200 and updates > 0)
        before, writes_before, updates_before = dict(acknowledged), writes, updates
        await cluster("restart", "--immediate")  # as after a crash: recovery replays the WAL
        # Sets and updates acknowledged after the restart.
        await progress.until(lambda: writes > writes_before + 200 and updates > updates_before + 10)
        stop.set()
        await asyncio.gather(*tasks)
    assert len(acknowledged) == 200
    assert sum(acknowledged.values()) > sum(before.values())  # writes went on after the restart
    async with await open_store(dsn, "restart", 1) as reopened:
        stored = {keys: value async for keys, value in reopened.get_group("G").all_items()}
    assert stored.pop(("counter",)) == updates
    assert stored == acknowledged


@requires_postgres
@requires_cluster
@pytest.mark.timeout(180)
async def test_watchers_listen_again_after_a_restart(dsn: str) -> None:
    async with (
        await open_store(dsn, "restart", 1) as writer,
        await open_store(dsn, "restart", 1) as watcher,
        watcher.watch("G") as changes,
    ):
        await writer.get_group("G")["k"].set_value("before")
        assert (await next_change(changes)).value == "before"
        await cluster("restart")
        listener = watcher.backend._listener  # type: ignore[attr-defined]
        try:
            await asyncio.wait_for(listener.relistened.wait(), 30)
        except asyncio.TimeoutError:
            pytest.fail("the watcher never listened again")
        # Writes made once it listens again reach the watcher.
        await writer.get_group("G")["k"].set_value("after")
        change = await next_change(changes)
        assert change.value.startswith("after")


@requires_postgres
@requires_cluster
@pytest.mark.timeout(180)
async def test_an_unreachable_server_fails_after_reconnect_timeout(dsn: str) -> None:
    async with await open_store(dsn, "restart", 1, reconnect_timeout=0.5) as store:
        await store.get_group("G")["k"].set_value(1)
        await cluster("stop")
        try:
            with pytest.raises(StorageIOError, match=r"did not answer for 0\.5 s"):
                await store.get_group("G")["k"].get_value()
        finally:
            await cluster("start")
        assert await store.get_group("G")["k"].get_value() == 1


# --- least-privilege roles ------------------------------------------------------------------------

STORES = "rapid_dev_storage_stores"
LISTENERS = "rapid_dev_storage_listeners"


async def admin(statement: str, dsn: str = DSN) -> None:
    """Run ``statement`` (several, even) as the test server's superuser (or ``dsn``'s role)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def new_role() -> AsyncIterator[str]:
    """A login role of the test's own, dropped with everything it owns afterwards."""
    name = f"rds_role_{uuid.uuid4().hex[:12]}"
    await admin(f"CREATE ROLE {name} LOGIN")
    try:
        yield name
    finally:
        await admin(f"DROP OWNED BY {name}; DROP ROLE {name}")


def schema_of(dsn: str) -> str:
    return urllib.parse.unquote(dsn.rpartition("search_path=")[2])


@requires_postgres
async def test_a_role_that_may_only_read_opens_an_existing_store(dsn: str) -> None:
    schema = schema_of(dsn)
    table = table_name("app", "1")
    async with await open_store(dsn, codec="json") as owner:
        await owner.get_group("G")["k"].set_value({"a": 1})
        await owner.get_group("H")["n"].set_value(1)
    async with new_role() as reader:
        await admin(
            f"GRANT USAGE ON SCHEMA {schema} TO {reader}; "
            f"GRANT SELECT ON {schema}.{STORES}, {schema}.{table} TO {reader}"
        )
        with pytest.raises(StorageIOError, match=f"role '{reader}' may not create store"):
            await open_store(dsn_for(schema, reader), "missing", 1)
        async with await open_store(dsn_for(schema, reader)) as store:
            assert store.backend.read_only
            group = store.get_group("G")
            assert await group["k"].get_value() == {"a": 1}
            assert [item async for item in group.all_items()] == [(("k",), {"a": 1})]
            assert await store.list_groups() == ["G", "H"]
            refused = f"may only read table '{table}': GRANT INSERT, UPDATE, DELETE ON it TO "
            with pytest.raises(ReadOnlyStoreError, match=refused):
                await group["k"].set_value(2)
            with pytest.raises(ReadOnlyStoreError, match=refused):
                await group["k"].update(lambda current: current)
            with pytest.raises(ReadOnlyStoreError, match=refused):
                await group.clear_group()
            with pytest.raises(StorageIOError, match=f"SELECT, INSERT, DELETE ON {LISTENERS}"):
                async with store.watch():
                    pass
            await admin(f"GRANT SELECT, INSERT, DELETE ON {schema}.{LISTENERS} TO {reader}")
            async with store.watch("G") as changes, await open_store(dsn) as writer:
                await writer.get_group("G")["k"].set_value({"a": 2})
                assert (await next_change(changes)).value == {"a": 2}
        # A role that may insert but not update: a set needs both, and says so.
        await admin(f"GRANT INSERT ON {schema}.{table} TO {reader}")
        async with await open_store(dsn_for(schema, reader)) as store:
            assert not store.backend.read_only
            with pytest.raises(ReadOnlyStoreError, match="permission denied"):
                await store.get_group("G")["new"].set_value(1)


@requires_postgres
async def test_two_roles_make_their_own_stores_in_one_schema(dsn: str) -> None:
    """The first role makes the shared tables and functions; the second only needs grants."""
    schema = schema_of(dsn)
    async with new_role() as first, new_role() as second:
        await admin(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {first}, {second}")
        async with await open_store(dsn_for(schema, first), "one", 1) as store:
            await store.get_group("G")["k"].set_value("first's")
        # What docs/backends.md tells the owner of the shared tables to grant a second role.
        connection = await asyncpg.connect(dsn_for(schema, first))
        try:
            await connection.execute(
                f"GRANT SELECT, INSERT ON {STORES} TO {second}; "
                f"GRANT SELECT, INSERT, DELETE ON {LISTENERS} TO {second}"
            )
        finally:
            await connection.close()
        second_dsn = dsn_for(schema, second)
        async with (
            await open_store(second_dsn, "two", 1) as store,
            await open_store(second_dsn, "two", 1) as watcher,
            watcher.watch("G") as changes,
        ):
            handle = store.get_group("G")["k"]
            await handle.set_value(1)
            assert await handle.update(lambda current: current + 1) == 2
            while (change := await next_change(changes)).value != 2:  # 1 and 2 may come as one
                assert change.value == 1
        async with await open_store(dsn_for(schema, first), "one", 1) as store:
            assert await store.get_group("G")["k"].get_value() == "first's"
        assert await list_stores(dsn) == [("one", "1"), ("two", "1")]


# --- hostile schema names -------------------------------------------------------------------------

HOSTILE_SCHEMAS = [
    "dollar$$quoted",
    "$$",
    "$rds$",
    'double"quote',
    "single'quote",
    "semi;colon DROP TABLE x; --",
    "with space",
    "Ünïcödé ✓",
    "back\\slash",
    "$1",
    "UPPER",
]


@requires_postgres
@pytest.mark.parametrize("hostile", HOSTILE_SCHEMAS)
async def test_hostile_schema_names_work(hostile: str) -> None:
    schema = f"{hostile} {uuid.uuid4().hex[:8]}"
    await admin(f"CREATE SCHEMA {quoted(schema)}")
    dsn = dsn_for(schema)
    try:
        async with await open_store(dsn, codec="json") as store, await open_store(dsn) as other:
            group = store.get_group("G")
            await group["k"].set_value(1)
            assert await group["k"].update(lambda current: current + 1) == 2
            async with other.watch("G") as changes:
                await group["k"].set_value(3)
                change = await next_change(changes)
                assert (change.keys, change.value, change.origin) == (("k",), 3, "external")
                await sql(dsn, f"TRUNCATE {table_name('app', '1')}")
                change = await next_change(changes)
                assert (change.kind, change.keys) == ("cleared", ("k",))
        async with await open_store(dsn) as again:
            assert again.backend.codec.name == "json"
            assert await again.get_group("G")["k"].get_value() is NoValue
        assert await list_stores(dsn) == [("app", "1")]
        rows = await sql(DSN, "SELECT nspname FROM pg_namespace WHERE nspname = $1", schema)
        assert [row[0] for row in rows] == [schema]  # nothing ran that was not meant to
    finally:
        await admin(f"DROP SCHEMA {quoted(schema)} CASCADE")


# --- TRUNCATE, and stores of the previous version ---------------------------------------------


@requires_postgres
async def test_truncate_by_hand_reports_every_record_cleared(dsn: str) -> None:
    async with await open_store(dsn) as store:
        group = store.get_group("G")
        keys = [("a",), ("b", "c"), ("\x00nul",)]
        for index, key in enumerate(keys):
            await group[key].set_value(index)
        await sql(dsn, f"TRUNCATE {table_name('app', '1')}")  # unwatched: nothing to report
        for index, key in enumerate(keys):
            await group[key].set_value(index)
        async with store.watch() as changes:
            await sql(dsn, f"TRUNCATE {table_name('app', '1')}")
            seen = {(c.kind, c.group, c.keys) for c in [await next_change(changes) for _ in keys]}
        assert seen == {("cleared", "G", key) for key in keys}


@requires_postgres
async def test_a_store_of_the_previous_version_is_upgraded_in_place(dsn: str) -> None:
    """Tables made before versions and the TRUNCATE trigger gain them when their owner opens."""
    schema = schema_of(dsn)
    table = table_name("app", "1")
    async with await open_store(dsn) as store:
        await store.get_group("G")["n"].set_value(1)
    await admin(
        f"ALTER TABLE {table} DROP COLUMN version, DROP COLUMN history; "
        f"DROP TRIGGER {table}_trunc ON {table}; DROP FUNCTION rapid_dev_storage_truncate_v1()",
        dsn,
    )
    async with new_role() as reader:
        await admin(
            f"GRANT USAGE ON SCHEMA {schema} TO {reader}; GRANT SELECT, INSERT, UPDATE, DELETE "
            f"ON {schema}.{STORES}, {schema}.{table} TO {reader}"
        )
        async with await open_store(dsn_for(schema, reader)) as store:
            assert await store.get_group("G")["n"].get_value() == 1
            with pytest.raises(ReadOnlyStoreError, match="older rapid_dev_storage"):
                await store.get_group("G")["n"].set_value(2)
    async with await open_store(dsn) as store, store.watch() as changes:
        counter = store.get_group("G")["n"]
        assert await counter.update(lambda current: current + 1) == 2
        assert (await next_change(changes)).value == 2
        await sql(dsn, f"TRUNCATE {table}")
        assert (await next_change(changes)).kind == "cleared"
    rows = await sql(dsn, f"SELECT version IS NOT NULL FROM {table}")
    assert rows == []


# --- the watcher's blind window across a restart --------------------------------------------------


@requires_postgres
@requires_cluster
@pytest.mark.timeout(120)
async def test_a_watcher_misses_only_writes_between_a_restart_and_listening_again(
    dsn: str,
) -> None:
    """Two writers write new records through a fast restart; another store watches.

    Writes committed while the server shuts down (their notifications die with the listener's
    backend) and those that began before the watcher listens again may be missed; every other
    write arrives.
    """
    loop = asyncio.get_running_loop()
    acknowledged: dict[str, float] = {}
    started: dict[str, float] = {}
    seen: set[str] = set()
    stop = asyncio.Event()
    progress = Progress()  # acknowledged writes
    async with (
        await open_store(dsn, "restart", 1, durability="fast") as writer,
        await open_store(dsn, "restart", 1) as watcher,
        watcher.watch("G") as changes,
    ):
        arrived = asyncio.Event()

        async def collect() -> None:
            async for change in changes:
                seen.add(change.keys[0])
                arrived.set()

        async def write(task: int) -> None:
            sequence = 0
            while not stop.is_set():
                sequence += 1
                key = f"{task}-{sequence}"
                started[key] = loop.time()
                await writer.get_group("G")[key].set_value(sequence)
                acknowledged[key] = loop.time()
                progress.add()

        collecting = asyncio.ensure_future(collect())
        writing = [asyncio.ensure_future(write(task)) for task in range(2)]
        await progress.beyond(20)  # writes before the restart
        restart_began = loop.time()
        await cluster("restart")
        listener = watcher.backend._listener  # type: ignore[attr-defined]
        await asyncio.wait_for(listener.relistened.wait(), 30)
        ((lost, listening_again),) = listener.blind
        # Writes begun after it listens again, acknowledged.
        await progress.until(
            lambda: sum(started[key] > listening_again for key in acknowledged) >= 20
        )
        stop.set()
        await asyncio.gather(*writing)
        # Every write begun once the watcher listened again must arrive (in commit order, which
        # two connections may acknowledge in another order: wait for all of them, not the last).
        due = {key for key in acknowledged if started[key] > listening_again}
        with contextlib.suppress(asyncio.TimeoutError):
            while not due <= seen:
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 5)
        collecting.cancel()
    missed = sorted(acknowledged[key] for key in acknowledged if key not in seen)
    window = f"listener lost +{lost - restart_began:.3f} s, listening again "
    window += f"+{listening_again - restart_began:.3f} s"
    outcome = f"{len(acknowledged)} writes, {len(missed)} missed"
    if missed:
        outcome += f", acknowledged +{missed[0] - restart_began:.3f} to "
        outcome += f"+{missed[-1] - restart_began:.3f} s"
    print(f"restart began +0; {window}; {outcome}")
    # A write whose statement began before the watcher registered again found no listener.
    assert all(
        acknowledged[key] >= restart_began and started[key] <= listening_again
        for key in acknowledged
        if key not in seen
    )
