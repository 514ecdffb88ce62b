"""FileBackend's scans: small records read on the loop in slices, the rest on threads."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from rapid_dev_storage import CorruptRecordError, FileBackend, Storage
from rapid_dev_storage._file_io import FileIO
from rapid_dev_storage._file_read import SCAN_BATCH

PROMPT = 5.0  # seconds: a scan that would hang (a FIFO opened for reading) fails instead


async def open_store(path: Path, **options: Any) -> Storage:
    return Storage(await FileBackend.create_backend_instance(path, "app", 1, **options))


def record_file(store: Storage, group: str, *keys: str) -> Path:
    backend = store.backend
    assert isinstance(backend, FileBackend)
    return Path(backend.record_path(group, keys))


@pytest.mark.parametrize("inline_limit", [65536, 64, 0])  # on the loop; large ones; threads
async def test_a_scan_returns_exactly_the_records_whatever_reads_them(
    tmp_path: Path, inline_limit: int
) -> None:
    async with await open_store(tmp_path, inline_limit=inline_limit, durability="fast") as store:
        group = store.get_group("G")
        expected: dict[tuple[str, ...], Any] = {(f"k{i}",): i for i in range(600)}
        expected["big",] = "x" * 5000  # over 64 bytes: read on a thread at inline_limit=64
        expected["a", "b"] = {"nested": [1, 2]}
        for keys, value in expected.items():
            await group[keys].set_value(value)
        directory = record_file(store, "G", "k0").parent
        # Not records: a person's file, a name of the wrong case, an editor's leftover.
        (directory / "notes.msgpack").write_bytes(b"not a record")
        (directory / ("A" * 32 + ".msgpack")).write_bytes(b"not a record")
        (directory / (record_file(store, "G", "k1").name + "~")).write_bytes(b"a backup")
        fifo = record_file(store, "G", "fifo")
        os.mkfifo(fifo)
        problems: list[CorruptRecordError] = []
        found = await asyncio.wait_for(_collect(group, problems), PROMPT)
        assert found == expected
        assert [problem.location for problem in problems] == [str(fifo)]
        with pytest.raises(CorruptRecordError):
            await asyncio.wait_for(_collect(group, None), PROMPT)


async def _collect(group: Any, problems: list[CorruptRecordError] | None) -> dict[Any, Any]:
    options = {} if problems is None else {"on_corrupt": problems.append}
    return {keys: value async for keys, value in group.all_items(**options)}


async def test_a_scan_read_partly_has_read_one_slice_not_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await open_store(tmp_path, durability="fast") as store:
        group = store.get_group("G")
        count = 4 * SCAN_BATCH
        for start in range(0, count, 128):
            await asyncio.gather(
                *(group[f"k{i}"].set_value(i) for i in range(start, min(count, start + 128)))
            )
        opened: list[str] = []

        def counting_open(path: str, flags: int, mode: int = 0o777, **options: Any) -> int:
            opened.append(path)
            return os.open(path, flags, mode, **options)

        monkeypatch.setattr(FileIO, "open", staticmethod(counting_open))
        items = group.all_items()
        first = await items.__anext__()
        assert first[0][0].startswith("k")
        # One slice read, not the group: memory stays bounded however large the group is.
        assert 0 < len(opened) <= SCAN_BATCH
        await items.aclose()  # type: ignore[attr-defined]  # an async generator's
        assert len(opened) <= SCAN_BATCH
        assert len({keys async for keys, _ in group.all_items()}) == count


async def test_a_scan_sees_records_another_writer_changed_after_a_read(tmp_path: Path) -> None:
    async with (
        await open_store(tmp_path) as store,
        await open_store(tmp_path) as other,
    ):
        await store.get_group("G")["k"].set_value(1)
        assert await store.get_group("G")["k"].get_value() == 1  # now in the read cache
        await other.get_group("G")["k"].set_value(2)
        assert [item async for item in store.get_group("G").all_items()] == [(("k",), 2)]
        assert await store.get_group("G")["k"].get_value() == 2
