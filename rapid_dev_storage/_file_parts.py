"""FileBackend's threads, lock stripes and writes: made by the first operation that needs them.

A process that only reads small records (the command line's ``get``) never makes them, nor
imports `_file_jobs`, `_file_locks`, `_file_write` and what they import (thread pools, queue,
the writers): start-up is measured (tools/bench_startup.py). They are made on the event loop's
thread, as an operation starts, never in a job: writer threads starting their first jobs
together would each make their own stripes, whose guards exclude only their own users. Once
the store is closed none is made (a late operation gets `StoreClosedError`, and starts no
thread).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ._backend import StorageBackend

if TYPE_CHECKING:
    from ._file_jobs import FileJobs
    from ._file_locks import StripeLocks
    from ._file_open import Bookkeeping
    from ._file_write import RecordWrites
    from ._settings import Durability

# ruff: noqa: PLC0415  (each part's modules load with it)


class FileParts(StorageBackend):
    """The parts of a `FileBackend` made when first used, and let go at close."""

    durability: Durability
    _directory: str
    _lock_timeout: float
    _bookkeeping: Bookkeeping

    @functools.cached_property
    def _jobs(self) -> FileJobs:
        self._check_open()  # closing let every thread go: a late operation starts none
        from ._file_jobs import FileJobs

        return FileJobs(self._directory, durable=self.durability == "full")

    @functools.cached_property
    def _stripes(self) -> StripeLocks:
        from ._file_locks import StripeLocks

        return StripeLocks(self._directory, self._lock_timeout, self._bookkeeping.recreate)

    @functools.cached_property
    def _writes(self) -> RecordWrites:
        self._check_open()
        from ._file_write import RecordWrites

        durable = self.durability == "full"
        return RecordWrites(
            self.codec, durable=durable, stripes=self._stripes, bookkeeping=self._bookkeeping
        )

    async def _close_parts(self) -> None:
        """Wait for the jobs, and let the threads, lock files and directories go: those made."""
        made = vars(self)  # what the cached properties made
        if "_jobs" in made:
            await self._jobs.close()
        if "_stripes" in made:
            self._stripes.close()
        if "_writes" in made:
            self._writes.close()
