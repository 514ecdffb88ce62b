"""What the record lock costs a plain FileBackend set_value, side by side in one run.

Sets take the record's stripe lock (flock on .locks/NN.lock) around their rename, so that a set
and an update of one record are linearizable across processes. This measures the same sets with
the lock (the library) and without it (the lock replaced by nothing: what sets cost before),
interleaved round by round so the disk's mood hits both alike, at both durabilities.

    python tools/measure_set_lock.py [--rounds N] [--sets N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import threading
import time
from typing import Any, Iterator

from rapid_dev_storage import FileBackend, Storage


@contextlib.contextmanager
def _no_lock(stripe: int, abandon: threading.Event) -> Iterator[None]:
    yield


async def _sets(durability: str, locked: bool, count: int, directory: str) -> float:
    """Return microseconds per set_value of ``count`` sets of 20 records."""
    backend = await FileBackend.create_backend_instance(
        directory, "bench", 1, durability=durability
    )
    if not locked:
        backend._stripes.hold = _no_lock  # type: ignore[method-assign]
    async with Storage(backend) as store:
        group = store.get_group("G")
        value: dict[str, Any] = {"user": "someone", "settings": {"theme": "dark"}}
        await group["k0"].set_value(value)
        started = time.perf_counter()
        for number in range(count):
            await group[f"k{number % 20}"].set_value(value)
        return (time.perf_counter() - started) / count * 1e6


async def main(rounds: int, count: int) -> None:
    results: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(rounds):
            for durability in ("full", "fast"):
                for locked in (True, False):
                    per_set = await _sets(durability, locked, count, directory)
                    results.setdefault((durability, locked), []).append(per_set)
    for durability in ("full", "fast"):
        with_lock = statistics.median(results[durability, True])
        without = statistics.median(results[durability, False])
        ratios = [
            a / b
            for a, b in zip(results[durability, True], results[durability, False], strict=True)
        ]
        print(
            f"{durability:>4}: set with lock {with_lock:7.1f} us, without {without:7.1f} us, "
            f"cost {with_lock - without:+6.1f} us ({min(ratios):.2f}x-{max(ratios):.2f}x "
            f"over {rounds} rounds)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sets", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.sets))
