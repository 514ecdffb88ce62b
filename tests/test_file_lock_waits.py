"""A lock stripe held by another process holds back only the writes of that stripe's records."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from rapid_dev_storage import FileBackend, LockTimeoutError, NoValue, Storage
from rapid_dev_storage._file_jobs import FAST_WRITER_THREADS, WRITER_THREADS
from rapid_dev_storage._file_layout import LOCK_DIRECTORY, lock_file_name, stripe_of

HOLDER = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()  # until told to let go
"""


class Holder:
    """Another process holding one lock file's flock until `release`."""

    def __init__(self, path: Path) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline() == "held\n"

    def release(self) -> None:
        """Let go (once: later calls do nothing), and wait for the process to end."""
        if self._process.returncode is None:
            self._process.communicate("go\n", timeout=30)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.release()


def keys_by_stripe(
    backend: FileBackend, group: str, stripe: int, count: int
) -> tuple[list[str], list[str]]:
    """Return ``count`` record names in ``stripe`` and ``count`` in other stripes."""
    inside: list[str] = []
    outside: list[str] = []
    number = 0
    while len(inside) < count or len(outside) < count:
        name = f"k{number}"
        number += 1
        directory, file_name = os.path.split(backend.record_path(group, (name,)))
        mine = stripe_of(os.path.basename(directory), file_name) == stripe
        chosen = inside if mine else outside
        if len(chosen) < count:
            chosen.append(name)
    return inside, outside


@pytest.mark.parametrize("durability", ["full", "fast"])
async def test_writes_of_other_stripes_go_on_while_another_process_holds_one(
    tmp_path: Path, durability: str, holders: list[Holder]
) -> None:
    """More writes wait for the held stripe than there are writer threads; the rest land
    meanwhile, and the waiting ones land once the other process lets go."""
    threads = WRITER_THREADS if durability == "full" else FAST_WRITER_THREADS
    backend = await FileBackend.create_backend_instance(
        tmp_path, "app", 1, durability=durability, lock_timeout=120
    )
    async with Storage(backend) as store:
        group = store.get_group("G")
        await group["first"].set_value(0)  # .locks and the group's directory exist
        stripe = 7
        blocked_names, free_names = keys_by_stripe(backend, "G", stripe, 2 * threads)
        holder = Holder(tmp_path / "app~1" / LOCK_DIRECTORY / lock_file_name(stripe))
        holders.append(holder)
        blocked = [asyncio.ensure_future(group[name].set_value(name)) for name in blocked_names]
        await asyncio.sleep(0.05)  # the blocked writes reach their stripe first
        free = [asyncio.ensure_future(group[name].set_value(name)) for name in free_names]
        done, _ = await asyncio.wait(free, timeout=60)
        assert done == set(free)
        for write in free:
            write.result()
        assert not any(write.done() for write in blocked)
        holder.release()
        await asyncio.gather(*blocked)
        for name in blocked_names + free_names:
            assert await group[name].get_value() == name


async def test_a_write_waiting_for_another_process_times_out_without_holding_a_thread(
    tmp_path: Path, holders: list[Holder]
) -> None:
    backend = await FileBackend.create_backend_instance(
        tmp_path, "app", 1, durability="full", lock_timeout=5.0
    )
    async with Storage(backend) as store:
        group = store.get_group("G")
        await group["first"].set_value(0)
        stripe = 3
        blocked_names, free_names = keys_by_stripe(backend, "G", stripe, 2 * WRITER_THREADS)
        lock_file = tmp_path / "app~1" / LOCK_DIRECTORY / lock_file_name(stripe)
        holders.append(Holder(lock_file))
        blocked = [asyncio.ensure_future(group[name].set_value(1)) for name in blocked_names]
        await asyncio.sleep(0.05)
        free = [asyncio.ensure_future(group[name].set_value(1)) for name in free_names]
        done, _ = await asyncio.wait(free, timeout=60)
        assert done == set(free)
        assert not any(write.done() for write in blocked)
        outcomes = await asyncio.gather(*blocked, return_exceptions=True)
        for outcome in outcomes:
            assert isinstance(outcome, LockTimeoutError)
            assert outcome.timeout == 5.0
            assert outcome.location == str(lock_file)
        for name in blocked_names:
            assert await group[name].get_value() is NoValue


async def test_a_clear_waiting_for_another_process_holds_back_no_other_record(
    tmp_path: Path, holders: list[Holder]
) -> None:
    """A clear waits for the held stripe on its own thread, without this process's guard of the
    stripe: the writes of other records in that stripe give their threads back meanwhile, so
    more of them than there are writer threads do not hold back the writes of other stripes."""
    backend = await FileBackend.create_backend_instance(
        tmp_path, "app", 1, durability="full", lock_timeout=120
    )
    async with Storage(backend) as store:
        stripe = 5
        cleared, _ = keys_by_stripe(backend, "G", stripe, 1)
        same_stripe, other_stripes = keys_by_stripe(backend, "H", stripe, 2 * WRITER_THREADS)
        await store.get_group("G")[cleared[0]].set_value(0)
        holder = Holder(tmp_path / "app~1" / LOCK_DIRECTORY / lock_file_name(stripe))
        holders.append(holder)
        clear = asyncio.ensure_future(store.get_group("G").clear_group())
        await asyncio.sleep(0.05)  # the clear waits for the stripe first
        group = store.get_group("H")
        blocked = [asyncio.ensure_future(group[name].set_value(name)) for name in same_stripe]
        await asyncio.sleep(0.05)
        free = [asyncio.ensure_future(group[name].set_value(name)) for name in other_stripes]
        done, _ = await asyncio.wait(free, timeout=20)
        assert done == set(free)
        assert not clear.done()
        holder.release()
        await asyncio.gather(clear, *blocked)
        assert await store.get_group("G")[cleared[0]].get_value() is NoValue
        for name in same_stripe + other_stripes:
            assert await group[name].get_value() == name
