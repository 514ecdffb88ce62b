"""Reading a large SQLite value on a worker thread without holding the GIL for long.

``SELECT data`` copies a value out of SQLite into a new ``bytes`` in one C call that holds the
GIL (measured for 200 MB on a busy 2-core VM: 116-320 ms, during which the event loop cannot
run, though the copy happens on another thread). SQLite's incremental blob I/O
(`sqlite3.Connection.blobopen`, Python 3.11+) reads into the ``bytes`` with the GIL released.
Python 3.10 has none: there the value is copied out a `BLOB_CHUNK` at a time with ``substr()``
(each chunk's copy holds the GIL for a few milliseconds; SQLite loads the whole value again for
each chunk, so they are large) and joined by ``bytes.join``, which releases the GIL.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3

from ._sql import qmark, quote_identifier, record_condition

BLOB_CHUNK = 32 * 1024 * 1024
"""Bytes copied out per ``substr()`` where there is no incremental blob I/O (Python 3.10)."""


@functools.lru_cache(maxsize=64)
def _statements(table: str) -> tuple[str, str]:
    quoted = quote_identifier(table)
    return (
        f"SELECT rowid FROM {quoted} WHERE {record_condition(qmark)}",
        # A value another program stored as TEXT is cut by bytes too.
        f"SELECT substr(CAST(data AS BLOB), ?, ?) FROM {quoted} WHERE rowid = ?",
    )


def read_large_value(
    connection: sqlite3.Connection, table: str, record: tuple[object, ...], *, chunked: bool = False
) -> bytes | None:
    """Return the ``data`` of the record of ``table`` whose key columns are ``record``, or None.

    ``record`` holds the values `rapid_dev_storage._sql.record_params` gives. The row is found
    and read in one read transaction (or in the caller's), so a writer replacing it meanwhile
    (a new rowid) cannot be half-seen. ``chunked`` reads as Python 3.10 must (for tests).
    """
    if connection.in_transaction:
        return _read_row(connection, table, record, chunked)
    connection.execute("BEGIN")
    try:
        return _read_row(connection, table, record, chunked)
    finally:
        with contextlib.suppress(sqlite3.Error):  # a read: ending it cannot lose anything
            connection.execute("ROLLBACK")


def _read_row(
    connection: sqlite3.Connection, table: str, record: tuple[object, ...], chunked: bool
) -> bytes | None:
    find, piece = _statements(table)
    row = connection.execute(find, record).fetchone()
    if row is None:
        return None
    (rowid,) = row
    if hasattr(connection, "blobopen") and not chunked:
        with connection.blobopen(table, "data", rowid, readonly=True) as blob:
            return blob.read()  # type: ignore[no-any-return]  # a blob reads bytes
    chunks: list[bytes] = []
    while not chunks or len(chunks[-1]) == BLOB_CHUNK:
        start = 1 + BLOB_CHUNK * len(chunks)  # substr counts from 1
        chunk = connection.execute(piece, (start, BLOB_CHUNK, rowid)).fetchone()[0]
        chunks.append(chunk or b"")  # substr() of an empty value is NULL
    return b"".join(chunks)  # large: the join releases the GIL
