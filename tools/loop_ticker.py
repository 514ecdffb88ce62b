"""The measuring stick of every stall tool: the longest gap a 1 ms ticker sees while work runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator


@contextlib.contextmanager
def _thread_times() -> Iterator[Callable[[], tuple[float, float]]]:
    """Yield a reader of this thread's (CPU seconds, seconds waiting for a core) so far.

    Linux keeps both per thread in /proc (``schedstat``: time on a CPU, time runnable but
    waiting on a run queue); elsewhere only the CPU time is known, the wait reads 0. Reading it
    lets the GIL go once a tick: with a thread running Python, getting it back can add up to
    one switch interval (5 ms) to a stall, as it does to the "noise" baseline.
    """
    try:
        descriptor = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        yield lambda: (time.thread_time(), 0.0)
        return

    def read() -> tuple[float, float]:
        running, waiting = os.pread(descriptor, 128, 0).split()[:2]
        return int(running) / 1e9, int(waiting) / 1e9

    try:
        yield read
    finally:
        os.close(descriptor)


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[list[float]]:
    """Run a 1 ms ticker for the block; yield a list that ends as [stall, ran, waited, held] ms.

    The ticker sleeps 1 ms at a time; a stall is how much later than that it woke up. During
    that longest stall, the loop's own thread ran (work done on the loop) and waited while ready
    for a core (the machine's other load); the rest it waited for the GIL, which another
    thread held, or for a timer that fired late (a virtual machine's host may pause it).
    ``held`` is the longest stall less its wait for a core: what this process (the loop's work,
    or another thread holding the GIL) cost the loop, other processes' load aside.
    """
    stall = [0.0, 0.0, 0.0, 0.0]
    running = True

    async def ticker() -> None:
        with _thread_times() as times:  # the loop's thread: the ticker runs on it
            last, (last_cpu, last_wait) = time.perf_counter(), times()
            while running:
                await asyncio.sleep(0.001)
                now, (cpu, wait) = time.perf_counter(), times()
                gap, waited = (now - last - 0.001) * 1000, (wait - last_wait) * 1000
                if gap > stall[0]:
                    stall[:3] = [gap, (cpu - last_cpu) * 1000, waited]
                stall[3] = max(stall[3], gap - waited)
                last, last_cpu, last_wait = now, cpu, wait

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
