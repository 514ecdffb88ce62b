"""SQLiteBackend's SQL text: a store's table name and every statement on it, built once.

Nothing here touches a database. The only text ever formatted into SQL is quoted identifiers
(a store's table and the names derived from it) and our own constants (an unused key slot's
``''``, a number of keys); values travel as parameters.
"""

from __future__ import annotations

from ._slices import LARGE_RECORD
from ._sql import (
    KEY_COLUMNS,
    ORDER,
    RECORD_COLUMNS,
    delete_prefix_statements,
    groups_statement,
    qmark,
    quote_identifier,
    record_condition,
    scan_page_statements,
)
from ._sql_stores import StoresStatements
from ._validate import MAX_KEYS

FORMAT_VERSION = 1
STORES = StoresStatements(qmark, if_not_exists=True)
LOG_BATCH = 1000
"""Change-log rows a watcher reads per query."""


def table_name(name: str, unique_identifier: str) -> str:
    """Return the table of a store: readable, and distinct for distinct name pairs."""

    def escape(text: str) -> str:
        return text.replace("%", "%25").replace(":", "%3A")

    return f"rds:{escape(name)}:{escape(unique_identifier)}"


def _row_values(row: str) -> str:
    """Return ``NEW.group_name, NEW.k1, ...``: a trigger's copy of a record's key columns."""
    return ", ".join(f"{row}.{column}" for column in RECORD_COLUMNS)


_COUNTS = range(1, MAX_KEYS + 1)


def _known(count: int) -> str:
    """Return the condition of one record of ``count`` keys: group and keys as parameters."""
    keys = [f"{column} = ?" for column in KEY_COLUMNS[:count]]
    unused = [f"{column} = ''" for column in KEY_COLUMNS[count:]]
    return " AND ".join(["group_name = ?", *keys, *unused, f"key_count = {count}"])


def _values(count: int) -> str:
    """Return the column values of a record of ``count`` keys: group and keys as parameters."""
    return ", ".join(["?", *["?"] * count, *["''"] * (MAX_KEYS - count), str(count)])


class Queries:
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
        # One statement for each number of keys (index: the count), the unused key slots and the
        # count written in: a get or set binds its group, keys (and bytes) only, 0.4-0.6 us
        # less a get here than binding all seven.
        self.select_small_of = (
            "",
            *(f"SELECT {small} FROM {t} WHERE {_known(n)}" for n in _COUNTS),
        )
        self.upsert_of = (
            "",
            *(
                f"INSERT OR REPLACE INTO {t} ({columns}, data) VALUES ({_values(n)}, ?)"
                for n in _COUNTS
            ),
        )
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
