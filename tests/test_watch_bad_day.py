"""Watching on a bad day: a replaced store directory, merge conflicts, slow consumers, big stores.

Real files and real processes throughout; waits are bounded by timeouts, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import shutil
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import pytest
from _watching import next_change, open_store, run_worker

from rapid_dev_storage import (
    Change,
    FileBackend,
    MemoryBackend,
    NoValue,
    Storage,
    Watch,
    _changes,
    _file,
)
from rapid_dev_storage._sqlite import table_name
from rapid_dev_storage.errors import StorageIOError

View = dict[tuple[str, ...], Any]


async def follow_until(changes: Watch, view: View, done: Callable[[View], bool]) -> None:
    """Apply changes to ``view`` until ``done(view)``; fail after 10 s without getting there."""

    async def follow() -> None:
        while not done(view):
            change = await changes.__anext__()
            if change.kind == "set":
                view[change.keys] = change.value
            else:
                view.pop(change.keys, None)

    await asyncio.wait_for(follow(), 10)


def replace_directory(directory: Path, snapshot: Path, how: str) -> None:
    """Replace ``directory`` with a copy of ``snapshot`` the way rsync, a restore or a deploy do."""
    if how == "rm -rf":
        shutil.rmtree(directory)
        directory.mkdir()
        shutil.copytree(snapshot, directory, dirs_exist_ok=True)
    else:  # move-swap: build the new one beside it, then swap names
        staged = directory.with_name(directory.name + ".new")
        shutil.copytree(snapshot, staged)
        old = directory.with_name(directory.name + ".old")
        os.rename(directory, old)
        os.rename(staged, directory)
        shutil.rmtree(old)


@pytest.mark.parametrize("how", ["rm -rf", "move-swap"])
@pytest.mark.parametrize("level", ["store", "group"])
async def test_a_replaced_directory_is_watched_again(
    tmp_path: Path, how: str, level: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await open_store("file", tmp_path) as store:
        group = store.get_group("G")
        await group["a"].set_value(1)
        await group["b"].set_value(1)
        directory = Path(store.backend.location)
        if level == "group":
            directory = Path(os.path.dirname(store.backend.record_path("G", ("a",))))  # type: ignore[attr-defined]
        snapshot = tmp_path / "snapshot"
        shutil.copytree(directory, snapshot)
        await group["a"].set_value(2)
        await group["c"].set_value(3)  # not in the snapshot: cleared by the replacement
        with caplog.at_level(logging.WARNING, logger="rapid_dev_storage"):
            async with store.watch("G") as changes:
                view: View = {("a",): 2, ("b",): 1, ("c",): 3}
                replace_directory(directory, snapshot, how)
                await follow_until(changes, view, lambda v: v == {("a",): 1, ("b",): 1})
                # Still listening: another process's write after the replacement arrives.
                await run_worker("write-once", "file", str(tmp_path), "d", "after")
                await follow_until(changes, view, lambda v: v.get(("d",)) == "after")
        assert view == {("a",): 1, ("b",): 1, ("d",): "after"}
        warnings = [r for r in caplog.records if "was replaced" in r.getMessage()]
        assert len(warnings) == (1 if level == "store" else 0)  # a group dir needs no new watch


async def test_a_removed_store_directory_clears_its_records_until_restored(
    tmp_path: Path,
) -> None:
    async with await open_store("file", tmp_path) as store:
        group = store.get_group("G")
        await group["a"].set_value(1)
        directory = Path(store.backend.location)
        snapshot = tmp_path / "snapshot"
        shutil.copytree(directory, snapshot)
        async with store.watch("G") as changes:
            view: View = {("a",): 1}
            shutil.rmtree(directory)
            await follow_until(changes, view, lambda v: v == {})
            shutil.copytree(snapshot, directory)
            await follow_until(changes, view, lambda v: v == {("a",): 1})
            await run_worker("write-once", "file", str(tmp_path), "b", "back")
            await follow_until(changes, view, lambda v: v.get(("b",)) == "back")


async def test_conflicted_files_do_not_delay_other_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await open_store("file", tmp_path) as store:
        group = store.get_group("G")
        await asyncio.gather(*(group[f"k{index}"].set_value(index) for index in range(50)))
        paths = [Path(store.backend.record_path("G", (f"k{i}",))) for i in range(50)]  # type: ignore[attr-defined]
        with caplog.at_level(logging.WARNING, logger="rapid_dev_storage"):
            async with store.watch("G") as changes:
                # What a git merge leaves in 50 records: conflict markers, all at once.
                for index, path in enumerate(paths):
                    path.write_text(
                        f'<<<<<<< HEAD\n{{"keys": ["k{index}"], "value": 1}}\n=======\n'
                        f'{{"keys": ["k{index}"], "value": 2}}\n>>>>>>> theirs\n',
                        encoding="utf-8",
                    )
                await run_worker("write-once", "file", str(tmp_path), "fresh", "valid")
                # Before: each conflicted file was retried for 0.5 s in turn, 25 s in all.
                change = await next_change(changes, timeout=2.0)
                fresh = (("fresh",), "valid", "external")
                assert (change.keys, change.value, change.origin) == fresh
                # A conflict resolved by hand arrives too.
                paths[7].write_text('{"keys": ["k7"], "value": "resolved"}', encoding="utf-8")
                change = await next_change(changes)
                assert (change.keys, change.value) == (("k7",), "resolved")

                def warned() -> set[str]:
                    messages = [r.getMessage() for r in caplog.records]
                    return {
                        str(path)
                        for path in paths[:7] + paths[8:]
                        if any(
                            m == f"unresolved merge conflict in {path}: edit it, then `git add`"
                            for m in messages
                        )
                    }

                for _ in range(500):  # each is named as a conflict, without waiting
                    if len(warned()) == 49:
                        break
                    await asyncio.sleep(0.02)
        # (k7 is warned about too: it was conflicted before it was resolved.)
        assert len(warned()) == 49


async def test_a_file_the_reader_refuses_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with await open_store("file", tmp_path) as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        refused = {backend.record_path("G", ("fifo",)), backend.record_path("G", ("link",))}
        real_read_file = _file.read_file

        def read_file(path: str) -> bytes | None:
            # What the hardened reader does with a symlink or a FIFO.
            if path.endswith(os.path.basename(backend.record_path("G", ("link",)))):
                raise OSError(errno.ELOOP, "a symlink: not followed", path)
            if path in refused:
                raise StorageIOError(f"{path}: not a regular file")
            return real_read_file(path)

        monkeypatch.setattr(_file, "read_file", read_file)
        with caplog.at_level(logging.DEBUG, logger="rapid_dev_storage"):
            async with store.watch("G") as changes:
                for path in refused:
                    Path(path).parent.mkdir(exist_ok=True)
                    Path(path).write_text("whatever", encoding="utf-8")
                await run_worker("write-once", "file", str(tmp_path), "k", "still here")
                change = await next_change(changes)
                assert (change.keys, change.value) == (("k",), "still here")
        assert "watcher skipped" in caplog.text


def test_a_watch_coalesces_per_record_once_it_falls_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_changes, "WATCH_BACKLOG", 3)
    queue = _changes.ChangeQueue()

    def put(key: str, value: int) -> None:
        queue.put(Change("set", "G", (key,), value, "local"))

    for key, value in [("a", 1), ("b", 1), ("a", 2)]:  # within the backlog: kept as they came
        put(key, value)
    for key, value in [("c", 1), ("a", 3), ("b", 2), ("a", 4)]:
        put(key, value)
    queue.end()

    async def drain() -> list[tuple[str, int]]:
        got = []
        while (change := await queue.get()) is not None:
            got.append((change.keys[0], change.value))
        return got

    # Beyond it a record's newest change replaces its newest pending one and goes to the end:
    # a2 became a3, then a4; b1 became b2. What is left is in the order it was made.
    assert asyncio.run(drain()) == [("a", 1), ("c", 1), ("b", 2), ("a", 4)]


async def test_a_consumer_that_reads_nothing_costs_memory_per_record() -> None:
    async with Storage(MemoryBackend()) as store:
        handle = store.get_group("G")["k"]
        async with store.watch() as changes:
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for index in range(20_000):
                    await handle.set_value({"index": index, "pad": "x" * 1000})
                gc.collect()
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            # Kept whole, 20,000 changes of a kilobyte would be over 20 MB.
            assert grown < 2_000_000
            seen = []
            while len(seen) < _changes.WATCH_BACKLOG:
                seen.append(await next_change(changes))
        assert seen[-1].value["index"] == 19_999  # the latest state arrived


async def test_a_watch_keeps_no_record_bytes(tmp_path: Path) -> None:
    async with await open_store("file", tmp_path) as store:
        group = store.get_group("G")
        for index in range(3):
            await group[f"big{index}"].set_value("v" * 5_000_000)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            async with store.watch() as changes:
                # The watcher read all three (15 MB) to index them; it keeps digests only. (A
                # reader thread lets go of its last result a moment after handing it over.)
                for _ in range(100):
                    gc.collect()
                    grown = tracemalloc.get_traced_memory()[0] - before
                    if grown < 1_000_000:
                        break
                    await asyncio.sleep(0.02)
                assert grown < 1_000_000
                await run_worker("write-once", "file", str(tmp_path), "big1", "small now")
                change = await next_change(changes)
                assert (change.keys, change.value) == (("big1",), "small now")
        finally:
            tracemalloc.stop()


@pytest.mark.slow  # 5-14 s
async def test_a_large_external_burst_arrives_whole(tmp_path: Path) -> None:
    """Sliced publishing loses nothing: 2,000 records rewritten at once all arrive."""
    async with await open_store("file", tmp_path) as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        group = store.get_group("G")
        await asyncio.gather(*(group[f"k{index}"].set_value(0) for index in range(2_000)))
        directory = Path(os.path.dirname(backend.record_path("G", ("k0",))))
        snapshot = tmp_path / "snapshot"
        shutil.copytree(directory, snapshot)
        await asyncio.gather(*(group[f"k{index}"].set_value(1) for index in range(2_000)))
        async with store.watch("G") as changes:
            view: View = {(f"k{index}",): 1 for index in range(2_000)}
            shutil.rmtree(directory)
            shutil.copytree(snapshot, directory)  # a checkout of the older tree
            await follow_until(changes, view, lambda v: set(v.values()) == {0} and len(v) == 2000)
        assert await group["k5"].get_value() == 0
        assert NoValue not in view.values()


async def test_a_sqlite_backlog_from_another_connection_arrives_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await open_store("sqlite", tmp_path) as store, store.watch("G") as changes:
        codec = store.backend.codec
        connection = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
        table = '"' + table_name("shared", "1") + '"'
        rows = [("G", f"k{index}", codec.dumps(index)) for index in range(3_000)]
        rows.append(("G", "broken", b"\xc1 not a record"))
        with caplog.at_level(logging.WARNING, logger="rapid_dev_storage"):
            connection.execute("BEGIN")
            connection.executemany(
                f"INSERT INTO {table} (group_name, k1, k2, k3, k4, k5, key_count, data) "
                "VALUES (?, ?, '', '', '', '', 1, ?)",
                rows,
            )
            connection.execute("COMMIT")
            connection.close()
            view: View = {}
            await follow_until(changes, view, lambda v: len(v) == 3_000)
            for _ in range(250):  # the broken row, last in the log, is warned about
                if "undecodable" in caplog.text:
                    break
                await asyncio.sleep(0.02)
        assert view == {(f"k{index}",): index for index in range(3_000)}
        assert "undecodable" in caplog.text


async def test_a_read_a_local_write_overtook_is_not_published() -> None:
    async with Storage(MemoryBackend()) as store:
        hub = store.backend._watch_hub()
        codec = store.backend.codec
        async with store.watch() as changes:
            mark = hub.mark()  # a watcher sends a read of ("G", ("k",)) to a thread
            hub.remember("G", ("k",), codec.dumps("new"))  # meanwhile a local write of it begins
            stale = _changes.digest_of(codec.dumps("old"))
            assert not hub.offer("G", ("k",), stale, "old", mark)  # read it again instead
            # Read again while the write is still landing: still older than the write, whose
            # own change follows; delivering it would report a state twice (seen under load).
            assert hub.offer("G", ("k",), stale, "old", hub.mark())
            hub.publish("G", ("k",), codec.dumps("new"), "local")  # the write landed
            change = await next_change(changes)
            assert (change.value, change.origin) == ("new", "local")
            # A read sent while a write was landing, answered after it landed: read it again
            # (it may hold the bytes the write replaced; delivered, ours echoed as external).
            hub.remember("G", ("k",), codec.dumps("newer"))
            landing = hub.mark()
            hub.publish("G", ("k",), codec.dumps("newer"), "local")
            assert (await next_change(changes)).value == "newer"
            assert not hub.offer("G", ("k",), stale, "old", landing)
            # Another writer's "old" after ours is a change, reported once.
            assert hub.offer("G", ("k",), stale, "old", hub.mark())
            assert (await next_change(changes)).value == "old"
            assert hub.offer("G", ("k",), stale, "old", hub.mark())  # the same state: quiet
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(changes.__anext__(), 0.1)
