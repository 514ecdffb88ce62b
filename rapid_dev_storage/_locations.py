"""Store locations for tools: ``file:DIR``, ``sqlite:FILE``, ``postgresql://...``, ``memory:``.

A location names where stores live; a store in it is named by ``(name, unique_identifier)``,
given or, when the location holds exactly one store, found.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from ._backend import StorageBackend
from ._file import MARKER, FileBackend
from ._memory import MemoryBackend
from ._postgres import DSN_PREFIXES, PostgresBackend, list_stores
from ._sqlite import STORES_TABLE, SQLiteBackend

SCHEMES = ("file", "sqlite", "memory")


class LocationError(ValueError):
    """A location that does not parse, or does not say which store it means."""


def parse_location(location: str) -> tuple[str, str]:
    """Return ``(scheme, path)`` of ``file:DIR``, ``sqlite:FILE``, a DSN or ``memory:``.

    A PostgreSQL location is its whole DSN: ``("postgresql", "postgresql://...")``.
    """
    if location.startswith(DSN_PREFIXES):
        return "postgresql", location
    scheme, separator, path = location.partition(":")
    if not separator or scheme not in SCHEMES:
        raise LocationError(
            f"location {location!r} is not file:DIR, sqlite:FILE, postgresql://... or memory: "
            "(for example file:data, sqlite:app.db or postgresql://user@host/database)"
        )
    if scheme != "memory" and not path:
        raise LocationError(f"location {location!r} names no {scheme} path")
    return scheme, path


async def stores_at(location: str) -> list[tuple[str, str]]:
    """Return the ``(name, unique_identifier)`` of every store at ``location``."""
    scheme, path = parse_location(location)
    if scheme == "postgresql":
        return await list_stores(path)
    return _stores_on_disk(scheme, path)


def _stores_on_disk(scheme: str, path: str) -> list[tuple[str, str]]:
    """Read the stores of a directory or SQLite file: a few small reads, for the tools."""
    if scheme == "file":
        found = []
        if os.path.isdir(path):
            for entry in sorted(os.listdir(path)):
                marker = Path(path, entry, MARKER)
                if marker.is_file():
                    with open(marker, encoding="utf-8-sig") as file:
                        data = json.load(file)
                    found.append((str(data["name"]), str(data["unique_identifier"])))
        return found
    if scheme == "sqlite" and os.path.isfile(path):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            query = f"SELECT name, unique_identifier FROM {STORES_TABLE} ORDER BY 1, 2"
            return [(str(n), str(u)) for n, u in connection.execute(query)]
        except sqlite3.OperationalError:
            return []  # no store was ever opened in this file
        finally:
            connection.close()
    return []


async def choose_store(location: str, name: str | None, identifier: str | None) -> tuple[str, str]:
    """Return the store meant: the one given, or the only one there is."""
    if name is not None and identifier is not None:
        return name, identifier
    candidates = [
        store
        for store in await stores_at(location)
        if (name is None or store[0] == name) and (identifier is None or store[1] == identifier)
    ]
    if len(candidates) == 1:
        return candidates[0]
    listed = ", ".join(f"--name {n!r} --id {u!r}" for n, u in candidates) or "none"
    raise LocationError(
        f"{location} holds {len(candidates)} matching stores ({listed}): say which with --name "
        "and --id"
    )


async def open_location(
    location: str,
    name: str | None = None,
    identifier: str | None = None,
    *,
    create: bool = False,
    codec: str | None = None,
    sweep_orphans: bool = True,
) -> StorageBackend:
    """Open the store at ``location``; ``create`` allows a new one (then both names are needed)."""
    scheme, path = parse_location(location)
    if scheme == "memory":
        return MemoryBackend(codec)
    if create and name is not None and identifier is not None:
        store_name, store_id = name, identifier
    else:
        store_name, store_id = await choose_store(location, name, identifier)
    if scheme == "postgresql":
        return await PostgresBackend.create_backend_instance(
            path, store_name, store_id, codec=codec
        )
    if scheme == "file":
        return await FileBackend.create_backend_instance(
            path, store_name, store_id, codec=codec, sweep_orphans=sweep_orphans
        )
    return await SQLiteBackend.create_backend_instance(path, store_name, store_id, codec=codec)
