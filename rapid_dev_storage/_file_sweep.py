"""Sweeping a file store's abandoned temp files without making its opening wait for it.

A writer killed mid-write leaves a temp file (`_file_temps`); opening a store removes those
whose writer is gone. Looking costs a directory entry each, so a store of 400,000 records would
take most of a second to open if opening waited. It does not: the first `INLINE_ENTRIES`
entries are looked at while the store opens, in group directories small enough to list in a
moment (`INLINE_DIRECTORY_BYTES`), so a small store is swept before opening returns, as it
always was; a larger store is swept on a thread of the sweep's own, a second
later and at a gentle pace, which the store's ``close`` stops between two entries and waits for
(a moment: no entry takes long). A temp file whose writer is alive is never removed (its lock
proves it: `_file_temps.abandoned_temp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from ._file_temps import sweep_orphans
from ._threads import runs_no_program_code

logger = logging.getLogger(__name__)

INLINE_ENTRIES = 64
"""Directory entries looked at while the store opens: a small store's whole sweep (a few
dozen microseconds at most); a larger store's sweep goes on in the background."""
INLINE_DIRECTORY_BYTES = 4096
"""A group directory larger than this (one block on most file systems: some 80 records) is not
even listed while the store opens: listing one of 100,000 entries reads 32 KB of them at once."""

START_DELAY = 1.0
"""Seconds after opening that the sweep's thread starts: the store's first moments (an app's
start, a script's whole life) are not slowed by it, and a store closed sooner is not swept."""
PAUSE_EVERY = 128
PAUSE = 0.001
"""The sweep's thread rests `PAUSE` seconds every `PAUSE_EVERY` entries (some 0.2 ms of work):
a background task, it takes a small share of the interpreter's time, however large the store."""


class OrphanSweep:
    """One store's sweep: `run_inline` while opening, then `start` the rest; `stop` at close."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._stop = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._finished: asyncio.Future[None] | None = None
        self._thread: threading.Thread | None = None

    def run_inline(self) -> bool:
        """Look at the first `INLINE_ENTRIES` entries (on the opening thread); True if done.

        Nothing is held open afterwards: the thread, if needed, starts the sweep again.
        """
        steps = sweep_orphans(self._directory, skip_larger_than=INLINE_DIRECTORY_BYTES)
        done = True
        try:
            for count, skipped in enumerate(steps, start=1):
                done = done and not skipped
                if count >= INLINE_ENTRIES:
                    return False
        finally:
            steps.close()
        return done

    def start(self) -> None:
        """Sweep the whole store on a thread `START_DELAY` seconds from now (on the store's loop).

        Until then there is no thread: a store closed sooner costs nothing more.
        """
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(START_DELAY, self._start_thread, loop)

    def _start_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._finished = finished = loop.create_future()
        thread = threading.Thread(
            target=self._run, args=(loop, finished), name="rapid_dev_storage sweep"
        )
        thread.daemon = True  # an unclosed store's sweep never holds the interpreter's exit
        thread.start()
        self._thread = thread

    def _run(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None]) -> None:
        runs_no_program_code()
        steps = sweep_orphans(self._directory)
        try:
            for count, _ in enumerate(steps, start=1):
                # Most of an entry's work holds the GIL: pausing now and then leaves the event
                # loop's thread nearly all of it (else it would wait for it up to 5 ms a time).
                if self._stop.is_set() or (count % PAUSE_EVERY == 0 and self._stop.wait(PAUSE)):
                    break
        except OSError as exc:  # the store's directory unreadable, say: fsck will tell more
            logger.warning("%s: sweeping abandoned temp files failed: %s", self._directory, exc)
        finally:
            steps.close()  # closes the directories it held open
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_finish, finished)

    async def stop(self) -> None:
        """Stop the sweep between two entries and wait until its thread has let go of the store.

        Awaited by the store's close: afterwards the sweep removes nothing and holds no
        descriptor. The wait is that of one entry (an lstat, a lock attempt, perhaps an unlink).
        """
        self._stop.set()
        if self._timer is not None:  # not started yet: it never will
            self._timer.cancel()
            self._timer = None
        if self._finished is not None and self._thread is not None:
            await asyncio.shield(self._finished)
            # It has let go and said so as its last act: it ends in a moment (no thread left).
            self._thread.join()


def _finish(finished: asyncio.Future[None]) -> None:
    if not finished.done():
        finished.set_result(None)
