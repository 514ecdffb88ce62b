"""Concurrent durable writes: shared directory fsyncs, per-record order, crashes mid-batch."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rapid_dev_storage import FileBackend, NoValue, Storage
from rapid_dev_storage._file_io import FileIO
from rapid_dev_storage._file_layout import TEMP_PREFIX, TEMP_SUFFIX

WORKER = Path(__file__).with_name("_worker.py")


async def open_store(path: Path, name: str = "app", **options: Any) -> Storage:
    return Storage(await FileBackend.create_backend_instance(path, name, 1, **options))


async def test_concurrent_durable_sets_share_directory_fsyncs_that_follow_each_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 sets at once cause fewer than 64 directory fsyncs (real ones, counted), and each set
    returns only after a directory fsync that began once its rename was done."""
    clock = itertools.count()  # next() is atomic: one order for events on every thread
    renamed: dict[str, int] = {}
    directory_syncs: list[tuple[int, int]] = []  # (began, ended)

    def fsync(descriptor: int) -> None:
        is_directory = stat.S_ISDIR(os.fstat(descriptor).st_mode)
        began = next(clock)
        os.fsync(descriptor)
        if is_directory:
            directory_syncs.append((began, next(clock)))

    def rename(source: str, target: str, **directories: Any) -> None:
        os.rename(source, target, **directories)
        renamed[target] = next(clock)

    monkeypatch.setattr(FileIO, "fsync", staticmethod(fsync))
    monkeypatch.setattr(FileIO, "rename", staticmethod(rename))
    async with await open_store(tmp_path, durability="full") as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        group = store.get_group("G")
        await group["first"].set_value(0)  # the group's directory exists before the batch
        directory_syncs.clear()
        acknowledged: dict[str, int] = {}

        async def write(number: int) -> None:
            await group[f"k{number}"].set_value(number)
            acknowledged[f"k{number}"] = next(clock)

        await asyncio.gather(*(write(number) for number in range(64)))
        for number in range(64):
            assert await group[f"k{number}"].get_value() == number
        names = {key: os.path.basename(backend.record_path("G", (key,))) for key in acknowledged}
    assert 1 <= len(directory_syncs) < 64, directory_syncs
    for key, answered in acknowledged.items():
        landed = renamed[names[key]]
        assert any(landed < began and ended < answered for began, ended in directory_syncs), key


@pytest.mark.parametrize("durability", ["full", "fast"])
async def test_one_records_writes_keep_their_order_among_many_and_under_cancellation(
    tmp_path: Path, durability: str
) -> None:
    """Three writes of each of 32 records at once, some cancelled (running or queued): what a
    record holds is its last write that returned, or a later one; then write, then read."""
    store = await open_store(tmp_path, durability=durability)
    group = store.get_group("G")
    for round_number in range(6):
        writes: dict[tuple[int, int], asyncio.Future[None]] = {}
        for record in range(32):
            for number in range(3):
                pad = "x" * (300_000 if number == 0 else 10)  # the first one runs a while
                value = {"round": round_number, "n": number, "pad": pad}
                writes[record, number] = asyncio.ensure_future(group[f"k{record}"].set_value(value))
        await asyncio.sleep(0.001 * round_number)
        for (record, number), write in writes.items():
            if (record + number + round_number) % 2:
                write.cancel()
        await asyncio.gather(*writes.values(), return_exceptions=True)
        for record in range(32):
            returned = [
                number
                for number in range(3)
                if not writes[record, number].cancelled()
                and writes[record, number].exception() is None
            ]
            value = await group[f"k{record}"].get_value()
            if returned:
                assert value["round"] == round_number
                assert value["n"] >= max(returned), (record, returned, value["n"])
        await asyncio.gather(
            *(group[f"k{record}"].set_value([round_number, record]) for record in range(32))
        )
        for record in range(32):
            assert await group[f"k{record}"].get_value() == [round_number, record]
    await store.close()  # waits for any cancelled write still running
    async with await open_store(tmp_path, durability=durability) as reopened:
        group = reopened.get_group("G")
        for record in range(32):
            assert await group[f"k{record}"].get_value() == [5, record]


def run_writers(path: Path, durability: str, tasks: int, rounds: int) -> subprocess.Popen[str]:
    counts = (str(tasks), str(rounds))
    return subprocess.Popen(
        [sys.executable, str(WORKER), "write-concurrently", durability, str(path), *counts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def records_on_disk(path: Path) -> dict[str, Any]:
    """Every record of the "commit" store's group G; each must be whole."""
    backend = await FileBackend.create_backend_instance(path, "commit", 1)
    async with Storage(backend) as store:
        records = {keys[0]: value async for keys, value in store.get_group("G").all_items()}
    assert all(value["pad"] == "x" * 4_000 for value in records.values())
    return records


@pytest.mark.slow  # four writers killed: 5-15 s
@pytest.mark.parametrize("durability", ["full", "fast"])
def test_a_writer_killed_mid_batch_tears_nothing_and_loses_no_acknowledged_write(
    tmp_path: Path, durability: str
) -> None:
    acknowledged: dict[str, int] = {}  # over every round: earlier writers' records stay
    for round_number in range(4):
        writer = run_writers(tmp_path, durability, 64, 0)
        assert writer.stdout is not None
        target = 100 + 97 * round_number  # writes acknowledged before the kill
        for count, line in enumerate(writer.stdout):
            key, sequence = line.split()
            acknowledged[key] = int(sequence)
            if count >= target:
                break
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        assert writer.stderr is not None
        writer.stderr.close()
        records = asyncio.run(records_on_disk(tmp_path))
        lost = [
            key for key, sequence in acknowledged.items() if records[key]["sequence"] < sequence
        ]
        assert lost == [], f"acknowledged writes lost: {lost}"


@pytest.mark.parametrize("durability", ["full", "fast"])
def test_writers_in_several_processes_at_once(tmp_path: Path, durability: str) -> None:
    writers = [run_writers(tmp_path, durability, 32, 12) for _ in range(3)]
    last: dict[str, int] = {}
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        for line in out.splitlines():
            key, sequence = line.split()
            last[key] = int(sequence)
    assert len(last) == 3 * 32
    records = asyncio.run(records_on_disk(tmp_path))
    assert {key: records[key]["sequence"] for key in last} == last
    assert records["shared"]["sequence"] == 8  # every writer's last write of it was its 8th
    assert list(tmp_path.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")) == []


@pytest.mark.parametrize("durability", ["full", "fast"])
async def test_writes_held_back_by_a_clear_never_starve_the_writes_it_waits_for(
    tmp_path: Path, durability: str
) -> None:
    """Two writes of one record (the second queued behind the first), a clear of the group, then
    more writes the clear covers than there are writer threads: the clear waits for the second
    write, and the later writes wait for the clear without holding every thread meanwhile."""
    async with await open_store(tmp_path, durability=durability) as store:
        group = store.get_group("G")
        for round_number in range(3):
            first = group["r"].set_value("x" * 2_000_000)  # runs a while on its thread
            second = group["r"].set_value(round_number)  # queued behind it
            started = [asyncio.ensure_future(first), asyncio.ensure_future(second)]
            await asyncio.sleep(0)
            clear = asyncio.ensure_future(group.clear_group())
            await asyncio.sleep(0)
            later = [group[f"k{number}"].set_value(number) for number in range(40)]
            await asyncio.wait_for(asyncio.gather(*started, clear, *later), 60)
            assert await group["r"].get_value() is NoValue
            assert await group["k39"].get_value() == 39
