"""The SQL shape both SQL backends share: a record's key columns and the statements on them.

A record is a row of ``group_name``, ``k1``..``k5`` (unused slots hold ``''``) and
``key_count``, under one primary key in that order, so a prefix of keys is a prefix of the index.
SQLite writes parameters as ``?``, PostgreSQL as ``$1``; a `Placeholder` says which.
"""

from __future__ import annotations

from typing import Any, Callable

from ._types import Keys
from ._validate import MAX_KEYS

KEY_COLUMNS = tuple(f"k{i}" for i in range(1, MAX_KEYS + 1))
RECORD_COLUMNS = ("group_name", *KEY_COLUMNS, "key_count")
ORDER = ", ".join((*KEY_COLUMNS, "key_count"))
"""The primary key after ``group_name``: the order records of a group are read in."""

Placeholder = Callable[[int], str]
"""Return the SQL for the parameter at a 1-based position."""


def qmark(position: int) -> str:
    """SQLite's placeholder: every parameter is ``?``."""
    return "?"


def numbered(position: int) -> str:
    """PostgreSQL's placeholder: ``$1``, ``$2``..."""
    return f"${position}"


def quote_identifier(name: str) -> str:
    """Quote ``name`` as an SQL identifier: the one piece of text ever formatted into our SQL."""
    return '"' + name.replace('"', '""') + '"'


_PADDING = [("",) * (MAX_KEYS - count) + (count,) for count in range(MAX_KEYS + 1)]


def record_params(group: str, keys: Keys) -> tuple[Any, ...]:
    """Return a record's column values: the group, its keys padded with ``''``, their count."""
    return (group, *keys, *_PADDING[len(keys)])


def keys_of(row: Any) -> Keys:
    """Return the keys of a row that starts with ``k1``..``k5, key_count``."""
    keys: Keys = tuple(row[: row[MAX_KEYS]])
    return keys


def record_condition(placeholder: Placeholder) -> str:
    """WHERE clause for one record, its parameters in `record_params` order."""
    return " AND ".join(
        f"{column} = {placeholder(position)}" for position, column in enumerate(RECORD_COLUMNS, 1)
    )


def prefix_condition(width: int, placeholder: Placeholder) -> str:
    """WHERE clause for the records of a group whose first ``width`` keys are given."""
    clauses = [
        f"{column} = {placeholder(position)}"
        for position, column in enumerate(RECORD_COLUMNS[: width + 1], 1)
    ]
    if width > 1:
        # Unused key slots hold '', so ('a',) and ('a', '') differ only in key_count.
        clauses.append(f"key_count >= {width}")
    return " AND ".join(clauses)


def delete_prefix_statements(table: str, placeholder: Placeholder) -> list[str]:
    """Return, for each prefix width 0..5, the statement clearing that prefix of a group."""
    return [
        f"DELETE FROM {table} WHERE {prefix_condition(width, placeholder)}"
        for width in range(MAX_KEYS + 1)
    ]


def scan_page_statements(table: str, value: str, placeholder: Placeholder, limit: str) -> list[str]:
    """Return, for each prefix width, a query for the next page of a group's records.

    Keyset pagination: each page is a complete statement, so nothing stays open between pages
    (a read transaction would pin an old snapshot for every other reader). The range is on the
    columns after the prefix only, so the index seeks the prefix, then the page. Parameters:
    the group and the prefix, then the last row's remaining key columns and ``key_count``.
    """
    statements = []
    for width in range(MAX_KEYS + 1):
        tail = ", ".join((*KEY_COLUMNS[width:], "key_count"))
        after = ", ".join(placeholder(width + 2 + i) for i in range(MAX_KEYS + 1 - width))
        statements.append(
            f"SELECT {ORDER}, {value} FROM {table} WHERE {prefix_condition(width, placeholder)} "
            f"AND ({tail}) > ({after}) ORDER BY {tail} LIMIT {limit}"
        )
    return statements


def groups_statement(table: str) -> str:
    """Return the names of a table's groups by a skip scan: one index probe per group."""
    return (
        f"WITH RECURSIVE g(name) AS (SELECT MIN(group_name) FROM {table} UNION ALL "
        f"SELECT (SELECT MIN(group_name) FROM {table} WHERE group_name > g.name) FROM g "
        "WHERE g.name IS NOT NULL) SELECT name FROM g WHERE name IS NOT NULL"
    )
