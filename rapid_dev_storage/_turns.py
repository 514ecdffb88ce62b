"""Keeping the event loop free: turns for inline work, and a thread for large decodes.

`StorageBackend` mixes this in; its public methods call `_turn_due` as an operation starts and
set ``_turn_last`` as it ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from time import perf_counter
from typing import Any, Callable, TypeVar

from ._threads import loading, on_own_thread, runs_no_program_code
from .errors import StoreClosedError

T = TypeVar("T")

TURN_EVERY = 0.001
"""Seconds of back-to-back inline operations after which the event loop gets a turn."""
TURN_GAP = 0.001
"""Operations this far apart are not back to back: whoever ran between them had the loop."""


class TakesTurns:
    """Gives the event loop a turn after about a millisecond of inline operations."""

    # Class defaults, so that a backend works without calling StorageBackend.__init__.
    _turn_start: float = 0.0  # when the current run of inline operations began (_turn_due)
    _turn_last: float = 0.0  # when the last operation ended (or began, while it runs)
    _turn_pending: bool = False  # a _turn_given callback waits for the loop's next round
    _decoders: concurrent.futures.ThreadPoolExecutor | None = None  # made by the first large decode
    _decoding_over = False  # set by _stop_decoding: no pool is made after it

    async def _off_loop(self, decode: Callable[..., T], *args: Any) -> T:
        """Run the decode (or encode) of a large record on a thread, leaving the loop free.

        The codecs decode a large record in slices (`rapid_dev_storage._slices`), so the
        thread lets the loop take the GIL between slices. The threads are the store's own
        (not the loop's default executor's): `_stop_decoding` ends them at close.

        Raises:
            StoreClosedError: the store closed while the read that needs the decode ran.

        """
        decoders = self._decoders
        if decoders is None and not self._decoding_over:  # after close, a pool would outlive it
            # concurrent.futures loads its thread pool (and queue) here, not with the package.
            with loading():
                decoders = self._decoders = concurrent.futures.ThreadPoolExecutor(
                    2, "rapid_dev_storage-large", initializer=runs_no_program_code
                )
        future = None
        if decoders is not None:
            with contextlib.suppress(RuntimeError):  # shut down: close() ran meanwhile
                future = decoders.submit(decode, *args)
        if future is None:
            raise StoreClosedError("the store was closed while a record was read")
        return await asyncio.wrap_future(future)

    async def _stop_decoding(self) -> None:
        """End the decode threads (at close), after a decode in progress, off the loop."""
        self._decoding_over = True
        decoders = self._decoders
        if decoders is not None:
            await on_own_thread(decoders.shutdown)

    def _turn_due(self) -> bool:
        """Whether inline operations have held the loop for `TURN_EVERY`: call as one starts.

        Operations that complete without suspending (a cached read, a small write at
        durability ``fast``, anything in memory) would let a task looping over them starve
        every other task: a turn is given after about a millisecond of them. An operation
        starting more than `TURN_GAP` after the previous one ended (``_turn_last``, set as each
        ends) begins a new run: its caller did something else meanwhile. Measuring from the
        end, not the start, keeps a run of slow operations (a write meeting a busy disk) one
        run. Two clock reads per operation (about 120 ns).

        A write, clear or update gives its turn after it is on its way, never before: a write
        told to wait a turn while a later write of the same record (starting a new run after
        other work held the loop) was not would land after it, and the earlier write would win.
        """
        now = perf_counter()
        if now - self._turn_last > TURN_GAP:
            self._turn_start = now  # a new run: the caller did other things since the last one
        self._turn_last = now
        return now - self._turn_start > TURN_EVERY

    async def _give_turn(self) -> None:
        """Let the loop run: timers and I/O are served once every task ready now has run.

        The run's clock restarts only when the loop begins its next round (a callback
        scheduled now runs then), not when this task resumes: 64 tasks each given a fresh
        millisecond within one round would hold the loop for 64.
        """
        if not self._turn_pending:
            self._turn_pending = True
            asyncio.get_running_loop().call_soon(self._turn_given)
        await asyncio.sleep(0)

    def _turn_given(self) -> None:
        self._turn_pending = False
        self._turn_start = self._turn_last = perf_counter()

    def _turn_taken(self) -> None:
        """Tell the turns that an operation waited for a thread: the loop had a round meanwhile.

        A backend's hook calls it after such a wait, so that a run of operations that each wait
        (durable writes) is not also given a turn of its own every millisecond: an extra round
        of the loop for every few writes, for nothing.
        """
        self._turn_start = perf_counter()


YIELD_SECONDS = 0.001
"""Seconds of a loop's own work (a watcher's backlog, a dump) between two turns it gives."""


class Yielder:
    """Gives the event loop a turn when about a millisecond of work has passed since the last.

    For loops doing many small pieces of work in one task (a watcher publishing a backlog,
    a dump encoding records). Time-based, not every N items: an item may cost a microsecond (a
    small record) or far more (a large value, a slow callback).
    """

    def __init__(self) -> None:
        self._since = perf_counter()

    async def __call__(self) -> None:
        if perf_counter() - self._since >= YIELD_SECONDS:
            await asyncio.sleep(0)
            self._since = perf_counter()
