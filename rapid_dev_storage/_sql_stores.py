"""The stores registry both SQL backends keep, and what opening a store decides from it.

A database holds any number of stores, a table each. One more table, ``rapid_dev_storage_stores``,
names them: a row per ``(name, unique_identifier)`` with its table, codec and format version.
Opening a store reads its row: none, and the store is made with the codec asked for (msgpack by
default); one, and the codec and version it records must be ones this version reads. Each backend
runs the statements its own way (SQLite in one transaction on its worker, PostgreSQL under an
advisory lock); what they say and what a row means is written here, once.
"""

from __future__ import annotations

import dataclasses

from ._codecs import Codec, codec_by_name, codec_for_existing_store
from ._sql import Placeholder

STORES_TABLE = "rapid_dev_storage_stores"
STORES_LIST = f"SELECT name, unique_identifier FROM {STORES_TABLE} ORDER BY 1, 2"
"""Every store in a database, for the command line."""

_COLUMNS = {
    "name": "TEXT NOT NULL",
    "unique_identifier": "TEXT NOT NULL",
    "table_name": "TEXT NOT NULL UNIQUE",
    "codec": "TEXT NOT NULL",
    "format_version": "INTEGER NOT NULL",
}


class StoresStatements:
    """The registry's statements in one backend's dialect, with any columns of its own.

    ``select`` returns ``codec, format_version, table_name`` and then the backend's own columns;
    ``insert`` takes every column, in the order of ``_COLUMNS`` and then the backend's own.
    """

    def __init__(
        self,
        placeholder: Placeholder,
        own_columns: dict[str, str] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> None:
        columns = {**_COLUMNS, **(own_columns or {})}
        definitions = ", ".join(f"{column} {kind}" for column, kind in columns.items())
        create = "CREATE TABLE IF NOT EXISTS" if if_not_exists else "CREATE TABLE"
        self.create = (
            f"{create} {STORES_TABLE} ({definitions}, PRIMARY KEY (name, unique_identifier))"
        )
        selected = ", ".join(("codec", "format_version", "table_name", *(own_columns or {})))
        self.select = (
            f"SELECT {selected} FROM {STORES_TABLE} "
            f"WHERE name = {placeholder(1)} AND unique_identifier = {placeholder(2)}"
        )
        values = ", ".join(placeholder(position) for position in range(1, len(columns) + 1))
        self.insert = f"INSERT INTO {STORES_TABLE} ({', '.join(columns)}) VALUES ({values})"


@dataclasses.dataclass(frozen=True)
class StoreRequest:
    """A store asked for: its names, the codec asked for, and the database (for messages)."""

    name: str
    identifier: str
    codec: Codec | None
    """None: open an existing store with its own codec, make a new one with msgpack."""
    location: str

    @property
    def described(self) -> str:
        """Name the store in a message: the database, then the store's names."""
        return f"{self.location}: store ({self.name!r}, {self.identifier!r})"

    def new_codec(self) -> Codec:
        """Return the codec of a store made now: the one asked for, else msgpack."""
        return self.codec if self.codec is not None else codec_by_name("msgpack")

    def existing_codec(self, stored_codec: object, version: object, readable: int) -> Codec:
        """Return the codec to open a store whose row records ``stored_codec`` and ``version``.

        Raises:
            IncompatibleStoreError: a newer format than ``readable``, another codec than the
                one asked for, or a row that was damaged.

        """
        return codec_for_existing_store(self.described, stored_codec, version, readable, self.codec)
