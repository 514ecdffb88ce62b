"""What a store's writes hold open between writes (group directories, lock files) is proven
current at every write: replaced, moved, removed or linked away, it is noticed as before."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from rapid_dev_storage import FileBackend, LockTimeoutError, Storage, StorageIOError
from rapid_dev_storage._file_layout import LOCK_DIRECTORY, lock_file_name, stripe_of
from rapid_dev_storage._file_locks import StripeLocks
from rapid_dev_storage._file_write_dirs import HELD_DIRECTORIES

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and dir_fd: POSIX")


async def open_store(path: Path, **options: Any) -> Storage:
    options.setdefault("codec", "json")
    return Storage(await FileBackend.create_backend_instance(path, "app", 1, **options))


def group_path(store: Storage, group: str) -> Path:
    backend = store.backend
    assert isinstance(backend, FileBackend)
    return Path(backend.record_path(group, ("k",))).parent


def run_script(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a process of its own (it changes its descriptor limit), given ``path``."""
    return subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("durability", ["full", "fast"])
@pytest.mark.parametrize("made_again", [False, True])
async def test_a_group_directory_moved_away_between_writes_is_not_written_again(
    tmp_path: Path, durability: str, made_again: bool
) -> None:
    """The write after lands in the directory at the path (made again by the write, or by
    someone else: a checkout), never in the one moved away."""
    async with await open_store(tmp_path, durability=durability) as store:
        group = store.get_group("G")
        await group["k"].set_value("first")
        directory = group_path(store, "G")
        moved = tmp_path / "moved"
        directory.rename(moved)
        if made_again:
            directory.mkdir()
        before = sorted(os.listdir(moved))
        await group["j"].set_value("second")
        await group["k"].set_value("third")
        assert sorted(os.listdir(moved)) == before  # the moved directory was left alone
        assert len(os.listdir(directory)) == 2
        assert await group["j"].get_value() == "second"
        assert await group["k"].get_value() == "third"


async def test_a_group_directory_replaced_by_a_link_between_writes_is_refused(
    tmp_path: Path,
) -> None:
    async with await open_store(tmp_path / "stores") as store:
        group = store.get_group("G")
        await group["k"].set_value("inside")
        directory = group_path(store, "G")
        outside = tmp_path / "outside"
        directory.rename(outside)
        directory.symlink_to(outside, target_is_directory=True)
        before = {path.name: path.read_bytes() for path in outside.iterdir()}
        with pytest.raises(StorageIOError) as caught:
            await group["k"].set_value("through the link")
        assert caught.value.errno == errno.ELOOP
        with pytest.raises(StorageIOError):
            await group["new"].set_value("through the link")
        assert {path.name: path.read_bytes() for path in outside.iterdir()} == before


async def test_a_group_directory_removed_between_writes_is_made_again(tmp_path: Path) -> None:
    async with await open_store(tmp_path, durability="full") as store:
        group = store.get_group("G")
        for number in range(5):
            await group["k"].set_value(number)
            shutil.rmtree(group_path(store, "G"))
        await group["k"].set_value("last")
        assert await group["k"].get_value() == "last"
        assert os.listdir(group_path(store, "G")) != []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
async def test_held_directories_are_bounded_and_closed_with_the_store(tmp_path: Path) -> None:
    before = open_descriptors()
    store = await open_store(tmp_path, durability="full")
    await store.get_group("G0")["k"].set_value(0)
    one_group = len(open_descriptors() - before)
    for number in range(1, 2 * HELD_DIRECTORIES + 8):
        await store.get_group(f"G{number}")["k"].set_value(number)
    # Lock files: 64 at most, one per stripe; directories: HELD_DIRECTORIES at most.
    assert len(open_descriptors() - before) <= one_group + 64 + HELD_DIRECTORIES
    await store.close()
    assert open_descriptors() == before


@pytest.mark.parametrize("durability", ["full", "fast"])
async def test_a_lock_file_made_again_between_writes_is_the_one_that_counts(
    tmp_path: Path, durability: str
) -> None:
    """The lock file a store held open since its last write is not "the" lock once replaced:
    a lock on the file now at the path excludes the store's next write.

    (flock excludes open files, not processes: a descriptor of our own opened here holds it
    against the store's as another process's would.)
    """
    async with await open_store(tmp_path, durability=durability, lock_timeout=0.3) as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        handle = store.get_group("G")["k"]
        await handle.set_value(1)  # the store now holds the stripe's lock file open
        directory, name = os.path.split(backend.record_path("G", ("k",)))
        stripe = stripe_of(os.path.basename(directory), name)
        lock_file = tmp_path / "app~1" / LOCK_DIRECTORY / lock_file_name(stripe)
        lock_file.unlink()  # made again by another writer, which holds it
        other = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(other, fcntl.LOCK_EX)
            with pytest.raises(LockTimeoutError):
                await handle.set_value(2)
            assert await handle.get_value() == 1
        finally:
            os.close(other)
        await handle.set_value(3)
        assert await handle.get_value() == 3


