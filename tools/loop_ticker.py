"""The measuring stick of every stall tool: the longest gap a 1 ms ticker sees while work runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable


async def longest_stall(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Return (longest stall in ms, the work's seconds) while ``work()`` runs.

    A ticker task sleeps 1 ms at a time; a stall is how much later than that it woke up.
    """
    stall = 0.0
    running = True

    async def ticker() -> None:
        nonlocal stall
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall = max(stall, now - last - 0.001)
            last = now

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    began = time.perf_counter()
    try:
        await work()
    finally:
        taken = time.perf_counter() - began
        running = False
        await ticking
    return stall * 1000, taken
