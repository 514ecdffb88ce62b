"""SQLiteBackend's bridge to the event loop: two connections and the worker thread that owns one.

A primary-key read takes a few microseconds, far less than a hop to a thread (35-45 us here on
the store's own worker thread, `_sqlite_worker`), so reads run inline on the loop through a
connection that never waits for a lock; in WAL mode a reader never waits for a writer, and if
it ever meets a lock anyway the read moves to the worker. Writes commit with an fsync and may
wait for another process's lock, so they run on one worker thread that owns the writing
connection, one whole operation per hop. An in-memory database has no I/O and no other
process, so it runs entirely inline.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, Callable, TypeVar

from ._codecs import Codec
from ._settings import StoreOptions
from ._sqlite_core import MEMORY, checkpoint, open_connections, translated
from ._sqlite_sql import Queries
from ._sqlite_worker import Worker
from .errors import LockTimeoutError, StoreClosedError

T = TypeVar("T")

CHECKPOINT_EVERY = 500
"""Inline commits between WAL checkpoints, which the worker runs (they fsync)."""


class Connections:
    """Run a store's operations inline or on its worker, keeping its writes in order."""

    def __init__(
        self,
        location: str,
        options: StoreOptions,
        connections: tuple[sqlite3.Connection, sqlite3.Connection],
        worker: Worker | None,
    ) -> None:
        self.location = location
        self.writer, self.inline = connections
        """The worker's connection (it may wait for locks), and the loop's (it never does)."""
        # Reads of one record reuse a cursor: sqlite3 makes one per Connection.execute.
        self._loop_cursor = self.inline.cursor()
        self.worker = worker
        """None in memory: everything runs inline."""
        # Held around each inline operation: an os.fork() waits for it (see _threads). A
        # database in memory has no file locks to leave behind: its lock is nobody's concern.
        self.inline_lock = threading.Lock() if worker is None else worker.inline_lock
        self._lock_timeout = options.lock_timeout
        # Inline means a small write at durability fast (a WAL commit without fsync).
        self._inline_writes = worker is None or options.durability == "fast"
        self._commits_since_checkpoint = 0
        self.closed = False
        self.after_wait: Callable[[], None] = _nothing
        """Called after each operation that waited for the worker (the loop ran meanwhile)."""

    def loop_connection(self) -> sqlite3.Connection:
        """Return the loop's connection, or raise `StoreClosedError` once closing began.

        Only the loop's thread uses it, and `close` closes it there: an operation still running
        when the store closes gets our error, never a closed (or closing) connection.
        """
        if self.closed:
            raise self._closed_error()
        return self.inline

    def loop_cursor(self) -> sqlite3.Cursor:
        """Return the loop's connection's cursor for whole reads (`loop_connection`'s rules)."""
        if self.closed:
            raise self._closed_error()
        return self._loop_cursor

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(f"the store at {self.location} is closed")

    async def on_worker(self, function: Callable[..., T], *args: Any, write: bool = False) -> T:
        """Run one whole operation on the worker's connection, which may wait for locks.

        A cancelled caller cancels the job only if it has not started; a started one runs to
        its end, and a ``write`` holds later inline writes back until then.
        """
        assert self.worker is not None  # only file databases have a worker

        def call() -> T:
            try:
                return function(self.writer, *args)
            except sqlite3.Error as exc:
                raise self.error(exc) from exc

        if self.closed:
            raise self._closed_error()
        try:
            return await self.worker.run(call, write=write)
        finally:
            self.after_wait()

    def submit(self, function: Callable[..., object], *args: Any) -> None:
        """Hand the worker housekeeping (a checkpoint, a prune) that nobody awaits."""
        if self.worker is not None and not self.closed:
            self.worker.submit(function, self.writer, *args)

    def error(self, exc: sqlite3.Error) -> Exception:
        """Return our error for one of sqlite3's; raise it ``from`` the original."""
        return translated(exc, self.location, self._lock_timeout)

    async def read(self, function: Callable[..., T], *args: Any) -> T:
        """Run a read inline; if it meets a lock, wait for the lock on the worker instead."""
        try:
            with self.inline_lock:
                return function(self.loop_connection(), *args)
        except sqlite3.Error as exc:
            self._raise_unless_worker_waits(exc)
        return await self.on_worker(function, *args)

    async def write(self, function: Callable[..., T], *args: Any, small: bool = True) -> T:
        """Run a write inline when it cannot block the loop for long, else on the worker.

        Inline means a ``small`` write (one record) at durability ``fast`` (a WAL commit without
        fsync) or in memory, with no earlier write still queued on the worker: writes of this
        backend land in the order they were made.
        """
        worker = self.worker
        if worker is None or (self._inline_writes and small and not worker.writes_pending):
            try:
                with self.inline_lock:
                    result = function(self.loop_connection(), *args)
            except sqlite3.Error as exc:
                self._raise_unless_worker_waits(exc)
            else:
                self._after_inline_commit()
                return result
        return await self.on_worker(function, *args, write=True)

    def _raise_unless_worker_waits(self, exc: sqlite3.Error) -> None:
        """Raise our error for an inline failure, unless it met a lock the worker can wait for."""
        error = self.error(exc)
        if self.worker is None or not isinstance(error, LockTimeoutError):
            raise error from exc

    def _after_inline_commit(self) -> None:
        # The inline connection never checkpoints (that fsyncs): the worker does it, unawaited.
        self._commits_since_checkpoint += 1
        if self.worker is not None and self._commits_since_checkpoint >= CHECKPOINT_EVERY:
            self._commits_since_checkpoint = 0
            self.submit(checkpoint)

    async def close(self) -> None:
        """Close each connection on the thread that uses it, then end the worker.

        The loop's connection is closed here, on the loop, at once: closed from the worker it
        could be in use by an inline read at that moment (a crash of the interpreter, seen).
        Jobs already queued on the worker finish first; later ones raise `StoreClosedError`.
        """
        self.closed = True
        with self.inline_lock:
            self.inline.close()
        if self.worker is None:
            self.writer.close()
            return
        await self.worker.run(self.writer.close)
        self.worker.stop()


def _nothing() -> None:
    pass


async def open_store(location: str, options: StoreOptions) -> tuple[Connections, Queries, Codec]:
    """Open the store at ``location`` on a new worker (inline, in memory)."""
    if location == MEMORY:
        writer, inline, queries, codec = open_connections(location, options)
        return Connections(location, options, (writer, inline), None), queries, codec
    worker = Worker("rapid-dev-storage-sqlite")
    try:
        writer, inline, queries, codec = await worker.run(open_connections, location, options)
    except BaseException:
        worker.stop(wait=False)  # a cancelled open runs on: the loop does not wait for it
        raise
    return Connections(location, options, (writer, inline), worker), queries, codec
