"""`file_events`: watchfiles' batches of file events, produced on a thread of their own.

watchfiles' ``awatch`` sets its watch up on the event loop's thread, and that setup walks the
whole tree (measured: 60 ms for a store of 20,000 records, with inotify or polling alike); it
also turns each batch into Python objects there (tens of milliseconds for a checkout of
thousands of files). Its synchronous ``watch`` run on a thread of ours does both off the loop;
the loop receives finished batches, one at a time, so a slow consumer holds the thread back
(the OS keeps collecting events meanwhile) instead of piling batches up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import AsyncGenerator

import watchfiles

Batch = set[tuple[watchfiles.Change, str]]
HANDOFF_WAIT = 0.02
"""Seconds the thread waits for the loop to take a batch before it checks for a stop."""


class _Stop:
    """Stops the thread's watch when either the watcher stops or the batches are closed."""

    def __init__(self, watcher: asyncio.Event) -> None:
        self._watcher = watcher  # only read here: an Event's flag is a plain attribute
        self.closed = threading.Event()

    def is_set(self) -> bool:
        return self.closed.is_set() or self._watcher.is_set()


async def file_events(
    directory: str,
    *,
    stop: asyncio.Event,
    polling: bool,
    timeout_ms: int,
    step_ms: int,
    debounce_ms: int,
    poll_delay_ms: int,
) -> AsyncGenerator[Batch, None]:
    """Yield batches of events under ``directory``, and an empty one after ``timeout_ms`` quiet.

    Ends when ``stop`` is set; raises what watchfiles raised (the OS's watch limit, say).
    Events are gathered for ``step_ms`` of quiet, ``debounce_ms`` at most (watchfiles' ``step``
    and ``debounce``); polling looks every ``poll_delay_ms``.
    """
    loop = asyncio.get_running_loop()
    handoff: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(maxsize=1)
    stopping = _Stop(stop)
    finished = loop.create_future()

    def hand(item: Batch | BaseException | None) -> None:
        future = asyncio.run_coroutine_threadsafe(handoff.put(item), loop)
        while not stopping.is_set():
            with contextlib.suppress(concurrent.futures.TimeoutError):
                future.result(HANDOFF_WAIT)
                return
        future.cancel()

    def produce() -> None:
        try:
            for batch in watchfiles.watch(
                directory, watch_filter=None, debounce=debounce_ms, step=step_ms,
                stop_event=stopping, rust_timeout=timeout_ms, yield_on_timeout=True,
                raise_interrupt=False, force_polling=polling, poll_delay_ms=poll_delay_ms,
                recursive=True, ignore_permission_denied=True,
            ):  # fmt: skip
                hand(batch)
            hand(None)
        except BaseException as exc:  # handed to the loop, which raises it
            hand(exc)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed already
                loop.call_soon_threadsafe(_settle, finished)

    threading.Thread(target=produce, name="rapid-dev-storage-watch", daemon=True).start()
    try:
        while (item := await handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopping.closed.set()
        await finished  # the thread closed the OS's watch


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
