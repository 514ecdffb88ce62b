"""What FileBackend adds to the conformance suite: real files, real processes, crashes, faults."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
import unicodedata
from pathlib import Path
from typing import Any, Iterator

import msgpack
import pytest
from _turns import count_turns
from _worker import count_in_processes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapid_dev_storage import (
    CorruptRecordError,
    FileBackend,
    IncompatibleStoreError,
    InvalidNameError,
    LockTimeoutError,
    NoValue,
    Storage,
    StorageIOError,
)
from rapid_dev_storage._file_io import FileIO
from rapid_dev_storage._file_layout import MARKER, TEMP_PREFIX, TEMP_SUFFIX, temp_name
from rapid_dev_storage._file_read import RACY_SECONDS
from rapid_dev_storage._names import key_digest

WORKER = Path(__file__).with_name("_worker.py")


async def open_store(path: Path, name: str = "app", uid: int | str = 1, **options: Any) -> Storage:
    return Storage(await FileBackend.create_backend_instance(path, name, uid, **options))


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")]


# --- layout -----------------------------------------------------------------------------------


async def test_layout_is_readable_and_records_are_pretty_json(tmp_path: Path) -> None:
    async with await open_store(tmp_path, "main store", 42, codec="json") as store:
        await store.get_group("USER")["u1", "settings"].set_value({"theme": "dark", "n": 1})
        await store.get_group("users")["u1"].set_value(None)
    namespace = tmp_path / "main%20store~42"
    record = namespace / "^user" / f"{key_digest(('u1', 'settings'))}.json"
    assert record.read_text(encoding="utf-8") == (
        '{\n  "keys": [\n    "u1",\n    "settings"\n  ],\n  "value": {\n    "n": 1,\n'
        '    "theme": "dark"\n  }\n}\n'
    )
    assert (namespace / "users").is_dir()
    marker = json.loads((namespace / MARKER).read_text(encoding="utf-8"))
    assert marker["codec"] == "json"
    assert marker["version"] == 1
    assert (marker["name"], marker["unique_identifier"]) == ("main store", "42")
    gitignore = (namespace / ".gitignore").read_text(encoding="utf-8")
    assert "/.locks/" in gitignore
    assert f"{TEMP_PREFIX}*{TEMP_SUFFIX}" in gitignore
    # Lock files live apart from the records, never inside a group directory.
    for group_directory in (namespace / "^user", namespace / "users"):
        assert not list(group_directory.glob("*.lock"))


async def test_record_path_is_known_before_the_record_exists(tmp_path: Path) -> None:
    async with await open_store(tmp_path, codec="json") as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        path = Path(backend.record_path("settings", ("site",)))
        assert not path.exists()
        path.parent.mkdir(parents=True)
        path.write_text('{"keys": ["site"], "value": {"title": "by hand"}}', encoding="utf-8")
        assert await store.get_group("settings")["site"].get_value() == {"title": "by hand"}


async def test_hand_edits_are_read_back_as_edited(tmp_path: Path) -> None:
    async with await open_store(tmp_path, codec="json") as store:
        handle = store.get_group("config")["site"]
        await handle.set_value({"title": "old"})
        backend = store.backend
        assert isinstance(backend, FileBackend)
        path = Path(backend.record_path("config", ("site",)))
        text = path.read_text(encoding="utf-8").replace('"old"', '"new, by hand"')
        path.write_text(text, encoding="utf-8")
        assert await handle.get_value() == {"title": "new, by hand"}
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # an editor's byte-order mark
        assert await handle.get_value() == {"title": "new, by hand"}


async def test_two_instances_and_two_stores_share_a_directory(tmp_path: Path) -> None:
    async with (
        await open_store(tmp_path, "app", 1) as first,
        await open_store(tmp_path, "app", 1) as second,
        await open_store(tmp_path, "app", 2) as other,
    ):
        await first.get_group("G")["k"].set_value(1)
        assert await second.get_group("G")["k"].get_value() == 1
        assert await other.get_group("G")["k"].get_value() is NoValue
        await second.get_group("G")["k"].clear_value()
        assert await first.get_group("G")["k"].get_value() is NoValue
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app~1", "app~2"]


async def test_empty_group_directories_go_away(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        group = store.get_group("G")
        await group["a"].set_value(1)
        await group["b", "c"].set_value(2)
        await group["a"].clear_value()
        assert (tmp_path / "app~1" / "^g").is_dir()
        await group.clear_prefix("b")
        assert not (tmp_path / "app~1" / "^g").exists()
        await group["a"].set_value(3)
        await group.clear_group()
        assert not (tmp_path / "app~1" / "^g").exists()
        assert await store.list_groups() == []


async def test_large_records_are_read_off_the_loop_and_inline_reads_can_be_disabled(
    tmp_path: Path,
) -> None:
    big = {"blob": "x" * 200_000}
    async with await open_store(tmp_path, inline_limit=1024) as store:
        await store.get_group("G")["big"].set_value(big)
        assert await store.get_group("G")["big"].get_value() == big
    async with await open_store(tmp_path, inline_limit=0) as store:
        assert await store.get_group("G")["big"].get_value() == big
        assert await store.get_group("G")["absent"].get_value() is NoValue


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
async def test_cancelled_large_reads_leave_no_descriptor_open(tmp_path: Path) -> None:
    """A read on a thread opens, reads and closes its file in its job: none is left open."""
    big = "x" * 4_000_000  # far over the inline limit: read on a reader thread
    async with await open_store(tmp_path) as store:
        handle = store.get_group("G")["big"]
        await handle.set_value(big)
        assert await handle.get_value() == big
        before = open_descriptors()
        # Two reader threads and 40 reads at a time: most are cancelled before their job starts
        # (after 1 or 2 turns each has queued its job), some while their job reads (5 ms in).
        for turns in (0, 1, 2, 3, 5):
            reads = [asyncio.ensure_future(handle.get_value()) for _ in range(40)]
            for _ in range(turns):
                await asyncio.sleep(0)
            if turns == 5:
                await asyncio.sleep(0.005)
            for read in reads:
                read.cancel()
            outcomes = await asyncio.gather(*reads, return_exceptions=True)
            assert all(isinstance(outcome, (asyncio.CancelledError, str)) for outcome in outcomes)
        # Jobs that were running when their read was cancelled finish on their own.
        for _ in range(500):
            if open_descriptors() == before:
                break
            await asyncio.sleep(0.01)
        assert open_descriptors() == before
        assert await handle.get_value() == big


# --- the store marker -------------------------------------------------------------------------


async def test_marker_guards_codec_version_and_owner(tmp_path: Path) -> None:
    async with await open_store(tmp_path, codec="json") as store:
        await store.get_group("G")["k"].set_value(1)
    async with await open_store(tmp_path) as store:
        assert store.backend.codec.name == "json"
    with pytest.raises(IncompatibleStoreError, match="codec 'json', not 'msgpack'"):
        await open_store(tmp_path, codec="msgpack")
    marker_path = tmp_path / "app~1" / MARKER
    marker = json.loads(marker_path.read_text(encoding="utf-8"))
    marker_path.write_text(json.dumps({**marker, "version": 2}), encoding="utf-8")
    with pytest.raises(IncompatibleStoreError, match="newer"):
        await open_store(tmp_path)
    marker_path.write_text(json.dumps({**marker, "name": "other"}), encoding="utf-8")
    with pytest.raises(IncompatibleStoreError, match="belongs to store"):
        await open_store(tmp_path)
    marker_path.write_text("<<<<<<< HEAD\n", encoding="utf-8")
    with pytest.raises(IncompatibleStoreError, match="not a valid store marker"):
        await open_store(tmp_path)


async def test_a_directory_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "app~1").mkdir()
    (tmp_path / "app~1" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(IncompatibleStoreError, match="not a rapid_dev_storage store"):
        await open_store(tmp_path)
    assert files_under(tmp_path) == {"app~1", "app~1/notes.txt"}


# --- names ------------------------------------------------------------------------------------

PATHS = ["..", ".", "../escape", "..\\escape", "/abs", "C:\\x", "C:", "\\\\server\\share"]
DEVICES_AND_CONTROLS = ["a\x00b", "\x07bell", "CON", "con", "nul.txt", "COM1", "lpt9"]
DOTS_AND_SPACES = ["trailing.", "trailing ", " ", "~", "a~1", "x" * 255]
BOOKKEEPING = [".locks", ".gitignore", MARKER, f"{TEMP_PREFIX}1-x{TEMP_SUFFIX}"]
LOOK_ALIKES = ["User", "user", "USER", "é", unicodedata.normalize("NFD", "é"), "ﬁ", "fi", "ß", "ss"]
HOSTILE_NAMES = [*PATHS, *DEVICES_AND_CONTROLS, *DOTS_AND_SPACES, *BOOKKEEPING, *LOOK_ALIKES]


async def test_hostile_group_names_stay_inside_and_apart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside_before = files_under(tmp_path)
    async with await open_store(root) as store:
        for index, name in enumerate(HOSTILE_NAMES):
            await store.get_group(name)["k"].set_value(index)
        for index, name in enumerate(HOSTILE_NAMES):
            assert await store.get_group(name)["k"].get_value() == index, name
        assert await store.list_groups() == sorted(HOSTILE_NAMES)
        with pytest.raises(InvalidNameError, match="shorter name"):
            await store.get_group("x" * 256)["k"].set_value(1)
    created = files_under(tmp_path) - outside_before
    assert all(path.startswith("root") for path in created)
    group_directories = [p.name for p in (root / "app~1").iterdir() if p.is_dir()]
    assert len({name.casefold() for name in group_directories}) == len(group_directories)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True))
def test_any_group_names_stay_inside_and_apart(tmp_path: Path, names: list[str]) -> None:
    names = [name for name in names if _encodable(name)]
    variants = {
        v for n in names for v in (n, n.upper(), n.lower(), unicodedata.normalize("NFD", n))
    }

    async def check() -> None:
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        async with await open_store(root) as store:
            for name in variants:
                await store.get_group(name)[name].set_value(name)
            for name in variants:
                assert await store.get_group(name)[name].get_value() == name
            assert await store.list_groups() == sorted(variants)
        for path in root.rglob("*"):
            assert path.resolve().is_relative_to(root.resolve())

    asyncio.run(check())


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- corrupt records --------------------------------------------------------------------------


@contextlib.contextmanager
def replaced_record(path: Path, data: bytes) -> Iterator[None]:
    original = path.read_bytes()
    path.write_bytes(data)
    settled = time.time() - 10  # not a save in progress (reads would look again for a moment)
    os.utime(path, (settled, settled))
    try:
        yield
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_corrupt_records_are_reported_and_never_stop_other_keys(
    tmp_path: Path, codec: str
) -> None:
    async with await open_store(tmp_path, codec=codec) as store:
        group = store.get_group("G")
        await group["good"].set_value({"ok": True})
        await group["bad"].set_value({"text": "é" * 20, "list": [1, 2, 3]})
        backend = store.backend
        assert isinstance(backend, FileBackend)
        path = Path(backend.record_path("G", ("bad",)))
        whole = path.read_bytes()
        json_bytes = b'{"keys": ["bad"], "value": 1}\n'
        damaged = [whole[:cut] for cut in range(len(whole))]  # truncated at every offset
        damaged += [
            b"",
            b"\xef\xbb\xbf",
            b"<<<<<<< HEAD\n" + whole + b"=======\n" + whole + b">>>>>>> theirs\n",
            json_bytes if codec == "msgpack" else msgpack.packb({"keys": ["bad"], "value": 1}),
            json.dumps({"keys": ["other"], "value": 1}).encode()
            if codec == "json"
            else msgpack.packb({"keys": ["other"], "value": 1}),
            b"[1, 2]" if codec == "json" else msgpack.packb([1, 2]),
        ]
        for data in damaged:
            with replaced_record(path, data):
                if codec == "json" and data == whole[:-1]:  # only the final newline cut: intact
                    assert await group["bad"].get_value() == {"text": "é" * 20, "list": [1, 2, 3]}
                    continue
                with pytest.raises(CorruptRecordError) as caught:
                    await group["bad"].get_value()
                assert str(path) in str(caught.value)
                assert caught.value.location == str(path)
                assert await group["good"].get_value() == {"ok": True}
                with pytest.raises(CorruptRecordError):
                    _ = [item async for item in group.all_items()]
                problems: list[CorruptRecordError] = []
                assert [k async for k, _ in group.all_items(on_corrupt=problems.append)] == [
                    ("good",)
                ]
                assert [p.location for p in problems] == [str(path)]
        assert await group["bad"].get_value() == {"text": "é" * 20, "list": [1, 2, 3]}


# --- processes and crashes --------------------------------------------------------------------


async def test_update_is_atomic_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path)
    assert await count_in_processes("file", path, atomic=True, processes=6, each=250) == 1500


async def test_unlocked_read_then_write_loses_updates(tmp_path: Path) -> None:
    """The control: the same workload without update() loses increments, so the test can fail."""
    path = str(tmp_path)
    assert await count_in_processes("file", path, atomic=False, processes=6, each=250) < 1500


@pytest.mark.parametrize("durability", ["full", "fast"])
def test_killed_writers_never_tear_or_lose_acknowledged_records(
    tmp_path: Path, durability: str
) -> None:
    for round_number in range(12):
        writer = subprocess.Popen(
            [sys.executable, str(WORKER), "write-forever", durability, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        target = 5 + round_number * 7 % 23
        last = 0
        for line in writer.stdout:
            last = int(line)
            if last >= target:
                break
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()

        # Every write whose await returned is on disk: the last acknowledged sequence number
        # (or a later one, written before the kill landed) is in its record.
        async def check(last: int = last) -> None:
            backend = await FileBackend.create_backend_instance(tmp_path, "crash", 1)
            async with Storage(backend) as store:
                group = store.get_group("G")
                records = {keys: value async for keys, value in group.all_items()}
                assert all(value["pad"] == "x" * 20_000 for value in records.values())
                expected_key = (f"k{last % 20}",)
                assert records[expected_key]["sequence"] >= last
            assert temp_files(tmp_path) == []  # opening swept what the killed writer left

        asyncio.run(check())


async def test_orphan_temp_files_are_invisible_and_swept(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.get_group("G")["k"].set_value(1)
    group_directory = tmp_path / "app~1" / "^g"
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    orphan = group_directory / f"{TEMP_PREFIX}{dead_pid}-abc{TEMP_SUFFIX}"
    orphan.write_bytes(b"half a rec")
    live = group_directory / f"{TEMP_PREFIX}{dead_pid + 1}-abc{TEMP_SUFFIX}"
    live.write_bytes(b"in progress")
    writer = os.open(live, os.O_RDWR)  # a writer holds its temp file's lock while it lives
    fcntl.flock(writer, fcntl.LOCK_EX)
    only_orphans = tmp_path / "app~1" / "^h"
    only_orphans.mkdir()
    (only_orphans / orphan.name).write_bytes(b"x")
    async with await open_store(tmp_path) as store:
        assert not orphan.exists()
        assert live.exists()  # a live writer's temp file is left alone, whatever its pid says
        os.close(writer)
        assert not only_orphans.exists()
        assert [item async for item in store.get_group("G").all_items()] == [(("k",), 1)]
        assert await store.list_groups() == ["G"]


# --- faults -----------------------------------------------------------------------------------

WRITE_STEPS = ["open", "write", "fsync", "close", "rename", "fsync-directory"]


def failing_io(step: str, error: int) -> type[FileIO]:
    """Return the real system calls, but ``step`` fails with ``error`` as a bad disk would."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(error, os.strerror(error))

    class Failing(FileIO):
        pass

    if step == "fsync-directory":

        def fsync_directory_fails(descriptor: int) -> None:
            if stat.S_ISDIR(os.fstat(descriptor).st_mode):
                fail()
            os.fsync(descriptor)

        Failing.fsync = staticmethod(fsync_directory_fails)  # type: ignore[assignment]
    elif step == "close":

        def close_fails(descriptor: int) -> None:
            os.close(descriptor)
            fail()

        Failing.close = staticmethod(close_fails)  # type: ignore[assignment]
    else:
        setattr(Failing, step, staticmethod(fail))
    return Failing


