"""`SQLiteBackend`: one table per store in a single SQLite file (or in memory), on stdlib `sqlite3`.

The backend is the hooks only. Its statements live in `_sqlite_sql`, the operations they make up
in `_sqlite_core`, the choice of thread for each (reads inline, writes on a worker that owns the
writing connection) in `_sqlite_bridge`, and watching other writers in `_sqlite_watch`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, AsyncIterator

from ._backend import ScanItem, StorageBackend
from ._blob_reads import read_large_value
from ._codecs import Codec
from ._settings import resolve_store_options
from ._sql import keys_of, record_params
from ._sql_stores import STORES_TABLE
from ._sqlite_bridge import Connections, open_store
from ._sqlite_core import (
    LARGE,
    PAGE_SIZE,
    Row,
    execute,
    list_groups,
    location_of,
    read,
    read_small,
    scan_page,
    swap,
    write,
)
from ._sqlite_sql import Queries, table_name
from ._sqlite_watch import ChangeLogPoller
from ._types import Keys
from ._validate import MAX_KEYS

__all__ = ["STORES_TABLE", "SQLiteBackend", "table_name"]


class SQLiteBackend(StorageBackend):
    """Stores records in one table per store, in an SQLite file (WAL mode) or ``":memory:"``.

    Several stores share one file, each in its table named from ``(name, unique_identifier)``;
    keys live in columns ``k1``..``k5`` plus ``key_count`` under one primary key, so prefix
    queries use the index. Values are codec bytes in ``data``. Other processes may open the same
    file: `update` is atomic across them (a compare-and-swap in an immediate transaction).
    """

    def __init__(self, *, connections: Connections, queries: Queries, codec: Codec) -> None:
        """Use `create_backend_instance`; this only assembles what it opened."""
        super().__init__(codec)
        self.location = connections.location
        self._connections = connections
        connections.after_wait = self._turn_taken  # a wait for the worker gave the loop a round
        self._queries = queries
        # An in-memory database has no other writer: our own events are all there is to watch.
        self._poller = (
            None
            if connections.worker is None
            else ChangeLogPoller(connections, queries, self._active_hub, self._value_of)
        )

    @classmethod
    async def create_backend_instance(
        cls,
        path: Path | str,
        name: str,
        unique_identifier: int | str,
        *,
        serializer: Any = None,
        deserializer: Any = None,
        codec: str | Codec | None = None,
        durability: str | None = None,
        lock_timeout: float | None = None,
    ) -> SQLiteBackend:
        """Open (creating if needed) the store ``(name, unique_identifier)`` in the file ``path``.

        ``path`` is a database file (its directory is created if missing) or ``":memory:"``.
        ``codec`` is ``"msgpack"`` (the default for a new store), ``"json"`` or a `Codec`; left
        out, an existing store opens with the codec it was written with. ``durability``
        (``"full"``, the default, or ``"fast"``; env ``RAPID_DEV_STORAGE_DURABILITY``) sets
        ``synchronous`` to FULL or NORMAL. ``lock_timeout`` (seconds, default 10; env
        ``RAPID_DEV_STORAGE_LOCK_TIMEOUT``) bounds waiting for another process's write.

        Raises:
            IncompatibleStoreError: the store exists with another codec or a newer format.
            InvalidNameError: ``name`` or ``unique_identifier`` is unusable.

        """
        options = resolve_store_options(
            name, unique_identifier, serializer, deserializer, codec, durability, lock_timeout
        )
        connections, queries, chosen = await open_store(location_of(path), options)
        return cls(connections=connections, queries=queries, codec=chosen)

    # --- hooks ------------------------------------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        connections = self._connections
        try:  # Connections.read's inline attempt, written out: this is the hottest path
            with connections.inline_lock:
                data = read_small(connections.loop_cursor(), self._queries, group, keys)
        except sqlite3.Error:
            data = await connections.read(read_small, self._queries, group, keys)
        if data is LARGE:
            return await self._large_read(group, keys)
        return data  # type: ignore[return-value]  # bytes or None

    async def _large_read(self, group: str, keys: Keys) -> bytes | None:
        """Read a large value off the loop (inline, in memory: there is no thread)."""
        if self._connections.worker is None:
            return read(self._connections.loop_connection(), self._queries, group, keys)
        # Copied out with the GIL released (see _blob_reads): a 200 MB SELECT held it 116-320 ms.
        record = record_params(group, keys)
        return await self._connections.on_worker(read_large_value, self._queries.table, record)

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        await self._connections.write(write, self._queries, group, keys, data)

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        return await self._connections.write(swap, self._queries, group, keys, expected, new)

    async def _delete(self, group: str, keys: Keys) -> None:
        params = record_params(group, keys)
        await self._connections.write(execute, self._queries.delete, params)

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        sql = self._queries.delete_prefix[len(prefix)]
        await self._connections.write(execute, sql, (group, *prefix), small=False)

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        after: Row = ("",) * MAX_KEYS + (0,)
        while True:
            self._check_open()
            rows = await self._connections.read(scan_page, self._queries, group, prefix, after)
            items: list[ScanItem] = []
            for row in rows:  # (k1..k5, key_count, small value or NULL, length)
                keys = keys_of(row)
                data = row[-2] if row[-2] is not None else await self._large_read(group, keys)
                if data is not None:  # None: cleared since the page was read
                    items.append((keys, data, None))
            yield items
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][: MAX_KEYS + 1]
            await asyncio.sleep(0)  # pages are read inline: let other tasks run between them

    async def _list_groups(self) -> list[str]:
        return await self._connections.read(list_groups, self._queries)

    async def _start_watching(self) -> None:
        if self._poller is not None:
            await self._poller.start()

    async def _stop_watching(self) -> None:
        if self._poller is not None:
            await self._poller.stop()

    async def _close(self) -> None:
        await self._connections.close()

    def __repr__(self) -> str:
        return (
            f"SQLiteBackend({self.location!r}, table={self._queries.table!r}, "
            f"codec={self.codec.name!r})"
        )
