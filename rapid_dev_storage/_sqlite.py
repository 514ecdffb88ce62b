"""`SQLiteBackend`: one table per store in a single SQLite file (or in memory), on stdlib `sqlite3`.

How it keeps the event loop moving (measured in ``tools/measure_sqlite_bridge.py``): a
primary-key read takes a few microseconds, far less than a hop to a thread (about 130 us here),
so reads run inline on the loop through a read-only connection. In WAL mode a reader never waits
for a writer; if it ever meets a lock anyway, the read moves to the worker thread. Writes commit
with an fsync and may wait for another process's lock, so they run on one worker thread per
backend that owns the writing connection, one whole operation per hop. An in-memory database has
no I/O and no other process, so it runs entirely inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence, TypeVar

from ._backend import ScanItem, StorageBackend
from ._blob_reads import read_large_value
from ._codecs import Codec, codec_by_name, codec_for_existing_store
from ._locks import UnfinishedJobs
from ._settings import Durability, StoreOptions, resolve_store_options
from ._slices import LARGE_RECORD
from ._sql import (
    KEY_COLUMNS,
    ORDER,
    RECORD_COLUMNS,
    delete_prefix_statements,
    groups_statement,
    keys_of,
    qmark,
    quote_identifier,
    record_condition,
    record_params,
    scan_page_statements,
)
from ._turns import Yielder
from ._types import Keys, NoValue
from ._validate import MAX_KEYS
from ._watch import UNDECODABLE, digest_of
from .errors import LockTimeoutError, StorageIOError

T = TypeVar("T")
logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
STORES_TABLE = "rapid_dev_storage_stores"
LOG_BATCH = 1000
LOG_KEEP = 100_000
"""Change-log entries kept behind the newest; a watcher further behind than that misses some."""
POLL_SECONDS = 0.03
"""How often a watcher asks SQLite whether another connection committed (PRAGMA data_version):
measured, 10 ms cost an idle watcher 3% of a core; 30 ms about 1%, with changes still seen
in about 18 ms at the median."""
CHECKPOINT_EVERY = 500
"""Inline commits between WAL checkpoints, which the worker runs (they fsync)."""
PAGE_SIZE = 256
"""Rows per query while iterating: large enough to amortise a query, small enough to stay flat."""

_Row = Sequence[Any]
_LARGE = object()
"""What an inline read returns for a value over `LARGE_RECORD`: read it on the worker."""
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # result codes; sqlite3 names them only from Python 3.11


def table_name(name: str, unique_identifier: str) -> str:
    """Return the table of a store: readable, and distinct for distinct name pairs."""

    def escape(text: str) -> str:
        return text.replace("%", "%25").replace(":", "%3A")

    return f"rds:{escape(name)}:{escape(unique_identifier)}"


def _row_values(row: str) -> str:
    """Return ``NEW.group_name, NEW.k1, ...``: a trigger's copy of a record's key columns."""
    return ", ".join(f"{row}.{column}" for column in RECORD_COLUMNS)


class _Queries:
    """Every statement for one table, built once, here and nowhere else."""

    def __init__(self, table: str) -> None:
        self.table = table
        t = quote_identifier(table)
        columns = ", ".join(RECORD_COLUMNS)
        record = record_condition(qmark)
        key_definitions = ", ".join(f"{column} TEXT NOT NULL" for column in KEY_COLUMNS)
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {t} (group_name TEXT NOT NULL, {key_definitions}, "
            f"key_count INTEGER NOT NULL, data BLOB NOT NULL, "
            f"PRIMARY KEY (group_name, {ORDER}))"
        )
        self.select = f"SELECT data FROM {t} WHERE {record}"
        # Inline reads leave a large value in the database (NULL here, its length beside it):
        # copying it out holds the GIL, so it is read on the worker thread instead. SQLite
        # knows a BLOB's length without reading it.
        small = f"CASE WHEN length(data) <= {LARGE_RECORD} THEN data END, length(data)"
        self.select_small = f"SELECT {small} FROM {t} WHERE {record}"
        self.upsert = f"INSERT OR REPLACE INTO {t} ({columns}, data) VALUES ({', '.join('?' * 8)})"
        self.delete = f"DELETE FROM {t} WHERE {record}"
        self.delete_prefix = delete_prefix_statements(t, qmark)
        self.scan_page = scan_page_statements(t, small, qmark, limit="?")
        self.groups = groups_statement(t)
        # The change log other processes' watchers read: filled by triggers, so every writer
        # (this library, the sqlite3 shell, another program) is seen. Created on first watch.
        log = quote_identifier(f"{table}:changes")
        self.log_ddl = [
            f"CREATE TABLE IF NOT EXISTS {log} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            f"group_name TEXT NOT NULL, {key_definitions}, key_count INTEGER NOT NULL)",
            *(
                f"CREATE TRIGGER IF NOT EXISTS {quote_identifier(f'{table}:{event}')} AFTER "
                f"{event.upper()} ON {t} BEGIN INSERT INTO {log} (group_name, {ORDER}) "
                f"VALUES ({_row_values(row)}); END"
                for event, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD"))
            ),
        ]
        self.log_since = (
            f"SELECT seq, group_name, {ORDER} FROM {log} WHERE seq > ? ORDER BY seq LIMIT "
            f"{LOG_BATCH}"
        )
        self.log_last = f"SELECT COALESCE(MAX(seq), 0) FROM {log}"
        self.log_prune = f"DELETE FROM {log} WHERE seq <= ?"


_STORES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {STORES_TABLE} (name TEXT NOT NULL, "
    "unique_identifier TEXT NOT NULL, table_name TEXT NOT NULL UNIQUE, codec TEXT NOT NULL, "
    "format_version INTEGER NOT NULL, PRIMARY KEY (name, unique_identifier))"
)
_STORES_SELECT = (
    f"SELECT codec, format_version FROM {STORES_TABLE} WHERE name = ? AND unique_identifier = ?"
)
_STORES_INSERT = (
    f"INSERT INTO {STORES_TABLE} (name, unique_identifier, table_name, codec, format_version) "
    "VALUES (?, ?, ?, ?, ?)"
)


def _location(path: Path | str) -> str:
    """Return ``":memory:"`` or the absolute path, which names the store in messages."""
    return ":memory:" if str(path) == ":memory:" else os.path.abspath(path)


def _translated(exc: sqlite3.Error, location: str) -> StorageIOError | LockTimeoutError:
    """Return our error for one of sqlite3's; raise it ``from`` the original."""
    if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
        return LockTimeoutError(
            f"{location}: another connection held the database lock past the timeout "
            "(raise lock_timeout= or RAPID_DEV_STORAGE_LOCK_TIMEOUT)",
            location=location,
        )
    return StorageIOError(f"{location}: {exc}")


