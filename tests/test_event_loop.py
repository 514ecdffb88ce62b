"""The event loop stays free: inline work gives turns, large records decode on a thread.

No timings here (speed is measured by tools/measure_loop_stalls.py): the checks count a
ticker's turns and name the thread a decode ran on.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from rapid_dev_storage import (
    FileBackend,
    MemoryBackend,
    MsgpackCodec,
    SQLiteBackend,
    Storage,
    StorageBackend,
)
from rapid_dev_storage._slices import LARGE_RECORD


class RecordingCodec(MsgpackCodec):
    """msgpack, remembering on which thread each record was decoded, and its size."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.decoded: list[tuple[int, int]] = []  # (thread, bytes)

    def loads(self, data: bytes) -> Any:
        self.decoded.append((threading.get_ident(), len(data)))
        return super().loads(data)


Opener = Callable[[Path, Any], Any]
OPENERS: dict[str, Opener] = {
    "memory": lambda directory, codec: MemoryBackend(codec),
    "file": lambda directory, codec: FileBackend.create_backend_instance(
        directory, "loop", 1, codec=codec, durability="fast"
    ),
    "sqlite": lambda directory, codec: SQLiteBackend.create_backend_instance(
        directory / "store.sqlite3", "loop", 1, codec=codec, durability="fast"
    ),
}


@pytest.fixture(params=sorted(OPENERS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = OPENERS[request.param](tmp_path, RecordingCodec())
    backend: StorageBackend = await opened if asyncio.iscoroutine(opened) else opened
    async with Storage(backend) as storage:
        yield storage


class Ticker:
    """A task that counts the turns the loop gives it (asyncio.sleep(0) in a loop)."""

    def __init__(self) -> None:
        self.turns = 0
        self._task = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.turns += 1

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_inline_gets_give_the_loop_turns(store: Storage) -> None:
    handle = store.get_group("G")["k"]
    await handle.set_value({"a": 1})
    await handle.get_value()
    ticker = Ticker()  # it first runs when this task lets the loop run
    for _ in range(5_000):
        assert await handle.get_value() == {"a": 1}
    turns = ticker.turns
    await ticker.stop()
    assert turns > 0, "5,000 gets never let another task run"


async def test_concurrent_inline_writers_share_the_loop(store: Storage) -> None:
    group = store.get_group("G")
    ticker = Ticker()
    turns_when_done: list[int] = []

    async def writer(task: int) -> None:
        for index in range(40):
            await group[str(task), str(index)].set_value(index)
            await group[str(task), str(index)].update(lambda current: current + 1)

    await asyncio.gather(*(writer(task) for task in range(64)))
    turns_when_done.append(ticker.turns)
    await ticker.stop()
    assert turns_when_done[0] > 0
    assert await group["63", "39"].get_value() == 40


async def test_iteration_gives_the_loop_turns(store: Storage) -> None:
    group = store.get_group("G")
    for index in range(3_000):
        await group[str(index)].set_value([index, "x" * 20])
    ticker = Ticker()
    count = 0
    async for _keys, _value in group.all_items():
        count += 1
    turns = ticker.turns
    await ticker.stop()
    assert count == 3_000
    assert turns > 0


async def test_large_records_decode_off_the_loop(store: Storage) -> None:
    codec = store.backend.codec
    assert isinstance(codec, RecordingCodec)
    loop_thread = threading.get_ident()
    group = store.get_group("G")
    large = ["x" * 1000] * (2 * LARGE_RECORD // 1000)
    await group["small"].set_value({"a": 1})
    await group["large"].set_value(large)

    codec.decoded.clear()
    assert await group["small"].get_value() == {"a": 1}
    assert [thread for thread, _ in codec.decoded] == [loop_thread], "small records decode inline"

    for read in (
        group["large"].get_value(),
        group["large"].update(lambda current: current),
        _collect(group.all_items("large")),
    ):
        codec.decoded.clear()
        await read
        # Iterating a prefix may decode the small record too (files learn keys by decoding).
        large_on = [thread for thread, size in codec.decoded if size > LARGE_RECORD]
        assert large_on, "the large record was not decoded"
        assert loop_thread not in large_on, "a large record decoded on the loop"


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]
