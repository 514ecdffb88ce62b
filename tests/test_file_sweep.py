"""The sweep of abandoned temp files: off the opening's path for a large store, stopped by close.

A spy wraps the real `abandoned_temp` (it still judges and removes): it records which entries
were looked at, on which thread, and lets a test hold the sweep at one entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from rapid_dev_storage import FileBackend, Storage
from rapid_dev_storage import _file_sweep as file_sweep
from rapid_dev_storage import _file_temps as file_temps
from rapid_dev_storage._file_layout import TEMP_PREFIX, TEMP_SUFFIX
from rapid_dev_storage._file_sweep import INLINE_DIRECTORY_BYTES, INLINE_ENTRIES
from rapid_dev_storage.cli import main as cli

RECORDS = 4 * INLINE_ENTRIES  # more than opening looks at: the rest is the thread's
DEAD_PID = 2**22 + 4321  # above the default pid_max: no such process


class Spy:
    """Records every entry the sweep looks at and on which thread; can hold the sweep thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        self.hold = threading.Event()  # set: the sweep thread waits at its next entry...
        self.held = threading.Event()  # ...says so here...
        self.release = threading.Event()  # ...and goes on when this is set
        real = file_temps.abandoned_temp

        def spy(directory: Any, name: str, now: float, *, remove: bool) -> bool:
            thread = threading.current_thread().name
            if self.hold.is_set() and thread == "rapid_dev_storage sweep":
                self.held.set()
                self.release.wait(timeout=30)
            self.calls.append((thread, name))
            return real(directory, name, now, remove=remove)

        monkeypatch.setattr(file_temps, "abandoned_temp", spy)

    def on_sweep_thread(self) -> list[str]:
        return [name for thread, name in self.calls if thread == "rapid_dev_storage sweep"]


@pytest.fixture(autouse=True)
def sweep_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's thread starts a moment after opening, not a second: the tests wait less."""
    monkeypatch.setattr(file_sweep, "START_DELAY", 0.02)


def sweep_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rapid_dev_storage sweep"]


async def filled_store(root: Path) -> Path:
    """A store of `RECORDS` records in group G; return G's directory."""
    backend = await FileBackend.create_backend_instance(root, "app", 1, durability="fast")
    async with Storage(backend) as store:
        group = store.get_group("G")
        await asyncio.gather(*(group[f"k{n}"].set_value(n) for n in range(RECORDS)))
    return root / "app~1" / "^g"