OUT_OF_DESCRIPTORS = """
import asyncio, os, resource, sys
from rapid_dev_storage import FileBackend, Storage

async def main() -> None:
    store = Storage(await FileBackend.create_backend_instance(sys.argv[1], "app", 1))
    for number in range(40):  # holds group directories and lock files open
        await store.get_group(f"G{number}")["k"].set_value(number)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 2, hard))
    try:
        for number in range(40, 60):  # each needs more descriptors than are left
            await store.get_group(f"G{number}")["k"].set_value(number)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    for number in range(60):
        assert await store.get_group(f"G{number}")["k"].get_value() == number
    await store.close()
    print("ok")

asyncio.run(main())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_writes_out_of_descriptors_close_what_is_held_between_writes(tmp_path: Path) -> None:
    """What the writes hold open between them goes before a write fails for want of one."""
    done = run_script(OUT_OF_DESCRIPTORS, tmp_path)
    assert done.stdout.strip() == "ok", done.stderr


async def test_locks_replaced_by_a_file_between_writes_is_named_as_such(tmp_path: Path) -> None:
    """The lock file's proof of currency (an lstat through ``.locks``) meets a file where the
    directory was: the write says what is there and what to do, not "Not a directory"."""
    store = await open_store(tmp_path)
    handle = store.get_group("G")["k"]
    await handle.set_value(1)
    locks = group_path(store, "G").parent / LOCK_DIRECTORY
    shutil.rmtree(locks)
    locks.write_text("a person's file")
    with pytest.raises(StorageIOError, match="is a regular file, not a directory"):
        await handle.set_value(2)
    assert await handle.get_value() == 1
    assert locks.read_text() == "a person's file"
    await store.close()


IDLE_STORES = """
import asyncio, os, resource, sys
from rapid_dev_storage import FileBackend, Storage
from rapid_dev_storage._held_budget import HELD

async def main() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    before = len(os.listdir("/proc/self/fd"))
    stores = [
        Storage(await FileBackend.create_backend_instance(sys.argv[1], f"app{n}", 1))
        for n in range(6)
    ]
    for store in stores:  # each writes and reads 12 groups: lock files and directories held
        for number in range(12):
            handle = store.get_group(f"G{number}")["k", str(number)]
            await handle.set_value(number)
            assert await handle.get_value() == number
    idle = len(os.listdir("/proc/self/fd")) - before
    assert HELD.held <= 256 // 8, HELD.held
    mine = [open(os.path.join(sys.argv[1], f"app-file-{n}"), "w") for n in range(150)]
    for file in mine:
        file.close()
    for store in stores:
        await store.close()
    assert HELD.held == 0, HELD.held
    print("ok", idle)

asyncio.run(main())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_idle_stores_leave_the_application_its_descriptors(tmp_path: Path) -> None:
    """Six idle stores used to hold 240 of 256 descriptors (lock files and group directories
    kept between operations), and the application's own open() failed: one budget, an eighth
    of the limit, for the whole process."""
    done = run_script(IDLE_STORES, tmp_path)
    assert done.stdout.startswith("ok"), done.stderr
    assert int(done.stdout.split()[1]) <= 256 // 8 + 12  # held ones, and each store's own few


CONCURRENT_OUT_OF_DESCRIPTORS = """
import asyncio, resource, sys
from rapid_dev_storage import FileBackend, Storage

async def main() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    backend = await FileBackend.create_backend_instance(sys.argv[1], "app", 1, durability="full")
    store = Storage(backend)
    for round in range(3):
        await asyncio.gather(
            *(store.get_group(f"g{n}")["k", str(round)].set_value(n) for n in range(200))
        )
    for n in range(200):
        assert await store.get_group(f"g{n}")["k", "2"].get_value() == n
    await store.close()
    print("ok")

asyncio.run(main())
"""


def test_concurrent_durable_writes_out_of_descriptors_wait_for_those_in_use(
    tmp_path: Path,
) -> None:
    """Under ``ulimit -n 64``, 200 durable writes at once in 200 groups: a write out of
    descriptors while every held one is in use (writes in flight, directory fsyncs to come)
    waits for them instead of failing (1-3 of 600 failed with EMFILE in 11 of 20 runs)."""
    for _ in range(3):
        done = run_script(CONCURRENT_OUT_OF_DESCRIPTORS, tmp_path)
        assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_a_forked_child_locks_against_its_parent_not_with_it(tmp_path: Path) -> None:
    """A flock belongs to the open file, which a fork shares: a child locking through the lock
    file its parent held open would hold the parent's lock with it. The child opens its own."""
    locks = StripeLocks(str(tmp_path), 0.3, (tmp_path / LOCK_DIRECTORY).mkdir)
    never = threading.Event()
    with locks.hold(5, never):  # the parent now holds stripe 5's lock file open
        pass
    read, write = os.pipe()  # the child says it holds the stripe
    done_read, done_write = os.pipe()  # the parent says it has tried
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: none here
        child = os.fork()
    if child == 0:  # the child holds the stripe until the parent has tried it
        try:
            with locks.hold(5, never):
                os.write(write, b"held")
                os.read(done_read, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(read, 4) == b"held"
        with pytest.raises(LockTimeoutError), locks.hold(5, never):
            pass
    finally:
        os.write(done_write, b"x")
        os.waitpid(child, 0)
        for descriptor in (read, write, done_read, done_write):
            os.close(descriptor)
        locks.close()