FAST_STEPS = ["open", "write", "close", "rename"]  # no fsync at durability "fast"


@pytest.mark.parametrize(
    ("durability", "step"),
    [("full", step) for step in WRITE_STEPS] + [("fast", step) for step in FAST_STEPS],
)
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
async def test_a_failing_write_keeps_the_old_value_and_no_temp_file(
    tmp_path: Path, durability: str, step: str, error: int
) -> None:
    async with await open_store(tmp_path, codec="json", durability=durability) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value("old")
        backend = store.backend
        assert isinstance(backend, FileBackend)
        backend._io = failing_io(step, error)
        with pytest.raises(StorageIOError) as caught:
            await handle.set_value("new")
        assert caught.value.__cause__ is not None
        assert isinstance(caught.value.__cause__, OSError)
        assert caught.value.__cause__.errno == error
        if step == "fsync-directory":
            assert await handle.get_value() == "new"  # renamed; only its durability is unknown
        else:
            assert await handle.get_value() == "old"
        assert temp_files(tmp_path) == []
        backend._io = FileIO
        await handle.set_value("after")
        assert await handle.get_value() == "after"


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


async def test_a_really_full_disk_keeps_the_old_value(tiny_filesystem: Path) -> None:
    async with await open_store(tiny_filesystem) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value("old")
        with pytest.raises(StorageIOError, match="No space left"):
            await handle.set_value("x" * 400_000)
        assert await handle.get_value() == "old"
        assert temp_files(tiny_filesystem) == []


