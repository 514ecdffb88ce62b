"""Store locations for tools: ``file:DIR``, ``sqlite:FILE``, ``postgresql://...``, ``memory:``.

A location names where stores live; a store in it is named by ``(name, unique_identifier)``,
given or, when the location holds exactly one store, found.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3

from ._backend import StorageBackend
from ._file import FileBackend
from ._file_open import stores_in
from ._memory import MemoryBackend
from ._postgres import PostgresBackend, list_stores
from ._sql_stores import STORES_LIST
from ._sqlite import SQLiteBackend
from ._store_choice import only_store
from ._urls import merge_options, parse_url


# --- sync branch: the URL parser is _urls.parse_url, shared with open_storage ---------------
def parse_location(location: str) -> tuple[str, str]:
    """Return ``(scheme, path)`` of ``file:DIR``, ``sqlite:FILE``, a DSN or ``memory:``.

    A PostgreSQL location is its whole DSN: ``("postgresql", "postgresql://...")``. The
    options a location may carry (``?codec=json``) are `_urls.parse_url`'s.
    """
    parsed = parse_url(location)
    return parsed.scheme, parsed.path


# --- end of the sync branch's parser change ---------------------------------------------------


async def stores_at(location: str) -> list[tuple[str, str]]:
    """Return the ``(name, unique_identifier)`` of every store at ``location``."""
    scheme, path = parse_location(location)
    if scheme == "postgresql":
        return await list_stores(path)
    return await asyncio.get_running_loop().run_in_executor(None, _stores_on_disk, scheme, path)


def _stores_on_disk(scheme: str, path: str) -> list[tuple[str, str]]:
    """Read the stores of a directory or SQLite file (on a thread): a few small reads."""
    if scheme == "file":
        return stores_in(path)
    if scheme == "sqlite" and os.path.isfile(path):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [(str(n), str(u)) for n, u in connection.execute(STORES_LIST)]
        except sqlite3.OperationalError:
            return []  # no store was ever opened in this file
        finally:
            connection.close()
    return []


async def choose_store(location: str, name: str | None, identifier: str | None) -> tuple[str, str]:
    """Return the store meant: the one given, or the only one there is."""
    if name is not None and identifier is not None:
        return name, identifier
    return only_store(location, await stores_at(location), name, identifier)


async def open_location(
    location: str,
    name: str | None = None,
    identifier: str | None = None,
    *,
    create: bool = False,
    codec: str | None = None,
    sweep_orphans: bool = True,
    read_only: bool = False,
) -> StorageBackend:
    """Open the store at ``location``; ``create`` allows a new one (then both names are needed).

    ``read_only`` opens a file store without touching its directory (fsck: a broken lock
    directory must not stop it from reporting that).
    """
    scheme, path = parse_location(location)
    # sync branch: the location's own options (?codec=json), with codec as given.
    options = merge_options(parse_url(location), location, {"codec": codec})
    if scheme == "memory":
        return MemoryBackend(options.get("codec"))
    if create and name is not None and identifier is not None:
        store_name, store_id = name, identifier
    else:
        store_name, store_id = await choose_store(location, name, identifier)
    if scheme == "postgresql":
        return await PostgresBackend.create_backend_instance(path, store_name, store_id, **options)
    if scheme == "file":
        # The stricter of the command's and the location's (?read_only=1) settings.
        options["sweep_orphans"] = sweep_orphans and options.get("sweep_orphans", True)
        options["read_only"] = read_only or options.get("read_only", False)
        return await FileBackend.create_backend_instance(path, store_name, store_id, **options)
    return await SQLiteBackend.create_backend_instance(path, store_name, store_id, **options)
    # --- end of the sync branch's change ------------------------------------------------------
