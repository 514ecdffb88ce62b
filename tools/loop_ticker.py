"""The measuring stick of every stall tool: the longest gap a 1 ms ticker sees while work runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator, Awaitable, Callable


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[list[float]]:
    """Run a 1 ms ticker for the block; yield a list whose one item ends as the stall in ms.

    The ticker sleeps 1 ms at a time; a stall is how much later than that it woke up.
    """
    stall = [0.0]
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall[0] = max(stall[0], (now - last - 0.001) * 1000)
            last = now

    ticks = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)  # the ticker is running before the work starts
    try:
        yield stall
    finally:
        running = False
        await ticks


async def longest_stall(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Return (longest stall in ms, the work's seconds) while ``work()`` runs."""
    async with ticking() as stall:
        began = time.perf_counter()
        await work()
        taken = time.perf_counter() - began
    return stall[0], taken
