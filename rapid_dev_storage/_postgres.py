"""`PostgresBackend`: one table per store on a PostgreSQL server, through an asyncpg pool.

asyncpg is imported when a backend is created, never when the package is: it is the optional
``postgres`` extra. Every operation is one statement on a pooled connection, so there is no
thread and no transaction held between awaits. ``update`` is a compare-and-swap (``UPDATE ...
WHERE value = expected``: PostgreSQL re-checks the condition on the row it locked, so two
machines never both win) that also writes a version of its own, which proves after a lost
connection whether it landed. Every operation is retried on a new connection while the server
is away. Statements live in `_postgres_sql`, opening a store in `_postgres_open`, running
statements (the pool, retries) in `_postgres_run`, watching in `_postgres_listen`.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from ._backend import ScanItem, StorageBackend
from ._codecs import Codec
from ._postgres_listen import ChangeListener
from ._postgres_open import OpenedStore, Server, connect_pool, list_stores, resolve_server
from ._postgres_order import WriteOrder
from ._postgres_run import Statements, require_asyncpg
from ._postgres_sql import (
    DSN_PREFIXES,
    PAGE_SIZE,
    check_size,
    escape,
    keys_of,
    stored_record_params,
    stored_value,
    table_name,
    unescape,
)
from ._settings import resolve_store_options
from ._sql import RECORD_COLUMNS
from ._sql_stores import StoreRequest
from ._types import Keys
from ._validate import MAX_KEYS
from .errors import ReadOnlyStoreError, StorageIOError

if TYPE_CHECKING:
    import asyncpg

__all__ = ["DSN_PREFIXES", "PostgresBackend", "list_stores", "table_name"]

logger = logging.getLogger(__name__)

RECOVERY_DELAY = 0.05
"""Most seconds between attempts to read back a record whose update lost its connection."""


class _Read(bytes):
    """A record's bytes as read, with its row's version: what update's compare-and-swap expects.

    The update loop hands `_read`'s result back to `_swap` as ``expected``, so the version
    travels with the bytes it belongs to.
    """

    version: int | None = None


class PostgresBackend(StorageBackend):
    """Stores records in one table per store on a PostgreSQL server (asyncpg, a pool).

    Keys live in columns ``k1``..``k5`` plus ``key_count`` under one primary key, so prefix
    queries use the index; values are ``bytea`` (msgpack, custom codecs) or ``jsonb`` (the JSON
    codec), which SQL can query. Any number of processes on any number of machines may share a
    store: `update` is atomic across all of them, and watchers see every write, including ones
    made in SQL by hand. A role that may only read the table opens the store read-only.
    """

    def __init__(self, *, pool: asyncpg.Pool, opened: OpenedStore, server: Server) -> None:
        """Use `create_backend_instance`; this only assembles what it opened."""
        super().__init__(opened.codec)
        self.location = f"{server.location} table {opened.queries.table}"
        self._read_only_reason = opened.read_only_reason
        self.read_only = bool(self._read_only_reason)
        self._statements = Statements(
            pool,
            location=self.location,
            reconnect_timeout=server.reconnect_timeout,
            lock_timeout=server.lock_timeout,
            is_closed=lambda: self._closed,
        )
        self._queries = opened.queries
        self._server = server
        self._lost = self._statements.lost
        self._listener: ChangeListener | None = None
        # Overlapping writes, clears and swaps (one record's; a record's and a clear of its
        # group or prefix) go to the server one at a time, in the order they were made: on two
        # pooled connections a later write could commit first (`_postgres_order`).
        self._write_order = WriteOrder()

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
        pool_size: int | None = None,
        reconnect_timeout: float | None = None,
    ) -> PostgresBackend:
        """Open (creating if needed) the store ``(name, unique_identifier)`` on the server ``path``.

        ``path`` is a DSN (``postgresql://user:password@host:port/database``; libpq's
        environment variables fill in what it leaves out). Tables go in the first schema of the
        connection's ``search_path`` (``?search_path=myschema`` in the DSN picks another).
        ``codec`` as for every backend; JSON values are stored as ``jsonb``. ``durability``
        ``"full"`` (default) commits with ``synchronous_commit = on``, ``"fast"`` with ``off``.
        ``lock_timeout`` (seconds, default 10) bounds waiting for another connection's row
        lock; ``pool_size`` (default 10; env ``RAPID_DEV_STORAGE_POOL_SIZE``) caps connections;
        ``reconnect_timeout`` (seconds, default 30; env
        ``RAPID_DEV_STORAGE_RECONNECT_TIMEOUT``) is how long an operation retries while the
        server is unreachable. A role that may not write the store's table opens it read-only:
        writes raise `ReadOnlyStoreError`.

        Raises:
            IncompatibleStoreError: the store exists with another codec or a newer format.
            InvalidNameError: ``name`` or ``unique_identifier`` is unusable.
            StorageIOError: the server cannot be reached or refused us (a role that may not
                create the store).
            UnsupportedOperationError: asyncpg is not installed.

        """
        require_asyncpg()
        options = resolve_store_options(
            name, unique_identifier, serializer, deserializer, codec, durability, lock_timeout
        )
        server = resolve_server(
            path, options, pool_size=pool_size, reconnect_timeout=reconnect_timeout
        )
        request = StoreRequest(options.name, options.identifier, options.codec, server.location)
        pool, opened = await connect_pool(server, request)
        return cls(pool=pool, opened=opened, server=server)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"PostgresBackend at {self.location} is read-only: {self._read_only_reason}"
            )

    # --- values as stored ---------------------------------------------------------------------

    def _stored(self, data: bytes) -> tuple[Any, ...]:
        """Return the value columns for a record's bytes."""
        return stored_value(self._queries.jsonb, data)

    def _as_bytes(self, value: Any) -> bytes | None:
        """Return a stored value (bytea, or jsonb text) as the record's bytes."""
        if value is None or isinstance(value, bytes):
            return value
        return str(value).encode()

    def _canonical(self, data: bytes | None) -> bytes | None:
        """Return the bytes our own write of this value would have: jsonb reorders and respaces."""
        if data is None or not self._queries.jsonb:
            return data
        try:
            return self.codec.dumps(self.codec.loads(data))
        except Exception:  # undecodable: the hub reports it as such
            return data

    # --- hooks --------------------------------------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        row = await self._statements.statement(
            "fetchrow", self._queries.select, *stored_record_params(group, keys)
        )
        if row is None:
            return None
        read = _Read(self._as_bytes(row[0]) or b"")
        read.version = row[1]
        return read

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        params = stored_record_params(group, keys)
        check_size(group, params)
        async with self._write_order.turn(group, keys):
            await self._statements.statement(
                "execute", self._queries.upsert, *params, *self._stored(data), writing=True
            )

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        params = stored_record_params(group, keys)
        if new is not None:
            check_size(group, params)
        queries = self._queries
        version = secrets.randbits(62)  # this write's own: no other write has it
        if expected is None:
            if new is None:  # clearing what is not there: nothing to write
                return await self._read(group, keys) is None
            sql, values = queries.insert_new, (*params, *self._stored(new), version)
        else:
            was = (expected.decode() if queries.jsonb else expected, _version_of(expected))
            if new is None:
                sql, values = queries.swap_delete, (*params, *was)
            else:
                sql, values = queries.swap_update, (*params, *self._stored(new), version, *was)
        async with self._write_order.turn(group, keys):  # see __init__
            lost: Exception | None = None  # once a connection was lost mid-statement
            while True:
                try:
                    status = await self._statements.once("execute", sql, values)
                except Exception as exc:
                    if not isinstance(exc, self._lost):
                        raise self._statements.error(exc, writing=True) from exc
                    lost = exc
                else:
                    if lost is None or not status.endswith(" 0"):
                        return not status.endswith(" 0")
                    # Sent again and matched nothing: the lost one may have landed meanwhile.
                landed = await self._after_loss(group, keys, expected, new, version, lost)
                if landed is not None:
                    return landed
                # Otherwise nothing changed: the same statement again lands at most once.

    async def _after_loss(
        self,
        group: str,
        keys: Keys,
        expected: bytes | None,
        new: bytes | None,
        version: int,
        exc: Exception,
    ) -> bool | None:
        """Decide an update whose connection was lost mid-statement, once the server answers.

        True: it landed. False: it did not and never can (update calls its function again).
        None: the record is as it was read, so the statement may be sent again: it still
        requires the version it read, so of it and the lost one (if that still runs on the
        server) at most one lands. Proof comes only from versions, never from values: another
        writer can write the very value we meant to (every increment from 5 writes 6).
        """
        logger.info("%s: %s during an update; checking whether it landed", self.location, exc)
        sql, params = self._queries.recover, stored_record_params(group, keys)
        # Retried at short intervals: each update that lands meanwhile pushes the version we
        # read further back in the record's history.
        row = await self._statements.retrying(
            lambda: self._statements.once("fetchrow", sql, params), RECOVERY_DELAY
        )
        history = (row[2] or []) if row is not None else []
        if row is not None and (row[1] == version or version in history):
            return True  # the row holds our write, or later updates built on it
        if expected is None:
            if row is None:
                # Not landed, or landed and cleared since: either way inserting now leaves the
                # store as if this update came after that clear, counted once.
                return None
        elif row is not None:
            was = _version_of(expected)
            if row[1] == was:
                # Sets keep a row's version, so the value tells whether one came since; the
                # statement requires the value too.
                return None if self._as_bytes(row[0]) == expected else False
            if was is not None and was in history:
                # Every update since the version we read is on record, and ours is not among
                # them; and that version is gone, so ours can never land.
                return False
        raise StorageIOError(
            f"{self.location}: the connection was lost while updating group {group!r} keys "
            f"{keys!r}, and the record changed since: whether this update landed is unknown, "
            f"so it was not applied again; read the record to decide ({exc})"
        ) from exc

    async def _delete(self, group: str, keys: Keys) -> None:
        params = stored_record_params(group, keys)
        async with self._write_order.turn(group, keys):
            await self._statements.statement("execute", self._queries.delete, *params, writing=True)

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        params = (escape(group), *map(escape, prefix))
        sql = self._queries.delete_prefix[len(prefix)]
        async with self._write_order.turn(group, prefix, prefix=True):
            await self._statements.statement("execute", sql, *params, writing=True)

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        head = (escape(group), *map(escape, prefix))
        after: tuple[Any, ...] = ("",) * (MAX_KEYS - len(prefix)) + (0,)
        sql = self._queries.scan_page[len(prefix)]
        while True:
            rows = await self._statements.fetch(sql, *head, *after)
            yield [(keys_of(row), self._as_bytes(row[-1]), None) for row in rows]  # type: ignore[misc]
            if len(rows) < PAGE_SIZE:
                return
            after = tuple(rows[-1])[len(prefix) : -1]

    async def _list_groups(self) -> list[str]:
        rows = await self._statements.fetch(self._queries.groups)
        return [unescape(row[0]) for row in rows]

    async def _close(self) -> None:
        await self._statements.close()

    # --- watching other writers ---------------------------------------------------------------

    async def _start_watching(self) -> None:
        self._listener = ChangeListener(
            location=self.location,
            dsn=self._server.dsn,
            settings=self._server.settings,
            channel=self._queries.channel,
            retrying=self._statements.retrying,
            fetch_values=self._fetch_values,
            hub=self._active_hub,
            canonical=self._canonical,
        )
        try:
            await self._listener.start()
        except BaseException:
            self._listener = None
            raise

    async def _stop_watching(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()

    async def _fetch_values(self, records: list[tuple[str, Keys]]) -> dict[int, bytes | None]:
        columns: list[list[Any]] = [[] for _ in RECORD_COLUMNS]
        for group, keys in records:
            for column, value in zip(columns, stored_record_params(group, keys), strict=True):
                column.append(value)
        rows = await self._statements.fetch(self._queries.fetch_many, *columns)
        return {row[0] - 1: self._as_bytes(row[1]) for row in rows}

    def __repr__(self) -> str:
        return f"PostgresBackend({self.location!r}, codec={self.codec.name!r})"


def _version_of(expected: bytes) -> int | None:
    """Return the row version ``expected`` was read with (None: a row of an older version)."""
    return expected.version if isinstance(expected, _Read) else None
