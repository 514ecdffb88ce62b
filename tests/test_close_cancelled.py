"""A close whose awaiter is cancelled still releases everything: the work, not the awaiter.

Found by an attacker: cancelling ``close()`` of a SQLite store right after it began marked the
store closed but left its worker thread and two descriptors behind, and the next ``close()``
returned at once, so every such round leaked them. Threads and open descriptors are counted.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from rapid_dev_storage import StoreClosedError, open_storage

ROUNDS = 5


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
@pytest.mark.parametrize("scheme", ["sqlite", "file", "memory"])
@pytest.mark.parametrize("cancel_after_turns", [0, 1, 3])
async def test_a_cancelled_close_is_finished_and_leaks_nothing(
    tmp_path: Path, scheme: str, cancel_after_turns: int
) -> None:
    url = {"sqlite": f"sqlite:{tmp_path}/db", "file": f"file:{tmp_path}/store"}.get(
        scheme, "memory:"
    )
    # A first store opened and closed: what a backend loads once per process is loaded.
    store = await open_storage(url + "-warm" if scheme != "memory" else url, "app", 1)
    await store.get_group("G")["a"].set_value(0)
    await store.close()
    threads, descriptors = _threads(), _open_descriptors()
    for number in range(ROUNDS):
        name = f"{url}{number}" if scheme != "memory" else url
        store = await open_storage(name, "app", 1)
        group = store.get_group("G")
        sets = [asyncio.ensure_future(group[str(i)].set_value(i)) for i in range(10)]
        closing = asyncio.ensure_future(store.close())
        for _ in range(cancel_after_turns):
            await asyncio.sleep(0)
        closing.cancel()
        await store.close()  # finishes what the cancelled one began
        await asyncio.wait([closing])  # cancelled (or done, when cancelled too late)
        for result in await asyncio.gather(*sets, return_exceptions=True):
            assert result is None or isinstance(result, StoreClosedError)
        with pytest.raises(StoreClosedError):
            await group["a"].get_value()
    assert _threads() == threads
    assert _open_descriptors() == descriptors
