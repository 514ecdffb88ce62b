"""Closing a store while its operations run: they finish or raise StoreClosedError, nothing else.

Found by an attacker: SQLite's loop connection, closed from the worker thread while an inline
read used it, crashed the interpreter (SIGSEGV); a FileBackend job started after closing raised
the thread pool's RuntimeError. Run in a child process, so that a crash fails the test instead
of ending the run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rapid_dev_storage import MemoryBackend, StoreClosedError, open_storage

SCRIPT = """
import asyncio, sys
from rapid_dev_storage import MemoryBackend, StoreClosedError, open_storage

async def main(url, rounds):
    unexpected = []
    for number in range(rounds):
        store = await open_storage(f"{url}{number}", "app", 1, durability="fast")
        group = store.get_group("G")
        await group["a"].set_value(0)

        async def busy(index):
            try:
                while True:
                    await group["a"].get_value()
                    await group[str(index)].set_value(index)
                    await group["a"].update(lambda n: (n or 0) + 1)
                    [item async for item in group.all_items()]
            except StoreClosedError:
                pass
            except Exception as exc:
                unexpected.append(repr(exc))

        tasks = [asyncio.ensure_future(busy(index)) for index in range(8)]
        await asyncio.sleep(0.01 + 0.01 * (number % 5))
        await store.close()
        await asyncio.gather(*tasks)
    print("\\n".join(unexpected))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@pytest.mark.parametrize("scheme", ["sqlite", "file"])
def test_closing_while_operations_run_ends_them_with_our_error(tmp_path: Path, scheme: str) -> None:
    url = f"sqlite:{tmp_path}/db" if scheme == "sqlite" else f"file:{tmp_path}/store"
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", SCRIPT, url, "12"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "", done.stdout


LARGE = "x" * 300_000  # over LARGE_RECORD: read back through a decode thread


@pytest.mark.parametrize("scheme", ["memory", "sqlite", "file"])
async def test_a_closed_store_leaves_no_thread_behind(tmp_path: Path, scheme: str) -> None:
    """Opening, reading a large record and closing leave no thread (the default executor did)."""
    url = {"memory": "memory:", "sqlite": f"sqlite:{tmp_path}/db", "file": f"file:{tmp_path}"}
    before = set(threading.enumerate())
    store = await open_storage(url[scheme], "app", 1)
    await store.get_group("G")["k"].set_value(LARGE)
    assert await store.get_group("G")["k"].get_value() == LARGE
    assert [keys async for keys, _ in store.get_group("G").all_items()] == [("k",)]
    await store.close()
    for _ in range(100):  # a thread whose job ended may take a moment to return: never stays
        left = [thread.name for thread in set(threading.enumerate()) - before]
        if not left:
            break
        await asyncio.sleep(0.02)
    assert left == []


async def test_a_large_read_that_meets_close_raises_our_error(tmp_path: Path) -> None:
    store = await open_storage(f"file:{tmp_path}", "app", 1)
    await store.get_group("G")["k"].set_value(LARGE)
    reads = [asyncio.ensure_future(store.get_group("G")["k"].get_value()) for _ in range(8)]
    await asyncio.sleep(0)
    await store.close()
    for outcome in await asyncio.gather(*reads, return_exceptions=True):
        assert outcome == LARGE or isinstance(outcome, StoreClosedError), repr(outcome)


async def test_no_decode_pool_is_made_after_close() -> None:
    """A read that reaches its decode after close gets our error, and starts no thread."""
    backend = MemoryBackend()
    before = set(threading.enumerate())
    await backend.close()
    with pytest.raises(StoreClosedError):
        await backend._off_loop(len, b"a large record's bytes")  # what such a read calls
    assert set(threading.enumerate()) - before == set()