async def with_orphans(
    root: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> tuple[Path, list[Path], Spy]:
    """A filled store with ``count`` orphans in G, and a spy on its sweeps from now on."""
    group = await filled_store(root)
    return group, orphans_in(group, count), Spy(monkeypatch)


def orphans_in(directory: Path, count: int) -> list[Path]:
    made = []
    for number in range(count):
        orphan = directory / f"{TEMP_PREFIX}{DEAD_PID}-{number:04x}{TEMP_SUFFIX}"
        orphan.write_bytes(b"half a record")
        made.append(orphan)
    return made


@contextlib.contextmanager
def live_temp(group: Path) -> Iterator[Path]:
    """A temp file whose writer is alive: it holds the file's lock, whatever its pid says."""
    path = group / f"{TEMP_PREFIX}{DEAD_PID + 1}-live{TEMP_SUFFIX}"
    path.write_bytes(b"being written")
    writer = os.open(path, os.O_RDWR)
    fcntl.flock(writer, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        os.close(writer)


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


async def test_a_large_store_opens_before_its_sweep_which_finishes_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = await filled_store(tmp_path)
    orphans = orphans_in(group, 5)
    writing = contextlib.ExitStack()
    live = writing.enter_context(live_temp(group))
    other_group = tmp_path / "app~1" / "^h"
    other_group.mkdir()
    orphans += orphans_in(other_group, 1)  # alone in its group: the group goes too
    spy = Spy(monkeypatch)
    backend = await FileBackend.create_backend_instance(tmp_path, "app", 1)
    looked_at_while_opening = len(spy.calls)
    async with Storage(backend) as store:
        # Opening looked at no more than its few entries; the store's entries are the thread's.
        assert os.stat(group).st_size > INLINE_DIRECTORY_BYTES
        assert looked_at_while_opening <= INLINE_ENTRIES < RECORDS
        assert await store.get_group("G")["k7"].get_value() == 7
        for _ in range(6000):  # at most a minute: the pytest timeout bounds it anyway
            if not any(orphan.exists() for orphan in orphans):
                break
            await asyncio.sleep(0.01)
        assert not any(orphan.exists() for orphan in orphans)
        assert live.exists()  # a live writer's temp file is never swept
        writing.close()
        assert spy.on_sweep_thread()
        assert not other_group.exists()
        assert sorted(await store.list_groups()) == ["G"]
    assert not sweep_threads()


async def test_closing_a_store_stops_its_sweep_between_two_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, orphans, spy = await with_orphans(tmp_path, monkeypatch, 3)
    spy.hold.set()
    descriptors = open_descriptors()
    backend = await FileBackend.create_backend_instance(tmp_path, "app", 1)
    assert await asyncio.to_thread(spy.held.wait, 30)  # the sweep thread is held at an entry
    closing = asyncio.create_task(backend.close())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not closing.done()  # close waits for the sweep to let go of the store...
    spy.release.set()
    await closing  # ...which it does after that one entry, without an error
    assert not sweep_threads()
    assert len(spy.on_sweep_thread()) == 1
    assert open_descriptors() == descriptors  # nothing left open
    remaining = sorted(os.listdir(group))
    await asyncio.sleep(0.05)  # anything still sweeping would remove an orphan now
    assert sorted(os.listdir(group)) == remaining
    assert len(spy.calls) < RECORDS + len(orphans)  # it stopped part of the way


async def test_a_store_closed_before_its_sweep_starts_is_not_swept_beyond_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, orphans, spy = await with_orphans(tmp_path, monkeypatch, 2)
    monkeypatch.setattr(file_sweep, "START_DELAY", 0.2)
    backend = await FileBackend.create_backend_instance(tmp_path, "app", 1)
    await backend.close()
    await asyncio.sleep(0.4)  # past the delay: a sweep not cancelled would have started
    assert not sweep_threads()
    assert spy.on_sweep_thread() == []
    assert all(orphan.exists() for orphan in orphans)


async def test_a_small_store_is_swept_whole_while_it_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await FileBackend.create_backend_instance(tmp_path, "app", 1)
    async with Storage(backend) as store:
        await store.get_group("G")["k"].set_value(1)
    orphans = orphans_in(tmp_path / "app~1" / "^g", 2)
    spy = Spy(monkeypatch)
    backend = await FileBackend.create_backend_instance(tmp_path, "app", 1)
    assert not any(orphan.exists() for orphan in orphans)
    assert not sweep_threads()  # no thread for a store swept while opening
    assert spy.calls
    assert not spy.on_sweep_thread()
    await backend.close()


async def test_read_only_opens_and_sweep_orphans_false_never_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, orphans, spy = await with_orphans(tmp_path, monkeypatch, 2)
    for options in ({"read_only": True}, {"sweep_orphans": False}):
        backend = await FileBackend.create_backend_instance(tmp_path, "app", 1, **options)
        assert not sweep_threads()
        await backend.close()
    assert spy.calls == []
    assert all(orphan.exists() for orphan in orphans)


def test_the_command_line_leaves_the_sweep_to_fsck(tmp_path: Path) -> None:
    """A command lasts a moment: it never sweeps; fsck reports orphans, --repair removes them."""
    location = f"file:{tmp_path}"
    runner = CliRunner()
    created = ["set", location, "G", "k", "-v", "1", "--create", "--name", "app", "--id", "1"]
    assert runner.invoke(cli, created).exit_code == 0
    (orphan,) = orphans_in(tmp_path / "app~1" / "^g", 1)
    assert runner.invoke(cli, ["set", location, "G", "k", "-v", "2"]).exit_code == 0
    assert orphan.exists()
    assert runner.invoke(cli, ["fsck", location]).exit_code == 1
    assert runner.invoke(cli, ["fsck", location, "--repair"]).exit_code == 0
    assert not orphan.exists()