# --- memory -----------------------------------------------------------------------------------


@pytest.mark.slow  # 100,000 files written, read and removed: 20-90 s on a loaded machine
@pytest.mark.timeout(400)
async def test_a_100000_record_group_iterates_in_bounded_memory(tmp_path: Path) -> None:
    async with await open_store(tmp_path, durability="fast") as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        group_directory = Path(backend.record_path("big", ("0",))).parent
        group_directory.mkdir(parents=True)
        for index in range(100_000):
            keys = (f"{index:06}",)
            path = Path(backend.record_path("big", keys))
            path.write_bytes(backend._encode_record(keys, {"i": index, "pad": "p" * 100}))
        tracemalloc.start()
        try:
            seen = 0
            async for keys, value in store.get_group("big").all_items():
                assert value["i"] == int(keys[0])
                seen += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert seen == 100_000
        print(f"peak traced memory while iterating 100,000 records: {peak / 1e6:.2f} MB")
        assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while iterating"


# --- the read cache ---------------------------------------------------------------------------


async def test_cached_reads_see_every_kind_of_change(tmp_path: Path) -> None:
    async with (
        await open_store(tmp_path, codec="json") as store,
        await open_store(tmp_path, codec="json") as other,
    ):
        handle = store.get_group("G")["k"]
        await handle.set_value({"v": "aaaa"})
        backend = store.backend
        assert isinstance(backend, FileBackend)
        path = Path(backend.record_path("G", ("k",)))
        old = time.time() - 10
        os.utime(path, (old, old))  # old enough to be cached
        await asyncio.sleep(RACY_SECONDS)  # and so is the change of its times (its ctime)
        assert await handle.get_value() == {"v": "aaaa"}
        assert path.as_posix() in backend._cache._entries  # it is cached
        # An edit in place of the same size: a new mtime.
        path.write_bytes(path.read_bytes().replace(b"aaaa", b"bbbb"))
        assert await handle.get_value() == {"v": "bbbb"}
        os.utime(path, (old, old))
        assert await handle.get_value() == {"v": "bbbb"}
        # Another instance's atomic replace: a new inode, even with the old mtime put back.
        await other.get_group("G")["k"].set_value({"v": "cccc"})
        os.utime(path, (old, old))
        assert await handle.get_value() == {"v": "cccc"}
        # Removed by hand.
        path.unlink()
        assert await handle.get_value() is NoValue


