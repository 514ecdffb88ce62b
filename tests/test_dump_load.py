"""Storage.dump and Storage.load: a store to JSON Lines and back, from inside a running loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage


async def filled(path: Path, codec: str = "json") -> Storage:
    backend = await FileBackend.create_backend_instance(
        path, "app", 1, codec=codec, durability="fast"
    )
    store = Storage(backend)
    users = store.get_group("USER")
    await asyncio.gather(
        *(users[f"u{n:05}", "settings"].set_value({"n": n, "é": [n] * 3}) for n in range(3000))
    )
    await store.get_group("FLAGS")["beta"].set_value(True)
    return store


async def test_dump_then_load_gives_the_same_store_and_the_loop_keeps_ticking(
    tmp_path: Path,
) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0)
            ticks += 1

    async with await filled(tmp_path / "a") as store:
        running = asyncio.ensure_future(ticker())
        assert await store.dump(tmp_path / "backup.jsonl") == 3001
        stop.set()
        await running
        assert ticks > 10  # other tasks ran while the dump worked
        backend = await SQLiteBackend.create_backend_instance(tmp_path / "b.db", "app", 1)
        async with Storage(backend) as copy:
            assert await copy.load(tmp_path / "backup.jsonl") == 3001
            for group in ("FLAGS", "USER"):
                expected = {keys: value async for keys, value in store.get_group(group)}
                assert {keys: value async for keys, value in copy.get_group(group)} == expected
            await copy.dump(tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "backup.jsonl").read_bytes()
    lines = (tmp_path / "backup.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"group": "FLAGS", "keys": ["beta"], "value": True}
    assert lines == sorted(lines, key=lambda line: (json.loads(line)["group"], line))


async def test_the_command_line_reads_what_the_api_dumps(tmp_path: Path) -> None:
    async with await filled(tmp_path / "a") as store:
        await store.dump(tmp_path / "backup.jsonl", groups=["FLAGS"])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rapid_dev_storage",
        "dump",
        f"file:{tmp_path / 'a'}",
        "FLAGS",
        stdout=subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert out == (tmp_path / "backup.jsonl").read_bytes()


async def test_a_bad_line_loads_nothing_and_says_which(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(
        '{"group": "G", "keys": ["a"], "value": 1}\n'
        '{"group": "G", "keys": "b", "value": 2}\n'
        '{"group": "G", "keys": ["c"], "value": {"x": [1, 2]}}\n'
        "not json\n",
        encoding="utf-8",
    )
    async with Storage(await FileBackend.create_backend_instance(tmp_path, "app", 1)) as store:
        with pytest.raises(ValueError, match="2 bad lines") as caught:
            await store.load(source)
        assert "line 2" in str(caught.value)
        assert '"keys" must be a list of 1 to 5 strings, got "b"' in str(caught.value)
        assert "line 4" in str(caught.value)
        assert await store.list_groups() == []


async def test_a_cancelled_dump_leaves_no_file(tmp_path: Path) -> None:
    async with await filled(tmp_path / "a") as store:
        target = tmp_path / "backup.jsonl"
        task = asyncio.ensure_future(store.dump(target))
        for _ in range(20):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sorted(path.name for path in tmp_path.iterdir()) == ["a"]
