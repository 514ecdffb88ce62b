"""PostgresBackend's change watcher: a connection of its own that LISTENs, and a fetcher.

A trigger on the store's table NOTIFYs the record's keys (a payload holds at most 8000 bytes),
only while a watcher is registered in the listeners table; the watcher fetches the values in
batches and publishes them. When the listening connection is lost (a restart, a terminated
backend), it listens again as soon as the server answers; notifications of writes committed in
between were never delivered to anyone, and that window is logged when it closes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ._postgres_sql import (
    FETCH_BATCH,
    LISTENER_ADD,
    LISTENER_REMOVE,
    LISTENER_SWEEP,
    LISTENERS_TABLE,
    WRITER_SETTING,
    unescape,
)
from ._types import Keys
from .errors import StorageError, StorageIOError, StoreClosedError

if TYPE_CHECKING:
    import asyncpg

    from ._watch import ChangeHub

logger = logging.getLogger(__name__)

RELISTEN_DELAY = 0.05
"""Most seconds between attempts to listen again: every one of them is a window of missed writes
(an attempt costs one refused connection)."""

REFUSED_DELAY = 1.0
"""Seconds before listening is tried again after the server refused it (a revoked grant)."""

Retrying = Callable[[Callable[[], Awaitable[Any]], float], Awaitable[Any]]


class ChangeListener:
    """Watch one store's channel for other writers' changes while anyone watches."""

    def __init__(
        self,
        *,
        location: str,
        dsn: str,
        settings: dict[str, str],
        channel: str,
        retrying: Retrying,
        fetch_values: Callable[[list[tuple[str, Keys]]], Awaitable[dict[int, bytes | None]]],
        hub: Callable[[], ChangeHub | None],
        canonical: Callable[[bytes | None], bytes | None],
    ) -> None:
        self._location = location
        self._dsn = dsn
        self._settings = settings
        self._channel = channel
        self._writer = settings[WRITER_SETTING]  # in our own writes' notifications
        self._retrying = retrying
        self._fetch_values = fetch_values
        self._hub = hub
        self._canonical = canonical
        self._connection: asyncpg.Connection | None = None
        self._relistening: asyncio.Task[None] | None = None
        self._fetcher: asyncio.Task[None] | None = None
        self._pending: dict[tuple[str, Keys], None] = {}
        self._wake = asyncio.Event()
        self.listening = asyncio.Event()
        """Set while the channel is listened to."""
        self.blind: list[tuple[float, float]] = []
        """(lost, listening again), in loop time, of each time the listener was lost."""
        self.relistened = asyncio.Event()
        """Set each time it listens again after a loss."""

    async def start(self) -> None:
        """Listen, and start publishing what others change."""
        await self._listen()
        self._fetcher = asyncio.ensure_future(self._fetch_changes())

    async def stop(self) -> None:
        """Stop listening and unregister."""
        tasks = [task for task in (self._fetcher, self._relistening) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fetcher = self._relistening = None
        self.listening.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a lost server: its row is swept later
                await connection.execute(LISTENER_REMOVE, self._channel)
                await connection.close(timeout=2)
            if not connection.is_closed():  # closing timed out
                connection.terminate()
        self._pending.clear()

    async def _listen(self) -> None:
        """Connect the listening connection and LISTEN (it is not pooled: it stays subscribed)."""
        import asyncpg  # noqa: PLC0415 - the optional extra

        async def connect() -> asyncpg.Connection:
            connection = await asyncpg.connect(self._dsn, server_settings=self._settings)
            try:
                await connection.add_listener(self._channel, self._notified)
                await connection.execute(LISTENER_SWEEP, self._channel)
                await connection.execute(LISTENER_ADD, self._channel)
            except BaseException:
                connection.terminate()
                raise
            connection.add_termination_listener(self._lost)
            return connection

        try:
            self._connection = await self._retrying(connect, RELISTEN_DELAY)
        except StorageIOError as exc:
            if isinstance(exc.__cause__, asyncpg.InsufficientPrivilegeError):
                raise StorageIOError(
                    f"{self._location}: this role may not register as a watcher ({exc.__cause__})"
                    f": GRANT SELECT, INSERT, DELETE ON {LISTENERS_TABLE} to it "
                    "(docs/backends.md: roles sharing a schema)"
                ) from exc.__cause__
            raise
        self.listening.set()

    def _lost(self, connection: Any) -> None:
        """Listen again once the server is back (writes in between are missed)."""
        if connection is not self._connection or self._fetcher is None:
            return
        self.listening.clear()
        logger.warning("%s: lost the change listener; reconnecting", self._location)
        self._relistening = asyncio.ensure_future(self._relisten())

    async def _relisten(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.relistened.clear()
        while True:
            try:
                await self._listen()
            except StoreClosedError:
                return
            except StorageError as exc:  # refused, or away past reconnect_timeout
                logger.warning("%s", exc)
                await asyncio.sleep(REFUSED_DELAY)
                continue
            self.blind.append((started, loop.time()))
            self.relistened.set()
            logger.warning(
                "%s: listening again after %.3f s; changes others committed in between (and in "
                "the last moments before the server went away) were not reported",
                self._location,
                loop.time() - started,
            )
            return

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("writer") == self._writer:
                return  # our own write: published when it landed
            names = [message["group"], *message["keys"]]
            if message.get("base64"):
                names = [base64.b64decode(name).decode() for name in names]
            group, keys = unescape(names[0]), tuple(map(unescape, names[1:]))
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("unreadable notification %r: %s", payload, exc)
            return
        hub = self._hub()
        if hub is not None and hub.wants(group, keys):
            self._pending[group, keys] = None
            self._wake.set()

    async def _fetch_changes(self) -> None:
        """Fetch the values of records others changed, in batches, and publish them in order."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending)[:FETCH_BATCH]
                for record in batch:
                    del self._pending[record]
                try:
                    found = await self._fetch_values(batch)
                except StorageError as exc:
                    logger.warning("fetching changed records failed: %s", exc)
                    # Try them again first: changes are published in the order they were made.
                    self._pending = {**dict.fromkeys(batch), **self._pending}
                    await asyncio.sleep(0.5)
                    continue
                hub = self._hub()
                if hub is None:
                    return
                for index, (group, keys) in enumerate(batch):
                    hub.publish(group, keys, self._canonical(found.get(index)), "external")