@contextlib.contextmanager
def _translated_errors(location: str) -> Iterator[None]:
    """Turn sqlite3's errors into ours, keeping the original as the cause."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _translated(exc, location) from exc


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code: int | None = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is None:
        return "locked" in str(exc)
    return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


# --- the synchronous core: plain functions on a connection -------------------------------------


def _read(
    connection: sqlite3.Connection, queries: _Queries, group: str, keys: Keys
) -> bytes | None:
    rows = connection.execute(queries.select, record_params(group, keys)).fetchall()
    return rows[0][0] if rows else None  # a BLOB comes back as bytes


def _read_small(
    connection: sqlite3.Connection, queries: _Queries, group: str, keys: Keys
) -> bytes | object | None:
    """`_read` for inline use: `_LARGE` (having copied nothing) for a large value."""
    rows = connection.execute(queries.select_small, record_params(group, keys)).fetchall()
    if not rows:
        return None
    data, size = rows[0]
    return _LARGE if data is None and size is not None else data


def _write(
    connection: sqlite3.Connection, queries: _Queries, group: str, keys: Keys, data: bytes
) -> None:
    connection.execute(queries.upsert, (*record_params(group, keys), data))


def _swap(
    connection: sqlite3.Connection,
    queries: _Queries,
    group: str,
    keys: Keys,
    expected: bytes | None,
    new: bytes | None,
) -> bool:
    with _transaction(connection):
        if _read(connection, queries, group, keys) != expected:
            return False
        if new is None:
            connection.execute(queries.delete, record_params(group, keys))
        else:
            _write(connection, queries, group, keys, new)
    return True


def _execute(connection: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    connection.execute(sql, params)


def _scan_page(
    connection: sqlite3.Connection, queries: _Queries, group: str, prefix: Keys, after: _Row
) -> list[_Row]:
    params = (group, *prefix, *after[len(prefix) :], PAGE_SIZE)
    return connection.execute(queries.scan_page[len(prefix)], params).fetchall()


def _prune(connection: sqlite3.Connection, queries: _Queries, up_to: int) -> None:
    with contextlib.suppress(sqlite3.Error):  # another process prunes too, or holds the lock
        connection.execute(queries.log_prune, (up_to,))


def _checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _list_groups(connection: sqlite3.Connection, queries: _Queries) -> list[str]:
    return [name for (name,) in connection.execute(queries.groups).fetchall()]


def _connect(path: str, lock_timeout: float, durability: Durability) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=lock_timeout, isolation_level=None, check_same_thread=False
    )
    connection.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
    return connection


def _open_store(
    connection: sqlite3.Connection,
    name: str,
    identifier: str,
    requested: Codec | None,
    location: str,
    in_memory: bool,
) -> tuple[_Queries, Codec]:
    """Create or check the store's table and its row in the stores table, in one transaction."""
    if not in_memory:
        # WAL lets readers proceed while a writer commits; it is a property of the file.
        connection.execute("PRAGMA journal_mode = WAL")
    table = table_name(name, identifier)
    queries = _Queries(table)
    with _transaction(connection):
        connection.execute(_STORES_DDL)
        row = connection.execute(_STORES_SELECT, (name, identifier)).fetchone()
        if row is None:
            codec = requested if requested is not None else codec_by_name("msgpack")
            connection.execute(
                _STORES_INSERT, (name, identifier, table, codec.name, FORMAT_VERSION)
            )
            connection.execute(queries.create)
            return queries, codec
    stored_codec, version = row
    where = f"{location}: store ({name!r}, {identifier!r})"
    return queries, codec_for_existing_store(
        where, stored_codec, version, FORMAT_VERSION, requested
    )


