"""`file_events`: watchfiles' batches of file events, produced on a thread of their own.

watchfiles' ``awatch`` turns each batch into Python objects on the event loop's thread (tens of
milliseconds for a checkout of thousands of files); its synchronous ``watch``, run on a thread
of ours, does that off the loop. The loop receives finished batches one at a time, so a slow
consumer holds the thread back (the OS keeps collecting events meanwhile) instead of piling
batches up.

Directories are watched one by one, not recursively: a recursive watch's setup walks every file
of the tree holding the GIL, from whatever thread (measured: 58 ms for a store of 20,000 records,
a stall of the loop), where watching the store's directory and each group's costs 3 ms. The
caller watches again when group directories come or go; the first batch of a watch arrives as
soon as it is set up (empty if nothing happened yet), so the caller knows when it may let the
previous watch go without missing anything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from typing import AsyncGenerator, Callable

import watchfiles

from ._threads import runs_no_program_code

Batch = set[tuple[watchfiles.Change, str]]
HANDOFF_WAIT = 0.02
"""Seconds the thread waits for the loop to take a batch before it checks for a stop."""
SETUP_PROBE_MS = 50
"""watchfiles yields its first batch only after events or a timeout: a short one tells soon
that the watch is set up; later quiet periods are reported only every ``quiet_ms``."""


class _Stop:
    """Stops the thread's watch when either the watcher stops or the batches are closed."""

    def __init__(self, watcher: asyncio.Event) -> None:
        self._watcher = watcher  # only read here: an Event's flag is a plain attribute
        self.closed = threading.Event()

    def is_set(self) -> bool:
        return self.closed.is_set() or self._watcher.is_set()


async def file_events(
    directories: Callable[[], list[str]],
    *,
    stop: asyncio.Event,
    polling: bool,
    quiet_ms: int,
    step_ms: int,
    debounce_ms: int,
    poll_delay_ms: int,
) -> AsyncGenerator[Batch, None]:
    """Yield batches of events in the ``directories()`` (each watched alone, not recursively).

    The first batch comes once the watch is set up; later, an empty batch after ``quiet_ms``
    without events. ``directories`` runs on the thread; if one of them vanishes before it is
    watched, it runs again. Ends when ``stop`` is set; raises what watchfiles raised (the OS's
    watch limit, say). Events are gathered for ``step_ms`` of quiet, ``debounce_ms`` at most
    (watchfiles' ``step`` and ``debounce``); polling looks every ``poll_delay_ms``.
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

    def watch() -> None:
        first, quiet = True, 0
        for batch in watchfiles.watch(
            *directories(),
            watch_filter=None,
            debounce=debounce_ms,
            step=step_ms,
            stop_event=stopping,
            rust_timeout=SETUP_PROBE_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
            force_polling=polling,
            poll_delay_ms=poll_delay_ms,
            recursive=False,
            ignore_permission_denied=True,
        ):
            quiet = 0 if batch else quiet + SETUP_PROBE_MS
            if first or batch or quiet >= quiet_ms:
                hand(batch)
                first, quiet = False, 0

    def produce() -> None:
        runs_no_program_code()  # watchfiles' events, handed over
        try:
            for attempt in itertools.count():
                try:
                    watch()
                    break
                except FileNotFoundError:  # a group directory went just now: list them again
                    if attempt >= 10:
                        raise
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


class DirectoryEvents:
    """Batches of events in a store's directories, across the watches that follow them.

    `begin` sets up a new watch (listing the directories anew) while the older ones keep
    reporting; once the new one is set up, the older ones end. So a store whose group
    directories come and go is watched without a gap.
    """

    def __init__(
        self,
        directories: Callable[[], list[str]],
        *,
        stop: asyncio.Event,
        quiet_ms: int,
        step_ms: int,
        debounce_ms: int,
        poll_delay_ms: int,
    ) -> None:
        """Watch the ``directories()`` (see `file_events` for the other arguments)."""
        self._directories = directories
        self._stop = stop
        self._timing = {
            "quiet_ms": quiet_ms,
            "step_ms": step_ms,
            "debounce_ms": debounce_ms,
            "poll_delay_ms": poll_delay_ms,
        }
        self._batches: asyncio.Queue[tuple[int, Batch | BaseException | None]] = asyncio.Queue(2)
        self._sources: dict[int, asyncio.Task[None]] = {}  # watches by generation
        self._ending: set[asyncio.Task[None]] = set()
        self._newest = 0
        self._set_up = True  # whether the newest watch is set up
        self._again = False  # begin again once it is: directories changed while it listed them
        self.polling = False

    @property
    def settled(self) -> bool:
        """Whether a watch set up after the last `begin` reports: nothing is missed since."""
        return self._set_up and not self._again

    def begin(self, *, polling: bool | None = None) -> None:
        """Watch the directories anew; the older watches report until the new one is set up."""
        if polling is not None:
            self.polling = polling
        if not self._set_up:
            self._again = True
            return
        self._newest += 1
        self._set_up = False
        self._sources[self._newest] = asyncio.ensure_future(self._feed(self._newest))

    def end(self) -> None:
        """End every watch (they went deaf, or failed); `begin` starts the next."""
        for generation in list(self._sources):
            self._drop(generation)
        self._set_up, self._again = True, False

    async def next(self) -> Batch | None:
        """Return the next batch; None once stopped. Raises what a watch failed with."""
        while True:
            generation, item = await self._batches.get()
            if generation not in self._sources:
                continue  # from a watch ended since
            if isinstance(item, BaseException):
                raise item
            if item is None:  # the stop event
                if generation == self._newest:
                    return None
                self._drop(generation)
                continue
            if generation == self._newest and not self._set_up:
                self._set_up = True
                for older in [number for number in self._sources if number < generation]:
                    self._drop(older)
                if self._again:
                    self._again = False
                    self.begin()
            return item

    async def close(self) -> None:
        """End every watch and wait until their threads let go of the OS's watches."""
        self.end()
        if self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)

    def _drop(self, generation: int) -> None:
        task = self._sources.pop(generation)
        task.cancel()
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _feed(self, generation: int) -> None:
        try:
            batches = file_events(
                self._directories, stop=self._stop, polling=self.polling, **self._timing
            )
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    await self._batches.put((generation, batch))
            await self._batches.put((generation, None))
        except Exception as exc:  # the next() that reads it raises it
            await self._batches.put((generation, exc))
