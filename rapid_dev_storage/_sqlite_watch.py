"""SQLiteBackend's change watcher: a poller that reads the change log other connections fill.

Triggers on the store's table append every change to a log table (created on the first watch),
so every writer is seen: this library, the sqlite3 shell, another program. The poller asks SQLite
cheaply whether another connection committed (``PRAGMA data_version``); when one did, its own
thread reads the new log rows and the records they name, a batch per hop, and the loop publishes
them with a turn for other tasks every millisecond.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from ._changes import UNDECODABLE, digest_of
from ._sql import keys_of
from ._sqlite_bridge import Connections
from ._sqlite_core import connect, install_change_log, is_busy, prune_change_log, read
from ._sqlite_sql import LOG_BATCH, Queries
from ._turns import Yielder
from ._types import Keys, NoValue

if TYPE_CHECKING:
    from ._watch import ChangeHub

logger = logging.getLogger(__name__)

LOG_KEEP = 100_000
"""Change-log entries kept behind the newest; a watcher further behind than that misses some."""
POLL_SECONDS = 0.03
"""How often a watcher asks SQLite whether another connection committed (PRAGMA data_version):
measured, 10 ms cost an idle watcher 3% of a core; 30 ms about 1%, with changes still seen
in about 18 ms at the median."""

Found = list[tuple[str, Keys, bytes | None, Any]]
"""(group, keys, digest, value) of each record a log batch names: digest None when cleared."""


class ChangeLogPoller:
    """Publish what other connections commit to one store, while anyone watches it."""

    def __init__(
        self,
        connections: Connections,
        queries: Queries,
        hub: Callable[[], ChangeHub | None],
        decode: Callable[[str, Keys, bytes], Any],
    ) -> None:
        self._connections = connections
        self._queries = queries
        self._hub = hub
        self._decode = decode
        # While watching: the poller's connection, the thread that reads the log and the task.
        # The thread reads and decodes the log's records, a batch per hop, so a backlog of
        # 100,000 rows never holds the loop (measured before: 1.8 s without a turn).
        self._watching: tuple[sqlite3.Connection, ThreadPoolExecutor, asyncio.Task[None]] | None
        self._watching = None
        self._logged_since_prune = 0

    async def start(self) -> None:
        """Install the change log if needed, and poll it from its current end."""
        location = self._connections.location

        def install(writer: sqlite3.Connection) -> tuple[sqlite3.Connection, int]:
            install_change_log(writer, self._queries)
            poller = connect(location, 0, "fast")
            poller.execute("PRAGMA query_only = 1")
            return poller, poller.execute(self._queries.log_last).fetchone()[0]

        poller, last_seq = await self._connections.on_worker(install)
        reader = ThreadPoolExecutor(1, thread_name_prefix="rapid-dev-storage-sqlite-watch")
        task = asyncio.ensure_future(self._poll(poller, reader, last_seq))
        self._watching = (poller, reader, task)

    async def stop(self) -> None:
        """Stop polling and close the poller's connection."""
        if self._watching is None:
            return
        (poller, reader, task), self._watching = self._watching, None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Closed on its thread, after a batch the cancelled task left running there.
        await asyncio.get_running_loop().run_in_executor(reader, poller.close)
        reader.shutdown(wait=False)

    async def _poll(
        self, poller: sqlite3.Connection, reader: ThreadPoolExecutor, last_seq: int
    ) -> None:
        """Publish what other connections committed, read from the change log."""
        loop = asyncio.get_running_loop()
        version = None  # the first tick reads the log: writes may have landed since install
        again: list[tuple[str, Keys]] = []  # records a local write raced: read them again
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                now = poller.execute("PRAGMA data_version").fetchone()[0]
                if now == version and not again:
                    continue
                version = now
                more = True
                while more:
                    hub = self._hub()
                    mark = 0 if hub is None else hub.mark()
                    read_log = functools.partial(self._read_log, poller, last_seq, again)
                    last_seq, found, logged = await loop.run_in_executor(reader, read_log)
                    again = await self._offer(found, mark)
                    self._prune(logged, last_seq)
                    more = logged == LOG_BATCH
            except sqlite3.Error as exc:
                if not is_busy(exc):
                    logger.warning("reading the change log failed: %s", exc)
                version = None  # look again at the next tick

    def _read_log(
        self, poller: sqlite3.Connection, last_seq: int, again: list[tuple[str, Keys]]
    ) -> tuple[int, Found, int]:
        """On the poller's thread: the next log batch's records, read and decoded.

        Return (the last sequence number read, what was found per record, log rows read).
        One read per record however often it changed: the latest value counts.
        """
        rows = poller.execute(self._queries.log_since, (last_seq,)).fetchall()
        if rows:
            last_seq = rows[-1][0]
        found: Found = []
        for group, keys in dict.fromkeys([*again, *((row[1], keys_of(row[2:])) for row in rows)]):
            data = read(poller, self._queries, group, keys)
            if data is None:
                found.append((group, keys, None, NoValue))
                continue
            try:
                value = self._decode(group, keys, data)
            except Exception:  # a corrupt record is reported by reads; the hub warns
                value = UNDECODABLE
            found.append((group, keys, digest_of(data), value))
        return last_seq, found, len(rows)

    async def _offer(self, found: Found, mark: int) -> list[tuple[str, Keys]]:
        """Publish what `_read_log` found, a turn for other tasks every millisecond."""
        hub = self._hub()
        again: list[tuple[str, Keys]] = []
        pause = Yielder()
        for group, keys, digest, value in found:
            await pause()
            if hub is not None and not hub.offer(group, keys, digest, value, mark):
                again.append((group, keys))
        return again

    def _prune(self, logged: int, last_seq: int) -> None:
        """Have the worker forget the log far behind, about every `LOG_BATCH` rows read."""
        self._logged_since_prune += logged
        if self._logged_since_prune >= LOG_BATCH:
            self._logged_since_prune = 0
            self._connections.submit(prune_change_log, self._queries, last_seq - LOG_KEEP)
