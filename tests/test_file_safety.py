"""FileBackend in a hostile or busy directory: links, FIFOs, other people's files, git, other
PID namespaces, editors that save in place. Real files, real processes, real tools."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rapid_dev_storage import (
    CorruptRecordError,
    FileBackend,
    IncompatibleStoreError,
    LockTimeoutError,
    NoValue,
    Storage,
    StorageIOError,
)
from rapid_dev_storage._file_io import FileIO

WORKER = Path(__file__).with_name("_worker.py")
PROMPT = 5.0  # seconds: anything that would hang (a FIFO) fails the test instead


async def open_store(path: Path, **options: Any) -> Storage:
    options.setdefault("codec", "json")
    return Storage(await FileBackend.create_backend_instance(path, "app", 1, **options))


def record_file(store: Storage, group: str, *keys: str) -> Path:
    backend = store.backend
    assert isinstance(backend, FileBackend)
    return Path(backend.record_path(group, keys))


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` with its bytes (links by their target, never followed)."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_file():
            found[name] = path.read_bytes()
        else:
            found[name] = "dir"
    return found


def fsck(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", "fsck", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- files that are not records -----------------------------------------------------------


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_clears_and_reads_leave_files_that_are_not_records_alone(
    tmp_path: Path, codec: str
) -> None:
    async with await open_store(tmp_path, codec=codec) as store:
        group = store.get_group("G")
        await group["k1"].set_value(1)
        await group["k2"].set_value(2)
        directory = record_file(store, "G", "k1").parent
        extension = ".json" if codec == "json" else ".msgpack"
        theirs = {
            "notes-from-the-design-meeting-v2" + extension: b"a person's notes",
            "ABCDEF0123456789ABCDEF0123456789" + extension: b"upper-case hex",
            "abcdef0123456789abcdef012345678" + extension: b"31 digits",
            "abcdef0123456789abcdef01234567890" + extension: b"33 digits",
            "abcdef0123456789abcdef0123456789" + extension + ".bak": b"a backup",
        }
        for name, data in theirs.items():
            (directory / name).write_bytes(data)
        problems: list[CorruptRecordError] = []
        items = {keys: value async for keys, value in group.all_items(on_corrupt=problems.append)}
        assert items == {("k1",): 1, ("k2",): 2}
        assert problems == []
        await group.clear_prefix("k1")
        await group.clear_group()
        assert [item async for item in group.all_items()] == []
        for name, data in theirs.items():
            assert (directory / name).read_bytes() == data  # every one of them is still there


# --- links ----------------------------------------------------------------------------------


def outside_directory(tmp_path: Path, store: Storage, group: str) -> Path:
    """A directory outside the store holding what would be the group's records, and more."""
    outside = tmp_path / "outside"
    outside.mkdir()
    name = record_file(store, group, "k").name
    (outside / name).write_text(json.dumps({"keys": ["k"], "value": "outside secret"}))
    (outside / "precious.txt").write_text("not yours")
    return outside


