"""Change notifications on every backend: own writes, other processes, hand edits, bulk changes."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import watchfiles
from _original_backend import OriginalStyleBackend
from _watching import (
    KINDS,
    SHARED,
    next_change,
    no_more,
    open_store,
    run_worker,
    store_path,
)

from rapid_dev_storage import (
    Change,
    FileBackend,
    NoValue,
    Storage,
    UnsupportedOperationError,
)
from rapid_dev_storage._sqlite import table_name


@pytest.fixture
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_store(request.param, tmp_path)
    yield opened
    await opened.close()


@pytest.mark.parametrize("store", KINDS, indirect=True)
async def test_own_writes_arrive_once_each(store: Storage) -> None:
    group = store.get_group("G")
    async with store.watch() as changes:
        await group["a"].set_value((1, 2))
        await group["a"].set_value((1, 2))
        await group["b", "c"].set_value(None)
        await group["a"].update(lambda current: [*current, 3])
        await group["a"].clear_value()
        await group.clear_prefix("b")
        seen = [await next_change(changes) for _ in range(6)]
        await no_more(changes)
    assert [(c.kind, c.keys, c.value) for c in seen] == [
        ("set", ("a",), [1, 2]),
        ("set", ("a",), [1, 2]),
        ("set", ("b", "c"), None),
        ("set", ("a",), [1, 2, 3]),
        ("cleared", ("a",), NoValue),
        ("cleared", ("b", "c"), NoValue),
    ]
    assert {c.origin for c in seen} == {"local"}
    assert all(c.group == "G" for c in seen)


@pytest.mark.parametrize("store", KINDS, indirect=True)
async def test_watches_narrow_to_a_group_a_prefix_or_a_value(store: Storage) -> None:
    users = store.get_group("USER")
    async with (
        store.watch("USER", "u1") as by_prefix,
        users.watch() as by_group,
        users["u1", "name"].watch() as by_value,
    ):
        await store.get_group("OTHER")["u1"].set_value(0)
        await users["u2", "name"].set_value("Bob")
        await users["u1", "name"].set_value("Ada")
        await users["u1", "age"].set_value(36)
        by_prefix_keys = [(await next_change(by_prefix)).keys for _ in range(2)]
        assert by_prefix_keys == [("u1", "name"), ("u1", "age")]
        by_group_keys = [(await next_change(by_group)).keys for _ in range(3)]
        assert by_group_keys == [("u2", "name"), ("u1", "name"), ("u1", "age")]
        assert (await next_change(by_value)).value == "Ada"
        await no_more(by_value, 0.2)


@pytest.mark.parametrize("kind", SHARED)
async def test_other_processes_writes_arrive(kind: str, tmp_path: Path) -> None:
    async with await open_store(kind, tmp_path) as store, store.watch("G") as changes:
        await run_worker("write-once", kind, store_path(kind, tmp_path), "k", "from afar")
        change = await next_change(changes)
        assert (change.kind, change.keys, change.value) == ("set", ("k",), "from afar")
        assert change.origin == "external"
        await store.get_group("G")["k"].set_value("here")
        assert (await next_change(changes)).origin == "local"
        await no_more(changes)  # our own write is not echoed back by the watcher


async def test_hand_edits_arrive_with_their_values(tmp_path: Path) -> None:
    async with await open_store("file", tmp_path) as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        handle = store.get_group("config")["site"]
        await handle.set_value({"title": "one"})
        path = Path(backend.record_path("config", ("site",)))
        async with store.watch() as changes:
            # An editor that writes a new file and renames it over the old one.
            temp = path.with_name("edit.tmp")
            temp.write_text('{"keys": ["site"], "value": {"title": "two"}}', encoding="utf-8")
            os.replace(temp, path)
            change = await next_change(changes)
            assert (change.value, change.origin) == ({"title": "two"}, "external")
            # An editor that rewrites in place, caught half-way: read again, not reported.
            text = '{"keys": ["site"], "value": {"title": "three"}}'
            with path.open("w", encoding="utf-8") as file:
                file.write(text[:20])
                file.flush()
                await asyncio.sleep(0.15)
                file.write(text[20:])
            assert (await next_change(changes)).value == {"title": "three"}
            # A record created by hand at the path the store names.
            new = Path(backend.record_path("config", ("theme",)))
            new.write_text('{"keys": ["theme"], "value": "dark"}', encoding="utf-8")
            change = await next_change(changes)
            assert (change.keys, change.value) == (("theme",), "dark")


async def test_git_style_bulk_changes_and_group_removal(tmp_path: Path) -> None:
    async with await open_store("file", tmp_path) as store:
        group = store.get_group("G")
        for index in range(20):
            await group[f"k{index}"].set_value(index)
        directory = Path(store.backend.location) / "^g"
        snapshot = tmp_path / "snapshot"
        shutil.copytree(directory, snapshot)
        for index in range(10):
            await group[f"k{index}"].set_value(index * 100 + 1)
        await group["new"].set_value("new")
        async with store.watch() as changes:
            # A checkout of the older tree: files replaced, one removed, in one sweep.
            shutil.rmtree(directory)
            shutil.copytree(snapshot, directory)
            expected = {("k" + str(i),): i for i in range(10)} | {("new",): NoValue}
            seen: dict[tuple[str, ...], Any] = {}
            while any(seen.get(keys, "missing") != value for keys, value in expected.items()):
                change = await next_change(changes)
                seen[change.keys] = change.value
            untouched = {("k" + str(i),): i for i in range(10, 20)}
            assert all(seen.get(keys, value) == value for keys, value in untouched.items())
            shutil.rmtree(directory)  # the whole group, deleted by hand
            cleared = set()
            while len(cleared) < 20:
                change = await next_change(changes)
                if change.kind == "cleared":
                    cleared.add(change.keys)
        assert await store.list_groups() == []


@pytest.mark.parametrize("kind", SHARED)
async def test_after_a_burst_the_watchers_view_equals_the_store(kind: str, tmp_path: Path) -> None:
    async with await open_store(kind, tmp_path) as store:
        view: dict[tuple[str, ...], Any] = {}
        truth: dict[tuple[str, ...], Any] | None = None
        caught_up = asyncio.Event()
        async with store.watch("G") as changes:

            async def follow() -> None:
                async for change in changes:
                    if change.kind == "set":
                        view[change.keys] = change.value
                    else:
                        view.pop(change.keys, None)
                    if view == truth:
                        caught_up.set()

            follower = asyncio.ensure_future(follow())
            path = store_path(kind, tmp_path)
            await asyncio.gather(
                *(run_worker("burst", kind, path, "1000", str(seed)) for seed in range(4))
            )
            truth = {keys: value async for keys, value in store.get_group("G").all_items()}
            if view != truth:  # the last events are at most a few watcher ticks away
                await asyncio.wait_for(caught_up.wait(), 10)
            follower.cancel()
        assert view == truth


@pytest.mark.parametrize("kind", KINDS)
async def test_start_stop_cycles_leak_nothing(kind: str, tmp_path: Path) -> None:
    async with await open_store(kind, tmp_path) as store:
        handle = store.get_group("G")["k"]

        async def cycle(index: int) -> None:
            async with store.watch("G") as changes:
                await handle.set_value(index)
                assert (await next_change(changes)).value == index

        for index in range(-10, 0):  # lazily started pools (watchfiles' worker thread) come up
            await cycle(index)
        threads, tasks = threading.active_count(), len(asyncio.all_tasks())
        descriptors = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else 0
        for index in range(100):
            await cycle(index)

        def counts() -> tuple[int, int, int]:
            open_files = len(os.listdir("/proc/self/fd")) if descriptors else 0
            return threading.active_count(), len(asyncio.all_tasks()), open_files

        # A stopped watcher's thread may still be closing its inotify descriptor: give it a
        # moment. A leak of one per cycle would be a hundred, and stay.
        for _ in range(50):
            if all(
                now <= before
                for now, before in zip(counts(), (threads, tasks, descriptors), strict=True)
            ):
                break
            await asyncio.sleep(0.02)
        assert counts()[0] <= threads
        assert counts()[1] <= tasks
        assert counts()[2] <= descriptors


@pytest.mark.parametrize("store", KINDS, indirect=True)
async def test_callbacks_that_raise_are_logged_and_stop_nothing(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[Any] = []

    def broken(change: Change) -> None:
        raise RuntimeError("callback bug")

    async def broken_async(change: Change) -> None:
        raise RuntimeError("async callback bug")

    both = asyncio.Event()

    async def collecting(change: Change) -> None:
        received.append(change.value)
        if len(received) == 2:
            both.set()

    subscriptions = [
        await store.subscribe(broken),
        await store.subscribe(broken_async),
        await store.subscribe(collecting, "G", ("k",)),
    ]
    with caplog.at_level(logging.ERROR, logger="rapid_dev_storage"):
        await store.get_group("G")["k"].set_value(1)
        await store.get_group("G")["k"].set_value(2)
        await store.get_group("H")["k"].set_value(3)
        # Callbacks run in the order they subscribed (the async ones as tasks, in order), so
        # when the last one has both values, the broken ones have run for both too.
        await asyncio.wait_for(both.wait(), 5)
    assert caplog.text.count("callback raised") >= 4
    assert received == [1, 2]
    assert "callback bug" in caplog.text
    assert "async callback bug" in caplog.text
    subscriptions[2].cancel()
    await subscriptions[0].close()
    await subscriptions[1].close()
    # A subscription made now sees 4; the cancelled and closed ones, dispatched before it,
    # would have by then.
    later: asyncio.Queue[Any] = asyncio.Queue()
    witness = await store.subscribe(lambda change: later.put_nowait(change.value), "G", ("k",))
    await store.get_group("G")["k"].set_value(4)
    assert await asyncio.wait_for(later.get(), 5) == 4
    await witness.close()
    assert received == [1, 2]


@pytest.mark.parametrize("store", KINDS, indirect=True)
async def test_closing_the_store_ends_watches(store: Storage) -> None:
    changes = store.watch()

    async def drain() -> list[Change]:
        return [change async for change in changes]

    await changes.start()
    draining = asyncio.ensure_future(drain())
    await store.get_group("G")["k"].set_value(1)
    await store.close()
    assert [c.value for c in await asyncio.wait_for(draining, 5)] == [1]


async def test_polling_mode_sees_other_writers(tmp_path: Path) -> None:
    async with (
        await open_store("file", tmp_path, force_polling=True) as store,
        store.watch() as changes,
    ):
        await run_worker("write-once", "file", str(tmp_path), "k", "polled")
        assert (await next_change(changes)).value == "polled"


async def test_backends_of_the_original_contract_cannot_watch() -> None:
    store = Storage(OriginalStyleBackend())
    with pytest.raises(UnsupportedOperationError, match="original contract"):
        store.watch()


async def test_sqlite_edits_by_hand_in_sql_arrive(tmp_path: Path) -> None:
    async with await open_store("sqlite", tmp_path) as store:
        group = store.get_group("G")
        for index in range(5):
            await group[f"k{index}"].set_value(index)
        async with store.watch("G") as changes:
            connection = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
            table = '"' + table_name("shared", "1") + '"'
            value = store.backend.codec.dumps("edited")
            connection.execute(f"UPDATE {table} SET data = ? WHERE k1 = 'k1'", (value,))
            change = await next_change(changes)
            assert (change.keys, change.value, change.origin) == (("k1",), "edited", "external")
            connection.execute(f"DELETE FROM {table} WHERE group_name = 'G'")  # the whole group
            cleared = {(await next_change(changes)).keys for _ in range(5)}
            assert cleared == {(f"k{index}",) for index in range(5)}
            connection.close()


async def test_a_failing_file_watcher_falls_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_watch = watchfiles.watch

    def watch(*paths: Any, **options: Any) -> Any:
        if not options.get("force_polling"):
            raise OSError(28, "inotify watch limit reached")  # what the OS says when full
        return real_watch(*paths, **options)

    monkeypatch.setattr(watchfiles, "watch", watch)
    with caplog.at_level(logging.WARNING, logger="rapid_dev_storage"):
        async with await open_store("file", tmp_path) as store, store.watch() as changes:
            await run_worker("write-once", "file", str(tmp_path), "k", "seen by polling")
            assert (await next_change(changes)).value == "seen by polling"
    assert "polling instead" in caplog.text


@pytest.mark.parametrize("store", SHARED, indirect=True)
async def test_a_large_clear_is_reported_once_per_record(store: Storage) -> None:
    group = store.get_group("G")
    await asyncio.gather(*(group[f"k{index}"].set_value(index) for index in range(300)))
    async with store.watch() as changes:
        await group.clear_group()
        seen = [await next_change(changes) for _ in range(300)]
        await no_more(changes, 0.5)  # the file watcher saw 300 deletions: none is echoed
    assert {change.keys for change in seen} == {(f"k{index}",) for index in range(300)}
    assert {(change.kind, change.origin) for change in seen} == {("cleared", "local")}
