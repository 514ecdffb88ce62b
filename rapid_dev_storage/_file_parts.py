"""FileBackend's threads, lock stripes and writes: made by the first operation that needs them.

A process that only reads small records (the command line's ``get``) never makes them, nor
imports `_file_jobs`, `_file_locks`, `_file_write` and what they import (thread pools, queue,
the writers): start-up is measured (tools/bench_startup.py). They are made on the event loop's
thread, as an operation starts, never in a job: writer threads starting their first jobs
together would each make their own stripes, whose guards exclude only their own users. Once
the store is closed none is made (a late operation gets `StoreClosedError`, and starts no
thread). Their modules load with forks held off (`_threads.loading`): a fork in the middle
of that import would leave the child unable ever to write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._backend import StorageBackend
from ._threads import loading

if TYPE_CHECKING:
    from ._file_jobs import FileJobs
    from ._file_locks import StripeLocks
    from ._file_open import Bookkeeping
    from ._file_write import RecordWrites
    from ._settings import Durability

# ruff: noqa: PLC0415  (each part's modules load with it)


class FileParts(StorageBackend):
    """The parts of a `FileBackend` made when first used, and let go at close.

    Plain properties, not `functools.cached_property`: before Python 3.12 that takes a lock
    shared by every store, which a fork in the middle of making a part would leave held in the
    child for good. Every part is made on the loop's thread, so no lock is needed.
    """

    durability: Durability
    _directory: str
    _lock_timeout: float
    _bookkeeping: Bookkeeping
    # Class defaults: nothing made yet.
    _made_jobs: FileJobs | None = None
    _made_stripes: StripeLocks | None = None
    _made_writes: RecordWrites | None = None

    @property
    def _jobs(self) -> FileJobs:
        jobs = self._made_jobs
        if jobs is None:
            self._check_open()  # closing let every thread go: a late operation starts none
            with loading():
                from ._file_jobs import FileJobs

            jobs = self._made_jobs = FileJobs(self._directory, durable=self.durability == "full")
        return jobs

    @property
    def _stripes(self) -> StripeLocks:
        stripes = self._made_stripes
        if stripes is None:
            with loading():
                from ._file_locks import StripeLocks

            stripes = StripeLocks(self._directory, self._lock_timeout, self._bookkeeping.recreate)
            self._made_stripes = stripes
        return stripes

    @property
    def _writes(self) -> RecordWrites:
        writes = self._made_writes
        if writes is None:
            self._check_open()
            with loading():
                from ._file_write import RecordWrites

            durable = self.durability == "full"
            writes = self._made_writes = RecordWrites(
                self.codec, durable=durable, stripes=self._stripes, bookkeeping=self._bookkeeping
            )
        return writes

    async def _close_parts(self) -> None:
        """Wait for the jobs, and let the threads, lock files and directories go: those made."""
        if self._made_jobs is not None:
            await self._made_jobs.close()
        if self._made_stripes is not None:
            self._made_stripes.close()
        if self._made_writes is not None:
            self._made_writes.close()