async def test_cached_reads_see_an_edit_that_put_the_old_mtime_back(tmp_path: Path) -> None:
    """``cp -p`` over a record, or ``rsync -a --inplace``: the same inode, the same size, and the
    mtime set back to the one read: only the ctime says the file changed."""
    async with await open_store(tmp_path, codec="json") as store:
        handle = store.get_group("G")["k"]
        await handle.set_value({"v": "aaaa"})
        backend = store.backend
        assert isinstance(backend, FileBackend)
        path = Path(backend.record_path("G", ("k",)))
        old = time.time_ns() - 10**10
        os.utime(path, ns=(old, old))
        await asyncio.sleep(RACY_SECONDS)
        assert await handle.get_value() == {"v": "aaaa"}
        assert path.as_posix() in backend._cache._entries  # it is cached
        inode = path.stat().st_ino
        with path.open("r+b") as record:  # in place, as cp does: the same inode
            edited = record.read().replace(b"aaaa", b"bbbb")
            record.seek(0)
            record.write(edited)
        os.utime(path, ns=(old, old))  # the mtime read before, to the nanosecond
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, old)
        assert await handle.get_value() == {"v": "bbbb"}


async def test_records_changed_a_moment_ago_are_not_cached(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.get_group("G")["k"].set_value(1)
        assert await store.get_group("G")["k"].get_value() == 1
        backend = store.backend
        assert isinstance(backend, FileBackend)
        assert (
            backend._cache._entries == {}
        )  # written just now: a second edit could share its mtime


async def test_updates_exclude_each_other_through_filelock_where_flock_is_missing(
    tmp_path: Path,
) -> None:
    async with await open_store(tmp_path, durability="fast") as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        # as on Windows, or a file system without flock(2)
        backend._stripes.flock_unsupported = True
        counter = store.get_group("G")["counter"]

        async def add_one(current: Any) -> int:
            await asyncio.sleep(0)
            return (0 if current is NoValue else current) + 1

        await asyncio.gather(*(counter.update(add_one) for _ in range(100)))
        assert await counter.get_value() == 100
        assert backend._stripes._filelocks  # filelock's locks were the ones used
        await store.get_group("G").clear_group()
        assert await store.list_groups() == []


@pytest.mark.parametrize("durability", ["full", "fast"])
@pytest.mark.parametrize("flock_missing", [False, True])
async def test_a_held_lock_times_out_as_lock_timeout_error(
    tmp_path: Path, durability: str, flock_missing: bool
) -> None:
    async with await open_store(tmp_path, durability=durability, lock_timeout=0.2) as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        backend._stripes.flock_unsupported = flock_missing
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        lock_directory = tmp_path / "app~1" / ".locks"
        held = []
        for stripe in range(64):  # another process holding every lock stripe
            descriptor = os.open(lock_directory / f"{stripe:02d}.lock", os.O_RDWR | os.O_CREAT)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            held.append(descriptor)
        try:
            with pytest.raises(LockTimeoutError, match="lock"):
                await handle.update(lambda current: current + 1)
            with pytest.raises(LockTimeoutError):
                await handle.clear_value()
        finally:
            for descriptor in held:
                os.close(descriptor)
        assert await handle.update(lambda current: current + 1) == 2


async def test_a_temp_file_name_taken_by_another_writer_is_drawn_again(tmp_path: Path) -> None:
    """Temp names are a per-process random part and a counter: one already taken (another
    host's writer, a forked child) is refused by O_EXCL, and the write goes on under another."""
    async with await open_store(tmp_path) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        group_directory = next(
            path
            for path in (tmp_path / "app~1").iterdir()
            if path.is_dir() and not path.name.startswith(".")
        )
        taken = temp_name()  # the name before the next: the next write's is one more
        prefix, _, rest = taken.rpartition("-")
        counter = rest[: -len(TEMP_SUFFIX)]
        token, number = counter[:8], int(counter[8:], 16)
        following = f"{prefix}-{token}{number + 1:x}{TEMP_SUFFIX}"
        (group_directory / following).write_bytes(b"another writer's")
        await handle.set_value(2)
        assert await handle.get_value() == 2
        assert (group_directory / following).read_bytes() == b"another writer's"


@pytest.mark.parametrize("durability", ["full", "fast"])
async def test_writes_waiting_for_a_writer_thread_are_given_no_extra_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    """Each write and clear waits for a writer thread, so the loop had its round: no sleep(0)."""
    store = await open_store(tmp_path, durability=durability)
    backend = store.backend
    turns = count_turns(backend, monkeypatch)
    group = store.get_group("g")
    # Well over TURN_EVERY of back-to-back writes: before, a turn every millisecond or so.
    for index in range(60):
        await group[f"k{index}"].set_value(index)
        await group[f"k{index}", "x"].clear_value()
    await group.clear_prefix("k1")
    assert turns == []
    assert await group["k2"].get_value() == 2
    await store.close()


@pytest.mark.parametrize("durability", ["full", "fast"])
async def test_one_task_writing_in_a_loop_keeps_one_writer_thread_hot(
    tmp_path: Path, durability: str
) -> None:
    """The thread answering a write is the one the next write goes to: it makes itself idle
    before it wakes the loop (which submitted the next write before the thread was back
    waiting, so two threads were woken in turn)."""
    threads: list[str] = []

    def rename(*args: Any, **kwargs: Any) -> None:
        threads.append(threading.current_thread().name)
        os.rename(*args, **kwargs)

    class Recording(FileIO):
        pass

    Recording.rename = staticmethod(rename)  # type: ignore[assignment]
    store = await open_store(tmp_path, durability=durability)
    backend = store.backend
    assert isinstance(backend, FileBackend)
    backend._io = Recording  # the real system calls, each rename's thread noted
    group = store.get_group("g")
    for index in range(200):
        await group[f"k{index % 20}"].set_value(index)
    await store.close()
    busiest = max(threads.count(name) for name in set(threads))
    assert busiest >= 190, sorted((threads.count(name), name) for name in set(threads))