def _open_connections(
    location: str, options: StoreOptions
) -> tuple[sqlite3.Connection, sqlite3.Connection, _Queries, Codec]:
    """Open the worker's connection, the inline one and the store; close what opened on failure.

    The inline connection never waits for a lock (timeout 0): if it meets one, the operation
    moves to the worker instead of stalling the event loop. It writes only at durability
    ``fast``, and leaves WAL checkpoints (which fsync) to the worker. In memory both are one
    connection: a second would open a second, empty database.
    """
    in_memory = location == ":memory:"
    with _translated_errors(location), contextlib.ExitStack() as on_failure:
        if not in_memory:
            Path(location).parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(location, options.lock_timeout, options.durability)
        on_failure.callback(writer.close)
        queries, codec = _open_store(
            writer, options.name, options.identifier, options.codec, location, in_memory
        )
        inline = writer
        if not in_memory:
            inline = _connect(location, 0, options.durability)
            on_failure.callback(inline.close)
            inline.execute("PRAGMA wal_autocheckpoint = 0")
            if options.durability == "full":
                inline.execute("PRAGMA query_only = 1")
        on_failure.pop_all()
    return writer, inline, queries, codec


class SQLiteBackend(StorageBackend):
    """Stores records in one table per store, in an SQLite file (WAL mode) or ``":memory:"``.

    Several stores share one file, each in its table named from ``(name, unique_identifier)``;
    keys live in columns ``k1``..``k5`` plus ``key_count`` under one primary key, so prefix
    queries use the index. Values are codec bytes in ``data``. Other processes may open the same
    file: `update` is atomic across them (a compare-and-swap in an immediate transaction).
    """

    def __init__(
        self,
        *,
        queries: _Queries,
        codec: Codec,
        location: str,
        writer: sqlite3.Connection,
        inline: sqlite3.Connection,
        worker: ThreadPoolExecutor | None,
        inline_writes: bool,
    ) -> None:
        """Use `create_backend_instance`; this only assembles what it opened."""
        super().__init__(codec)
        self.location = location
        self._queries = queries
        self._writer = writer
        self._inline = inline
        self._worker = worker
        self._inline_writes = inline_writes
        # Writes handed to the worker and not finished: later writes queue behind them.
        self._worker_writes = UnfinishedJobs()
        self._commits_since_checkpoint = 0
        self._logged_since_prune = 0

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
            name, unique_identifier, codec=codec, serializer=serializer,
            deserializer=deserializer, durability=durability, lock_timeout=lock_timeout,
        )  # fmt: skip
        location = _location(path)

        def open_connections() -> tuple[sqlite3.Connection, sqlite3.Connection, _Queries, Codec]:
            return _open_connections(location, options)

        if location == ":memory:":
            writer, inline, queries, chosen = open_connections()
            return cls(
                queries=queries, codec=chosen, location=location, writer=writer, inline=inline,
                worker=None, inline_writes=True,
            )  # fmt: skip
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rapid-dev-storage-sqlite")
        try:
            writer, inline, queries, chosen = await asyncio.get_running_loop().run_in_executor(
                worker, open_connections
            )
        except BaseException:
            worker.shutdown(wait=False)
            raise
        return cls(
            queries=queries, codec=chosen, location=location, writer=writer, inline=inline,
            worker=worker, inline_writes=options.durability == "fast",
        )  # fmt: skip

    # --- bridges ----------------------------------------------------------------------------

    async def _on_worker(self, function: Callable[..., T], *args: Any, write: bool = False) -> T:
        """Run one whole operation on the worker's connection, which may wait for locks.

        A cancelled caller cancels the job only if it has not started; a started one runs to
        its end, and a ``write`` holds later inline writes back until then.
        """
        assert self._worker is not None  # only file databases have a worker

        def call() -> T:
            try:
                return function(self._writer, *args)
            except sqlite3.Error as exc:
                raise _translated(exc, self.location) from exc

        future = self._worker.submit(call)
        if write:
            self._worker_writes.add(future)
        return await asyncio.wrap_future(future)

    async def _read_op(self, function: Callable[..., T], *args: Any) -> T:
        """Run a read inline; if it meets a lock, wait for the lock on the worker instead."""
        try:
            return function(self._inline, *args)
        except sqlite3.Error as exc:
            error = _translated(exc, self.location)
            if self._worker is None or not isinstance(error, LockTimeoutError):
                raise error from exc
        return await self._on_worker(function, *args)

    async def _write_op(self, function: Callable[..., T], *args: Any, small: bool = True) -> T:
        """Run a write inline when it cannot block the loop for long, else on the worker.

        Inline means a ``small`` write (one record) at durability ``fast`` (a WAL commit without
        fsync) or in memory, with no earlier write still queued on the worker: writes of this
        backend land in the order they were made.
        """
        if (
            self._inline_writes and small and not self._worker_writes.unfinished()
        ) or self._worker is None:
            try:
                result = function(self._inline, *args)
            except sqlite3.Error as exc:
                error = _translated(exc, self.location)
                if self._worker is None or not isinstance(error, LockTimeoutError):
                    raise error from exc
            else:
                self._after_inline_commit()
                return result
        return await self._on_worker(function, *args, write=True)

    def _after_inline_commit(self) -> None:
        # The inline connection never checkpoints (that fsyncs): the worker does it, unawaited.
        self._commits_since_checkpoint += 1
        if self._worker is not None and self._commits_since_checkpoint >= CHECKPOINT_EVERY:
            self._commits_since_checkpoint = 0
            self._worker.submit(_checkpoint, self._writer)

    # --- hooks ------------------------------------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        try:  # _read_op's inline attempt, written out: this is the hottest path
            data = _read_small(self._inline, self._queries, group, keys)
        except sqlite3.Error:
            data = await self._read_op(_read_small, self._queries, group, keys)
        if data is _LARGE:
            return await self._large_read(group, keys)
        return data  # type: ignore[return-value]  # bytes or None

    async def _large_read(self, group: str, keys: Keys) -> bytes | None:
        """Read a large value off the loop (inline, in memory: there is no thread)."""
        if self._worker is None:
            return _read(self._inline, self._queries, group, keys)
        # stalls: copied out with the GIL released (see _blob_reads)
        table, record = self._queries.table, record_params(group, keys)
        return await self._on_worker(read_large_value, table, record)

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        await self._write_op(_write, self._queries, group, keys, data)

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        return await self._write_op(_swap, self._queries, group, keys, expected, new)

    async def _delete(self, group: str, keys: Keys) -> None:
        await self._write_op(_execute, self._queries.delete, record_params(group, keys))

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        sql = self._queries.delete_prefix[len(prefix)]
        await self._write_op(_execute, sql, (group, *prefix), small=False)

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        after: _Row = ("",) * MAX_KEYS + (0,)
        while True:
            self._check_open()
            rows = await self._read_op(_scan_page, self._queries, group, prefix, after)
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
        return await self._read_op(_list_groups, self._queries)

    # --- watching other writers -------------------------------------------------------------

    async def _start_watching(self) -> None:
        if self._worker is None:
            return  # an in-memory database has no other writer: our own events are all
        queries = self._queries

        def install() -> tuple[sqlite3.Connection, int]:
            with _transaction(self._writer):
                for statement in queries.log_ddl:
                    self._writer.execute(statement)
            poller = _connect(self.location, 0, "fast")
            poller.execute("PRAGMA query_only = 1")
            return poller, poller.execute(queries.log_last).fetchone()[0]

        poller, last_seq = await self._on_worker(lambda _connection: install())
        # The poller's own thread reads and decodes the log's records, a batch per hop, so a
        # backlog of 100,000 rows never holds the loop (measured before: 1.8 s without a turn).
        reader = ThreadPoolExecutor(1, thread_name_prefix="rapid-dev-storage-sqlite-watch")
        self._watching = (poller, reader)
        self._poll_task = asyncio.ensure_future(self._poll(poller, reader, last_seq))

    async def _stop_watching(self) -> None:
        task = getattr(self, "_poll_task", None)
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        poller, reader = self._watching
        # Closed on its thread, after a batch the cancelled task left running there.
        await asyncio.get_running_loop().run_in_executor(reader, poller.close)
        reader.shutdown(wait=False)
        del self._poll_task, self._watching

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
                    hub = self._active_hub()
                    mark = 0 if hub is None else hub.mark()
                    read = functools.partial(self._read_log, poller, last_seq, again)
                    last_seq, found, logged = await loop.run_in_executor(reader, read)
                    again = await self._offer(found, mark)
                    self._prune_log(logged, last_seq)
                    more = logged == LOG_BATCH
            except sqlite3.Error as exc:
                if not (isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)):
                    logger.warning("reading the change log failed: %s", exc)
                version = None  # look again at the next tick

    def _read_log(
        self, poller: sqlite3.Connection, last_seq: int, again: list[tuple[str, Keys]]
    ) -> tuple[int, list[tuple[str, Keys, bytes | None, Any]], int]:
        """On the poller's thread: the next log batch's records, read and decoded.

        Return (the last sequence number read, (group, keys, digest, value) per record, log
        rows read). One read per record however often it changed: the latest value counts.
        """
        rows = poller.execute(self._queries.log_since, (last_seq,)).fetchall()
        if rows:
            last_seq = rows[-1][0]
        found: list[tuple[str, Keys, bytes | None, Any]] = []
        for group, keys in dict.fromkeys([*again, *((row[1], keys_of(row[2:])) for row in rows)]):
            data = _read(poller, self._queries, group, keys)
            if data is None:
                found.append((group, keys, None, NoValue))
                continue
            try:
                value = self._value_of(group, keys, data)
            except Exception:  # a corrupt record is reported by reads; the hub warns
                value = UNDECODABLE
            found.append((group, keys, digest_of(data), value))
        return last_seq, found, len(rows)

    async def _offer(
        self, found: list[tuple[str, Keys, bytes | None, Any]], mark: int
    ) -> list[tuple[str, Keys]]:
        """Publish what `_read_log` found, a turn for other tasks every millisecond."""
        hub = self._active_hub()
        again: list[tuple[str, Keys]] = []
        pause = Yielder()
        for group, keys, digest, value in found:
            await pause()
            if hub is not None and not hub.offer(group, keys, digest, value, mark):
                again.append((group, keys))
        return again

    def _prune_log(self, logged: int, last_seq: int) -> None:
        self._logged_since_prune += logged
        if self._logged_since_prune >= LOG_BATCH and self._worker is not None:
            self._logged_since_prune = 0
            self._worker.submit(_prune, self._writer, self._queries, last_seq - LOG_KEEP)

    async def _close(self) -> None:
        def close_connections() -> None:
            self._inline.close()
            self._writer.close()

        if self._worker is None:
            close_connections()
            return
        await asyncio.get_running_loop().run_in_executor(self._worker, close_connections)
        self._worker.shutdown(wait=True)

    def __repr__(self) -> str:
        return (
            f"SQLiteBackend({self.location!r}, table={self._queries.table!r}, "
            f"codec={self.codec.name!r})"
        )
