"""PostgresBackend's connections: a pool, one kept connection, retries while the server is away.

Every statement runs here. A connection that was lost is terminated and never handed out again;
an operation retries on a new connection, backing off, for up to ``reconnect_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from ._sql_errors import statement_error
from .errors import (
    ReadOnlyStoreError,
    StorageIOError,
    StoreClosedError,
    UnsupportedOperationError,
)

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")
logger = logging.getLogger(__name__)

FIRST_RETRY_DELAY = 0.02
"""Seconds before the first retry; doubled after each, up to `MAX_RETRY_DELAY`."""
MAX_RETRY_DELAY = 0.5


def require_asyncpg() -> None:
    """Raise `UnsupportedOperationError` unless the optional extra, asyncpg, is installed."""
    try:
        import asyncpg  # noqa: PLC0415, F401 - imported here, not when the package is
    except ImportError:
        raise UnsupportedOperationError(
            "PostgresBackend needs asyncpg: pip install 'rapid_dev_storage[postgres]'"
        ) from None


def lost_connection_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the connection or server went away: the operation may be retried."""
    import asyncpg  # noqa: PLC0415 - the optional extra, imported only when a backend exists

    return (
        OSError,
        asyncpg.InterfaceError,  # "connection is closed", released by a failed connection
        asyncpg.PostgresConnectionError,  # class 08
        asyncpg.CannotConnectNowError,  # the server is starting or stopping
        asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError,
        # The server's "terminating connection" reached a connection between statements: its
        # protocol state is broken ("cannot switch to state 12; another operation (2) is in
        # progress") and the statement was never sent. Seen on every fast restart and every
        # pg_terminate_backend of an idle connection; the connection is discarded.
        asyncpg.InternalClientError,
    )


def translated(
    exc: BaseException, location: str, *, writing: bool = False, lock_timeout: float | None = None
) -> Exception:
    """Return our error for one of asyncpg's; raise it ``from`` the original."""
    import asyncpg  # noqa: PLC0415

    if writing and isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return ReadOnlyStoreError(
            f"{location}: this role may not write the store ({exc}): GRANT INSERT, UPDATE, "
            "DELETE ON the table to it, or write as a role that may"
        )
    held_lock = "a row lock" if isinstance(exc, asyncpg.LockNotAvailableError) else None
    return statement_error(location, exc, held_lock=held_lock, timeout=lock_timeout)


class Statements:
    """Run a backend's statements on its pool, keeping one connection for the hot path."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        location: str,
        reconnect_timeout: float,
        lock_timeout: float,
        is_closed: Callable[[], bool],
    ) -> None:
        import asyncpg  # noqa: PLC0415 - the optional extra

        self.location = location
        self._pool = pool
        # One pooled connection kept for statements that find it free: asyncpg's acquire and
        # release cost about 50 us here, a third of a primary-key read on loopback.
        self._held: asyncpg.Connection | None = None
        self._held_busy = False
        self.releasing: set[asyncio.Task[object]] = set()
        self._reconnect_timeout = reconnect_timeout
        self._lock_timeout = lock_timeout
        self._is_closed = is_closed
        self.lost = lost_connection_errors()
        # What the server answers for a failed statement; the connection stays usable.
        self._server_errors: type[Exception] = asyncpg.PostgresError

    async def retrying(
        self, attempt: Callable[[], Awaitable[T]], max_delay: float = MAX_RETRY_DELAY
    ) -> T:
        """Run ``attempt`` again while the server is unreachable, up to ``reconnect_timeout``.

        The pool drops a connection that failed and opens a new one on the next acquire, so
        each attempt after a server restart reconnects by itself.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reconnect_timeout
        delay = FIRST_RETRY_DELAY
        while True:
            if self._is_closed():
                raise StoreClosedError(f"PostgresBackend at {self.location} is closed")
            try:
                return await attempt()
            except Exception as exc:
                if not isinstance(exc, self.lost):
                    raise self.error(exc) from exc
                if delay == FIRST_RETRY_DELAY:
                    timeout = self._reconnect_timeout
                    logger.info("%s: %s; retrying for up to %g s", self.location, exc, timeout)
                if loop.time() >= deadline:
                    raise StorageIOError(
                        f"{self.location}: the server did not answer for "
                        f"{self._reconnect_timeout:g} s (reconnect_timeout): {exc}"
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)

    async def once(self, method: str, sql: str, params: tuple[Any, ...]) -> Any:
        """Run one statement on the held connection if it is free, else on a pooled one.

        A connection that was lost is terminated, never handed out again: one whose protocol
        state a server's termination message broke would fail every statement. A statement
        cancelled mid-flight on the held connection is settled by the server (run or cancelled)
        while that connection goes back to the pool: later statements wait for that, so a
        cancelled clear never lands after a write acknowledged after it. (On a pooled
        connection the pool's release already waits, before the caller hears of it.)
        """
        if self.releasing:
            await asyncio.wait(set(self.releasing))
        if self._held_busy:
            async with self._pool.acquire() as connection:
                try:
                    return await getattr(connection, method)(sql, *params)
                except self.lost:
                    _discard(connection)
                    raise
        self._held_busy = True
        try:
            if self._held is None:
                self._held = await self._pool.acquire()
            return await getattr(self._held, method)(sql, *params)
        except BaseException as exc:
            lost = isinstance(exc, self.lost)
            if lost and self._held is not None:
                _discard(self._held)
            if lost or not isinstance(exc, self._server_errors):
                self.drop_held()  # lost, or cancelled mid-statement: the pool sorts it out
            raise
        finally:
            self._held_busy = False

    def drop_held(self) -> None:
        """Hand the kept connection back to the pool (a new one is taken when next needed)."""
        held, self._held = self._held, None
        if held is not None:
            task = asyncio.ensure_future(self._pool.release(held))
            self.releasing.add(task)
            task.add_done_callback(self.releasing.discard)

    async def statement(self, method: str, sql: str, *params: Any, writing: bool = False) -> Any:
        """Run one statement (``fetchval``, ``fetchrow``, ``execute``), retrying while lost."""
        try:  # the hot path: one attempt, no closure
            return await self.once(method, sql, params)
        except Exception as exc:
            if not isinstance(exc, self.lost):
                raise self.error(exc, writing=writing) from exc
        return await self.retrying(lambda: self.once(method, sql, params))

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        """Run one query returning rows, retrying while the server is away."""
        return await self.retrying(lambda: self.once("fetch", sql, params))

    def error(self, exc: Exception, *, writing: bool = False) -> Exception:
        """Return our error for a failed statement (the caller raises it ``from`` ``exc``)."""
        if self._is_closed():
            return StoreClosedError(f"PostgresBackend at {self.location} is closed")
        if isinstance(exc, self._server_errors):
            return translated(exc, self.location, writing=writing, lock_timeout=self._lock_timeout)
        return statement_error(self.location, exc)

    async def close(self) -> None:
        """Release the kept connection and close the pool."""
        self.drop_held()
        await asyncio.gather(*self.releasing, return_exceptions=True)
        await self._pool.close()


def _discard(connection: asyncpg.Connection) -> None:
    """Close a lost connection at once (the pool may have detached it already)."""
    with contextlib.suppress(Exception):
        connection.terminate()