async def test_a_group_directory_linked_outside_the_store_is_never_followed(
    tmp_path: Path,
) -> None:
    store_root = tmp_path / "stores"
    async with await open_store(store_root) as store:
        await store.get_group("OTHER")["k"].set_value("inside")
        outside = outside_directory(tmp_path, store, "G")
        link = record_file(store, "G", "k").parent
        link.symlink_to(outside, target_is_directory=True)
        before = snapshot(outside)
        handle = store.get_group("G")["k"]
        attempts: list[Any] = [
            handle.get_value(),
            handle.set_value("written through a link"),
            handle.update(lambda current: "updated through a link"),
            handle.clear_value(),
            store.get_group("G").clear_group(),
            store.get_group("G").clear_prefix("k"),
            store.get_group("G")["new"].set_value(1),
        ]
        for attempt in attempts:
            with pytest.raises(StorageIOError) as caught:
                await asyncio.wait_for(attempt, PROMPT)
            assert caught.value.errno == errno.ELOOP
            assert str(link) in str(caught.value)
            assert "link" in str(caught.value)
        with pytest.raises(StorageIOError):
            _ = [item async for item in store.get_group("G").all_items()]
        assert await store.list_groups() == ["OTHER"]
        assert snapshot(outside) == before
    store_directory = str(store_root / "app~1")
    checked = fsck(f"file:{store_root}")
    assert checked.returncode == 1
    assert str(link) in checked.stdout
    assert "link" in checked.stdout
    repaired = fsck(f"file:{store_root}", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert not os.path.lexists(link)
    assert os.path.islink(os.path.join(store_directory, ".quarantine", "^g"))
    assert snapshot(outside) == before
    assert fsck(f"file:{store_root}").returncode == 0


async def test_a_record_file_linked_outside_is_not_a_record(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "stores") as store:
        handle = store.get_group("G")["k"]
        await handle.set_value("mine")
        path = record_file(store, "G", "k")
        outside = tmp_path / "outside.json"
        outside.write_text(json.dumps({"keys": ["k"], "value": "outside secret"}))
        path.unlink()
        path.symlink_to(outside)
        with pytest.raises(CorruptRecordError) as caught:
            await handle.get_value()
        assert caught.value.location == str(path)
        assert "symbolic link" in str(caught.value)
        problems: list[CorruptRecordError] = []
        assert [i async for i in store.get_group("G").all_items(on_corrupt=problems.append)] == []
        assert [problem.location for problem in problems] == [str(path)]
        await handle.set_value("replaced")  # the link is replaced, its target untouched
        assert not path.is_symlink()
        assert await handle.get_value() == "replaced"
        path.unlink()
        path.symlink_to(outside)
        await handle.clear_value()  # removes the link, never its target
        assert not os.path.lexists(path)
        assert json.loads(outside.read_text())["value"] == "outside secret"


@pytest.mark.parametrize("bookkeeping", [".locks", ".rapid-dev-storage.json"])
async def test_bookkeeping_linked_outside_is_refused(tmp_path: Path, bookkeeping: str) -> None:
    store_root = tmp_path / "stores"
    async with await open_store(store_root) as store:
        await store.get_group("G")["k"].set_value(1)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = store_root / "app~1" / bookkeeping
    if target.is_dir():
        shutil.rmtree(target)
    else:
        shutil.copy(target, outside / "marker.json")
        target.unlink()
    target.symlink_to(outside / ("marker.json" if bookkeeping.endswith(".json") else ""))
    before = snapshot(outside)
    with pytest.raises(IncompatibleStoreError) as caught:
        await open_store(store_root)
    assert "symbolic link" in str(caught.value)
    assert str(target) in str(caught.value)
    assert snapshot(outside) == before


# --- FIFOs and directories where records should be -----------------------------------------


async def test_a_fifo_named_like_a_record_is_an_error_never_a_hang(tmp_path: Path) -> None:
    store_root = tmp_path / "stores"
    store = await open_store(store_root)
    group = store.get_group("G")
    await group["ok"].set_value(1)
    await group["k"].set_value(2)
    fifo = record_file(store, "G", "k")
    fifo.unlink()
    os.mkfifo(fifo)
    with pytest.raises(CorruptRecordError) as caught:
        await asyncio.wait_for(group["k"].get_value(), PROMPT)
    assert caught.value.location == str(fifo)
    assert "FIFO" in str(caught.value)
    problems: list[CorruptRecordError] = []
    items = await asyncio.wait_for(_collect(group, problems), PROMPT)
    assert items == {("ok",): 1}
    assert [problem.location for problem in problems] == [str(fifo)]
    await asyncio.wait_for(group.clear_prefix("ok"), PROMPT)
    assert await group["ok"].get_value() is NoValue
    await asyncio.wait_for(store.close(), PROMPT)
    checked = fsck(f"file:{store_root}")
    assert checked.returncode == 1
    assert str(fifo) in checked.stdout
    assert "FIFO" in checked.stdout
    assert fsck(f"file:{store_root}", "--repair").returncode == 0
    assert not os.path.lexists(fifo)


async def _collect(group: Any, problems: list[CorruptRecordError]) -> dict[Any, Any]:
    return {keys: value async for keys, value in group.all_items(on_corrupt=problems.append)}


async def test_a_directory_where_a_record_should_be_is_named_in_errors(tmp_path: Path) -> None:
    store_root = tmp_path / "stores"
    async with await open_store(store_root) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        path = record_file(store, "G", "k")
        path.unlink()
        path.mkdir()
        (path / "inside").write_text("something")
        with pytest.raises(CorruptRecordError) as caught:
            await handle.get_value()
        assert caught.value.location == str(path)
        for write in (handle.set_value(2), handle.clear_value()):
            with pytest.raises(StorageIOError) as failed:
                await write
            assert str(path) in str(failed.value)
            assert ".tmp" not in str(failed.value)
        assert [name for name in os.listdir(path.parent) if name.endswith(".tmp")] == []
    checked = fsck(f"file:{store_root}")
    assert checked.returncode == 1
    assert "directory" in checked.stdout


# --- bookkeeping removed by real tools ------------------------------------------------------


def git(repository: Path, *arguments: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments],
        cwd=repository,
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize("committed", [True, False])
async def test_git_clean_under_a_running_store_never_stops_writes(
    tmp_path: Path, committed: bool
) -> None:
    git(tmp_path, "init", "-q")
    async with await open_store(tmp_path / "data") as store:
        group = store.get_group("G")
        await group["counter"].set_value(0)
        await group["other"].set_value("x")
        if committed:
            git(tmp_path, "add", "-A")
            git(tmp_path, "commit", "-q", "-m", "fixtures")
        git(tmp_path, "clean", "-fdxq")
        assert not (tmp_path / "data" / "app~1" / ".locks").exists()
        assert await group["counter"].update(lambda value: (value or 0) + 1) == 1
        await group["other"].clear_value()
        await group["new"].set_value("after the clean")
        git(tmp_path, "clean", "-fdxq")
        await group.clear_group()
        await group["counter"].set_value(5)
    async with await open_store(tmp_path / "data") as reopened:  # marker made again too
        assert await reopened.get_group("G")["counter"].get_value() == 5


def test_a_lock_file_made_again_is_the_one_that_counts(tmp_path: Path) -> None:
    """After .locks is removed, another process's lock on the new file excludes us."""

    async def write(value: int) -> None:
        async with await open_store(tmp_path, lock_timeout=0.3) as store:
            await store.get_group("G")["k"].set_value(value)

    async def blocked() -> None:
        async with await open_store(tmp_path, lock_timeout=0.3) as store:
            handle = store.get_group("G")["k"]
            with pytest.raises(LockTimeoutError):
                await handle.update(lambda value: value + 1)
            with pytest.raises(LockTimeoutError):
                await handle.set_value(3)

    async def free() -> int:
        async with await open_store(tmp_path, lock_timeout=0.3) as store:
            return int(await store.get_group("G")["k"].update(lambda value: value + 1))

    asyncio.run(write(1))
    locks = tmp_path / "app~1" / ".locks"
    shutil.rmtree(locks)
    locks.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fds = [os.open({str(locks)!r} + f'/{{n:02d}}.lock', os.O_RDWR | os.O_CREAT)"
            " for n in range(64)]\n"
            "[fcntl.flock(fd, fcntl.LOCK_EX) for fd in fds]\n"
            "print('held', flush=True)\nsys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    assert holder.stdout.readline().strip() == "held"
    try:
        asyncio.run(blocked())
    finally:
        holder.stdin.close()
        holder.wait()
        holder.stdout.close()
    assert asyncio.run(free()) == 2


# --- temp files of writers in other PID namespaces ------------------------------------------


def test_temp_files_of_writers_are_never_swept_from_another_pid_namespace(
    tmp_path: Path,
) -> None:
    """A store opened in a container sharing the volume sees no live pid: locks tell instead."""
    namespace = ["unshare", "--pid", "--fork", "--mount-proc"]
    if subprocess.run([*namespace, "true"], capture_output=True, check=False).returncode:
        pytest.skip("cannot make a PID namespace here (needs root or user namespaces)")
    writer = subprocess.Popen(
        [sys.executable, str(WORKER), "write-big", "file", str(tmp_path), "12", "24"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().startswith("wrote")  # the store exists
    stop = tmp_path / "stop"
    sweeper = subprocess.Popen(
        [*namespace, sys.executable, str(WORKER), "sweep-until", "file", str(tmp_path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = writer.communicate(timeout=120)
    stop.touch()
    sweeps, sweep_errors = sweeper.communicate(timeout=60)
    assert sweeper.returncode == 0, sweep_errors
    assert writer.returncode == 0, err
    assert out.splitlines()[-1] == "failures 0", err
    assert int(sweeps) >= 5


# --- reads that meet other people's tools ---------------------------------------------------


def test_an_unreadable_record_is_reported_to_on_corrupt(tmp_path: Path) -> None:
    script = """
import asyncio, sys
from rapid_dev_storage import FileBackend, Storage

async def main():
    store = Storage(await FileBackend.create_backend_instance(sys.argv[1], "app", 1))
    problems = []
    async with store:
        items = [k async for k, _ in store.get_group("G").all_items(on_corrupt=problems.append)]
    print(sorted(items), [p.location for p in problems])

asyncio.run(main())
"""

    async def make() -> Path:
        async with await open_store(tmp_path) as store:
            for key in ("a", "b", "c"):
                await store.get_group("G")[key].set_value(key)
            return record_file(store, "G", "b")

    unreadable = asyncio.run(make())
    unreadable.chmod(0)
    command = [sys.executable, "-c", script, str(tmp_path)]
    if os.geteuid() == 0:  # root reads anything: drop the capability that lets it
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"[('a',), ('c',)] [{str(unreadable)!r}]"


def test_reads_during_in_place_saves_are_never_corrupt(tmp_path: Path) -> None:
    """``cp`` over a record (as nano and many tools save) while another process reads it."""

    async def make() -> tuple[Path, Path, Path]:
        async with await open_store(tmp_path) as store:
            handle = store.get_group("G")["k"]
            versions = []
            for name in ("a", "b"):
                await handle.set_value({"version": name, "rows": [name * 40] * 800})
                copy = tmp_path / f"{name}.json"
                shutil.copy(record_file(store, "G", "k"), copy)
                versions.append(copy)
            return record_file(store, "G", "k"), versions[0], versions[1]

    path, first, second = asyncio.run(make())
    saver = subprocess.Popen(
        ["sh", "-c", f"for i in $(seq 300); do cp {first} {path}; cp {second} {path}; done"]
    )

    async def read_while_saving() -> tuple[int, int]:
        reads = corrupt = 0
        async with await open_store(tmp_path) as store:
            handle = store.get_group("G")["k"]
            while saver.poll() is None:
                try:
                    assert (await handle.get_value())["version"] in ("a", "b")
                except CorruptRecordError:
                    corrupt += 1
                reads += 1
                await asyncio.sleep(0)
        return reads, corrupt

    reads, corrupt = asyncio.run(read_while_saving())
    assert saver.wait() == 0
    assert reads > 100
    assert corrupt == 0, f"{corrupt} of {reads} reads called a record mid-save corrupt"


def finish_the_save_when_read_again(store: Storage, path: Path, saved: bytes) -> None:
    """Write ``saved`` back to ``path`` the moment the store reads a record again to let it settle
    (its first look found the record half-saved): a save finishing while the read waits."""
    backend = store.backend
    assert isinstance(backend, FileBackend)
    read_again = backend._read_again

    async def the_save_finishes(
        group: str, keys: tuple[str, ...] | None, source: str | None
    ) -> bytes | None:
        path.write_bytes(saved)
        return await read_again(group, keys, source)

    backend._read_again = the_save_finishes  # type: ignore[method-assign]


async def test_an_empty_record_is_waited_for_longer(tmp_path: Path) -> None:
    """A save that truncated the record and waits (for a core, for the disk) has left it empty
    longer than a changing record is waited for: the read waits for the save to finish."""
    async with await open_store(tmp_path) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value({"v": 1})
        path = record_file(store, "G", "k")
        saved = path.read_bytes()
        path.write_bytes(b"")
        await asyncio.sleep(0.4)  # changed longer ago than a non-empty record is waited for
        finish_the_save_when_read_again(store, path, saved)
        assert await handle.get_value() == {"v": 1}


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_a_record_saved_in_place_with_an_old_mtime_is_waited_for(
    tmp_path: Path, codec: str
) -> None:
    """A save that keeps (``rsync -a``, ``cp -p``) or has not yet set (ext4's truncate) a fresh
    mtime: the change time says the record is changing, and the read waits for it."""
    async with await open_store(tmp_path, codec=codec) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value({"v": list(range(100))})
        path = record_file(store, "G", "k")
        saved = path.read_bytes()
        path.write_bytes(saved[: len(saved) // 2])
        old = time.time() - 60
        os.utime(path, (old, old))  # the mtime a minute old; the ctime is now
        finish_the_save_when_read_again(store, path, saved)
        assert await handle.get_value() == {"v": list(range(100))}


REWRITE_IN_PLACE = """
import sys
path, half = sys.argv[1], int(sys.argv[2])
with open(sys.argv[3], "rb") as source:
    new = source.read()
with open(path, "r+b") as record:  # in place, as git checkout and cp write: no rename
    record.truncate(0)
    record.write(new[:half])
    record.flush()
    print("half", flush=True)
    sys.stdin.readline()  # the scan has met the half-written record
    record.write(new[half:])
"""


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_a_scan_waits_for_a_record_half_written_in_place(tmp_path: Path, codec: str) -> None:
    """A scan meeting a record another process is rewriting waits for it, as a get does."""
    new = tmp_path / "new"

    async def make() -> Path:
        async with await open_store(tmp_path, codec=codec) as store:
            group = store.get_group("G")
            for key in ("a", "b", "c"):
                await group[key].set_value({"version": 1, "key": key})
            await group["b"].set_value({"version": 2, "rows": ["x" * 40] * 50})
            shutil.copy(record_file(store, "G", "b"), new)  # the bytes the other process writes
            await group["b"].set_value({"version": 1, "key": "b"})
            return record_file(store, "G", "b")

    async def scan_while_half_written(go: Any) -> dict[Any, Any]:
        async with await open_store(tmp_path, codec=codec) as store:
            scan = asyncio.ensure_future(_items(store.get_group("G")))
            for _ in range(100):  # the scan reads the group on the loop, meeting the half record
                await asyncio.sleep(0)
            assert not scan.done(), scan.exception()  # not reported corrupt: waiting for it
            go.write("go\n")
            go.flush()
            return await asyncio.wait_for(scan, PROMPT)

    path = asyncio.run(make())
    writer = subprocess.Popen(
        [sys.executable, "-c", REWRITE_IN_PLACE, str(path), "100", str(new)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdin is not None
    try:
        assert writer.stdout.readline() == "half\n"
        items = asyncio.run(scan_while_half_written(writer.stdin))
    finally:
        writer.communicate(timeout=PROMPT)
    assert writer.returncode == 0
    assert items == {
        ("a",): {"version": 1, "key": "a"},
        ("b",): {"version": 2, "rows": ["x" * 40] * 50},
        ("c",): {"version": 1, "key": "c"},
    }


async def _items(group: Any) -> dict[Any, Any]:
    return {keys: value async for keys, value in group.all_items()}


async def test_a_record_left_broken_is_still_reported_by_scans(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        group = store.get_group("G")
        for key in ("a", "b"):
            await group[key].set_value(1)
        broken = record_file(store, "G", "b")
        broken.write_text('{"keys": ["b"], "val')  # just now: looked at again, then reported
        problems: list[CorruptRecordError] = []
        items = [keys async for keys, _ in group.all_items(on_corrupt=problems.append)]
    assert items == [("a",)]
    assert [problem.location for problem in problems] == [str(broken)]


def test_a_record_left_broken_is_still_reported_promptly(tmp_path: Path) -> None:
    async def check() -> float:
        async with await open_store(tmp_path) as store:
            handle = store.get_group("G")["k"]
            await handle.set_value(1)
            record_file(store, "G", "k").write_text("<<<<<<< HEAD\n")
            started = time.monotonic()
            with pytest.raises(CorruptRecordError):
                await handle.get_value()
            return time.monotonic() - started

    assert asyncio.run(check()) < 3  # looked at again while it might be mid-save, then reported


async def test_a_watch_starts_and_reports_beside_a_fifo(tmp_path: Path) -> None:
    async with await open_store(tmp_path, durability="fast") as store:
        group = store.get_group("G")
        await group["k"].set_value(1)
        fifo = record_file(store, "G", "k")
        fifo.unlink()
        os.mkfifo(fifo)
        async with store.watch("G") as changes:
            await asyncio.wait_for(group["other"].set_value(2), PROMPT)
            change = await asyncio.wait_for(changes.__anext__(), PROMPT)
            assert (change.keys, change.value) == (("other",), 2)
        await asyncio.wait_for(store.close(), PROMPT)


# --- found by an attacker's review ----------------------------------------------------------


async def test_fsck_never_moves_anything_through_a_quarantine_link(tmp_path: Path) -> None:
    store_root = tmp_path / "stores"
    async with await open_store(store_root) as store:
        await store.get_group("USER")["u1"].set_value(1)
        group_directory = record_file(store, "USER", "u1").parent
    broken = group_directory / ("0123456789abcdef" * 2 + ".json")
    broken.write_text("garbage")
    outside = tmp_path / "outside"
    outside.mkdir()
    (store_root / "app~1" / ".quarantine").symlink_to(outside, target_is_directory=True)
    repaired = fsck(f"file:{store_root}", "--repair")
    assert repaired.returncode == 1  # the link, and what could not be moved through it
    assert ".quarantine" in repaired.stdout
    assert list(outside.iterdir()) == []
    assert broken.exists()


async def test_fsck_reports_and_repairs_links_among_the_lock_files(tmp_path: Path) -> None:
    store_root = tmp_path / "stores"
    async with await open_store(store_root) as store:
        await store.get_group("G")["k"].set_value(1)
    outside = tmp_path / "outside"
    outside.mkdir()
    locks = store_root / "app~1" / ".locks"
    shutil.rmtree(locks)
    locks.mkdir()
    for stripe in range(64):
        (locks / f"{stripe:02d}.lock").symlink_to(outside / f"{stripe:02d}")
    checked = fsck(f"file:{store_root}")
    assert checked.returncode == 1
    assert checked.stdout.count("symlink") == 64
    assert fsck(f"file:{store_root}", "--repair").returncode == 0
    assert fsck(f"file:{store_root}").returncode == 0
    async with await open_store(store_root) as store:
        await store.get_group("G")["k"].update(lambda value: value + 1)
    assert list(outside.iterdir()) == []


async def test_removing_the_lock_directory_again_and_again_leaks_no_descriptor(
    tmp_path: Path,
) -> None:
    async with await open_store(tmp_path) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value(0)
        before = len(os.listdir("/proc/self/fd"))
        for number in range(100):
            shutil.rmtree(tmp_path / "app~1" / ".locks")
            await handle.set_value(number)
        assert len(os.listdir("/proc/self/fd")) <= before


async def test_a_removed_marker_is_made_again_by_the_next_write(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.get_group("G")["a"].set_value(1)
        marker = tmp_path / "app~1" / ".rapid-dev-storage.json"
        original = marker.read_bytes()
        marker.unlink()  # git checkout of a branch without the store, a person
        await store.get_group("G")["b"].set_value(2)
        assert marker.read_bytes() == original
    async with await open_store(tmp_path) as again:  # another process can open it
        assert await again.get_group("G")["b"].get_value() == 2


async def test_a_write_whose_temp_file_is_removed_under_it_is_written_again(
    tmp_path: Path,
) -> None:
    """`git clean -fdx` removes a temp file while its write is in flight: nothing landed."""

    class CleanedMidWrite(FileIO):
        cleaned = 0

        @staticmethod
        def fsync(descriptor: int) -> None:
            os.fsync(descriptor)
            if CleanedMidWrite.cleaned < 2 and not os.path.isdir(f"/proc/self/fd/{descriptor}"):
                CleanedMidWrite.cleaned += 1
                for temp in (tmp_path / "app~1").rglob(".rds-*.tmp"):
                    temp.unlink()

    async with await open_store(tmp_path) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value("committed")
        backend = store.backend
        assert isinstance(backend, FileBackend)
        backend._io = CleanedMidWrite
        await handle.set_value("new")
        assert CleanedMidWrite.cleaned == 2
        assert await handle.get_value() == "new"


def test_fsck_leaves_records_it_cannot_read_in_place(tmp_path: Path) -> None:
    async def make() -> Path:
        async with await open_store(tmp_path) as store:
            await store.get_group("G")["a"].set_value(1)
            return record_file(store, "G", "a")

    unreadable = asyncio.run(make())
    unreadable.chmod(0)
    command = [sys.executable, "-m", "rapid_dev_storage", "fsck", f"file:{tmp_path}", "--repair"]
    if os.geteuid() == 0:
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unreadable" in result.stdout
    assert unreadable.exists()


def test_show_refuses_a_fifo_instead_of_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / ("0" * 32 + ".msgpack")
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", "show", str(fifo)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "FIFO" in result.stderr
