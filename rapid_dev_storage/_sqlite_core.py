"""SQLiteBackend's synchronous core: plain functions on an `sqlite3` connection.

Each function is one whole operation (a read, a write, a compare-and-swap in its transaction,
opening a store); `_sqlite_bridge` decides which thread runs it. sqlite3's errors become ours
here (`translated`), the same wherever the operation ran.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Sequence

from ._codecs import Codec
from ._settings import Durability, StoreOptions
from ._sql import record_params
from ._sql_errors import statement_error
from ._sql_stores import StoreRequest
from ._sqlite_sql import FORMAT_VERSION, STORES, Queries, table_name
from ._types import Keys
from .errors import LockTimeoutError, StorageIOError

PAGE_SIZE = 256
"""Rows per query while iterating: large enough to amortise a query, small enough to stay flat."""
MEMORY = ":memory:"

Row = Sequence[Any]
LARGE = object()
"""What an inline read returns for a value over `LARGE_RECORD`: read it on the worker."""
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # result codes; sqlite3 names them only from Python 3.11


def location_of(path: Path | str) -> str:
    """Return ``":memory:"`` or the absolute path, which names the store in messages."""
    return MEMORY if str(path) == MEMORY else os.path.abspath(path)


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection held the lock (past this connection's timeout)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code: int | None = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is None:
        return "locked" in str(exc)
    return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def translated(
    exc: sqlite3.Error, location: str, lock_timeout: float | None = None
) -> StorageIOError | LockTimeoutError:
    """Return our error for one of sqlite3's; raise it ``from`` the original."""
    held_lock = "the database lock" if is_busy(exc) else None
    return statement_error(location, exc, held_lock=held_lock, timeout=lock_timeout)


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


# --- operations: each is one hop to whichever thread runs it -----------------------------------


def read(connection: sqlite3.Connection, queries: Queries, group: str, keys: Keys) -> bytes | None:
    """Return a record's bytes, or None."""
    rows = connection.execute(queries.select, record_params(group, keys)).fetchall()
    return rows[0][0] if rows else None  # a BLOB comes back as bytes


def read_small(
    connection: sqlite3.Connection | sqlite3.Cursor, queries: Queries, group: str, keys: Keys
) -> bytes | object | None:
    """`read` for inline use: `LARGE` (having copied nothing) for a large value.

    ``connection`` may be a cursor of one, reused (its rows are all fetched here).
    """
    rows = connection.execute(queries.select_small_of[len(keys)], (group, *keys)).fetchall()
    if not rows:
        return None
    data, size = rows[0]
    return LARGE if data is None and size is not None else data


def write(
    connection: sqlite3.Connection, queries: Queries, group: str, keys: Keys, data: bytes
) -> None:
    """Store a record's bytes."""
    connection.execute(queries.upsert_of[len(keys)], (group, *keys, data))


def swap(
    connection: sqlite3.Connection,
    queries: Queries,
    group: str,
    keys: Keys,
    expected: bytes | None,
    new: bytes | None,
) -> bool:
    """Write ``new`` (None: delete) if the record holds ``expected``, in one transaction."""
    with _transaction(connection):
        if read(connection, queries, group, keys) != expected:
            return False
        if new is None:
            connection.execute(queries.delete, record_params(group, keys))
        else:
            write(connection, queries, group, keys, new)
    return True


def execute(connection: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    """Run one statement that returns nothing (a delete)."""
    connection.execute(sql, params)


def scan_page(
    connection: sqlite3.Connection, queries: Queries, group: str, prefix: Keys, after: Row
) -> list[Row]:
    """Return the next `PAGE_SIZE` records under ``prefix`` after the key columns ``after``."""
    params = (group, *prefix, *after[len(prefix) :], PAGE_SIZE)
    return connection.execute(queries.scan_page[len(prefix)], params).fetchall()


def list_groups(connection: sqlite3.Connection, queries: Queries) -> list[str]:
    """Return the names of the store's groups."""
    return [name for (name,) in connection.execute(queries.groups).fetchall()]


def checkpoint(connection: sqlite3.Connection) -> None:
    """Copy the WAL into the database (it fsyncs: only the worker runs it)."""
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")


def install_change_log(connection: sqlite3.Connection, queries: Queries) -> None:
    """Create the change log and the triggers that fill it, if missing."""
    with _transaction(connection):
        for statement in queries.log_ddl:
            connection.execute(statement)


def prune_change_log(connection: sqlite3.Connection, queries: Queries, up_to: int) -> None:
    """Forget the change log up to sequence number ``up_to``; another process may do it first."""
    with contextlib.suppress(sqlite3.Error):  # another process prunes too, or holds the lock
        connection.execute(queries.log_prune, (up_to,))


# --- opening ---------------------------------------------------------------------------------

BUSY_TIMEOUT_MAX = (2**31 - 1) / 1000
"""The longest lock wait SQLite can be told, in seconds (its busy timeout is int milliseconds)."""


def connect(path: str, lock_timeout: float, durability: Durability) -> sqlite3.Connection:
    """Open a connection in autocommit mode, usable from any thread (one at a time)."""
    # SQLite keeps the busy timeout in int milliseconds: above 2**31 - 1 (24.8 days, or inf)
    # it became 0, "do not wait at all". That long is as good as forever.
    timeout = min(lock_timeout, BUSY_TIMEOUT_MAX)
    connection = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    connection.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
    return connection


def _open_store(connection: sqlite3.Connection, request: StoreRequest) -> tuple[Queries, Codec]:
    """Create or check the store's table and its row in the stores table, in one transaction."""
    if request.location != MEMORY:
        # WAL lets readers proceed while a writer commits; it is a property of the file.
        connection.execute("PRAGMA journal_mode = WAL")
    table = table_name(request.name, request.identifier)
    queries = Queries(table)
    with _transaction(connection):
        connection.execute(STORES.create)
        row = connection.execute(STORES.select, (request.name, request.identifier)).fetchone()
        if row is None:
            codec = request.new_codec()
            connection.execute(
                STORES.insert,
                (request.name, request.identifier, table, codec.name, FORMAT_VERSION),
            )
            connection.execute(queries.create)
            return queries, codec
    stored_codec, version, _ = row
    return queries, request.existing_codec(stored_codec, version, FORMAT_VERSION)


def open_connections(
    location: str, options: StoreOptions
) -> tuple[sqlite3.Connection, sqlite3.Connection, Queries, Codec]:
    """Open the worker's connection, the inline one and the store; close what opened on failure.

    The inline connection never waits for a lock (timeout 0): if it meets one, the operation
    moves to the worker instead of stalling the event loop. It writes only at durability
    ``fast``, and leaves WAL checkpoints (which fsync) to the worker. In memory both are one
    connection: a second would open a second, empty database.
    """
    in_memory = location == MEMORY
    request = StoreRequest(options.name, options.identifier, options.codec, location)
    with contextlib.ExitStack() as on_failure:
        try:
            if not in_memory:
                Path(location).parent.mkdir(parents=True, exist_ok=True)
            writer = connect(location, options.lock_timeout, options.durability)
            on_failure.callback(writer.close)
            queries, codec = _open_store(writer, request)
            inline = writer
            if not in_memory:
                inline = connect(location, 0, options.durability)
                on_failure.callback(inline.close)
                inline.execute("PRAGMA wal_autocheckpoint = 0")
                if options.durability == "full":
                    inline.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            raise translated(exc, location, options.lock_timeout) from exc
        on_failure.pop_all()
    return writer, inline, queries, codec
