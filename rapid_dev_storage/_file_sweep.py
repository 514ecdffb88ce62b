"""Sweeping a file store's abandoned temp files without making its opening wait for it.

A writer killed mid-write leaves a temp file (`_file_temps`); opening a store removes those
whose writer is gone. Looking costs a directory entry each, so a store of 400,000 records would
take most of a second to open if opening waited. It does not: the first `INLINE_ENTRIES`
entries are looked at while the store opens (a small store is then swept before opening
returns, as it always was), and the rest on a thread of the sweep's own that the store's
``close`` stops between two entries and waits for (a moment: no entry takes long). A temp file
whose writer is alive is never removed (its lock proves it: `_file_temps.abandoned_temp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from ._file_temps import sweep_orphans

logger = logging.getLogger(__name__)

INLINE_ENTRIES = 64
"""Directory entries looked at while the store opens: a small store's whole sweep (a few
dozen microseconds at most); a larger store's sweep goes on in the background."""


class OrphanSweep:
    """One store's sweep: `run_inline` while opening, then `start` the rest; `stop` at close."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._steps = sweep_orphans(directory)
        self._stop = threading.Event()
        self._finished: asyncio.Future[None] | None = None

    def run_inline(self) -> bool:
        """Look at the first `INLINE_ENTRIES` entries (on the opening thread); True if done."""
        return all(count < INLINE_ENTRIES for count, _ in enumerate(self._steps, start=1))

    def start(self) -> None:
        """Sweep the rest on a thread of its own (called on the store's event loop)."""
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        thread = threading.Thread(
            target=self._run, args=(loop, self._finished), name="rapid_dev_storage sweep"
        )
        thread.daemon = True  # an unclosed store's sweep never holds the interpreter's exit
        thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None]) -> None:
        try:
            for _ in self._steps:
                if self._stop.is_set():
                    break
        except OSError as exc:  # the store's directory unreadable, say: fsck will tell more
            logger.warning("%s: sweeping abandoned temp files failed: %s", self._directory, exc)
        finally:
            self._steps.close()  # closes the directories it held open
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_finish, finished)

    async def stop(self) -> None:
        """Stop the sweep between two entries and wait until its thread has let go of the store.

        Awaited by the store's close: afterwards the sweep removes nothing and holds no
        descriptor. The wait is that of one entry (an lstat, a lock attempt, perhaps an unlink).
        """
        self._stop.set()
        if self._finished is None:  # never started (the store failed to open): let go here
            self._steps.close()
            return
        await asyncio.shield(self._finished)


def _finish(finished: asyncio.Future[None]) -> None:
    if not finished.done():
        finished.set_result(None)
