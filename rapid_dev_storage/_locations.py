"""Store locations for tools: ``file:DIR``, ``sqlite:FILE``, ``postgresql://...``, ``memory:``.

A location names where stores live; a store in it is named by ``(name, unique_identifier)``,
given or, when the location holds exactly one store, found. ``file:DIR`` may also be a store's
own directory (``file:data/my%20app~1``, or a copy beside it under any name). Opening never
creates a store unless asked to (``create=True``, with both names): a typo in a name must say
"no such store" and list those there are, not make an empty one.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, NamedTuple

from ._codecs import Codec, codec_by_name
from ._file_io import read_regular_file
from ._file_layout import MARKER, marker_names
from ._threads import on_own_thread
from ._urls import ParsedURL, merge_options, parse_url
from .errors import LocationError, StoreNotFoundError

if TYPE_CHECKING:
    from ._backend import StorageBackend

# Each backend (and sqlite3, PostgreSQL's modules) loads only when a location names it: the
# command line's start-up time is measured (tools/bench_startup.py).

SCHEMES = ("file", "sqlite", "memory")
NEW_STORE_CODEC = "json"
"""The codec of a store a tool creates when none is asked for: people read and diff its files."""


class FoundStore(NamedTuple):
    """A store at a location: its names and, for a file store, its own directory.

    A NamedTuple, as `_urls.ParsedURL` is: cheap to define at every start of the command line.
    """

    name: str
    identifier: str
    directory: str | None = None

    def __str__(self) -> str:
        where = f" in {self.directory}" if self.directory is not None else ""
        return f"--name {self.name!r} --id {self.identifier!r}{where}"


# --- sync branch: the URL parser is _urls.parse_url, shared with open_storage ---------------
def parse_location(location: str) -> tuple[str, str]:
    """Return ``(scheme, path)`` of ``file:DIR``, ``sqlite:FILE``, a DSN or ``memory:``.

    A PostgreSQL location is its whole DSN: ``("postgresql", "postgresql://...")``. The
    options a location may carry (``?codec=json``) are `_urls.parse_url`'s.
    """
    parsed = parse_url(location)
    return parsed.scheme, parsed.path


# --- end of the sync branch's parser change ---------------------------------------------------


async def found_stores(location: str) -> list[FoundStore]:
    """Return every store at ``location`` (reading only: nothing is created)."""
    scheme, path = parse_location(location)
    if scheme == "postgresql":
        from ._postgres import list_stores  # noqa: PLC0415

        return [FoundStore(name, identifier) for name, identifier in await list_stores(path)]
    return await on_own_thread(_stores_on_disk, scheme, path)  # no thread left in the loop's


async def stores_at(location: str) -> list[tuple[str, str]]:
    """Return the ``(name, unique_identifier)`` of every store at ``location``."""
    return [(store.name, store.identifier) for store in await found_stores(location)]


def _stores_on_disk(scheme: str, path: str) -> list[FoundStore]:
    """Read the stores of a directory or SQLite file (on a thread): a few small reads."""
    if scheme == "file":
        own = _marked_store(path)
        if own is not None:  # the store's own directory
            return [own]
        if not os.path.isdir(path):
            return []
        found = (_marked_store(os.path.join(path, entry)) for entry in sorted(os.listdir(path)))
        return [store for store in found if store is not None]
    if scheme == "sqlite" and os.path.isfile(path):
        import sqlite3  # noqa: PLC0415

        from ._sql_stores import STORES_LIST  # noqa: PLC0415

        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [FoundStore(str(n), str(u)) for n, u in connection.execute(STORES_LIST)]
        except sqlite3.OperationalError:
            return []  # no store was ever opened in this file
        finally:
            connection.close()
    return []


def _marked_store(directory: str) -> FoundStore | None:
    """Return the store whose marker ``directory`` holds, if it holds a readable one."""
    try:
        data = read_regular_file(os.path.join(directory, MARKER))
    except OSError:
        return None
    names = marker_names(data) if data is not None else None
    if names is None:
        return None
    return FoundStore(names[0], names[1], os.path.abspath(directory))


async def find_store(location: str, name: str | None, identifier: str | None) -> FoundStore:
    """Return the store meant: the one with the names given, or the only one there is.

    Raises:
        StoreNotFoundError: none matches (the message lists the stores there are).
        LocationError: several match (the message lists them and says how to choose).

    """
    stores = await found_stores(location)
    matching = [
        store
        for store in stores
        if (name is None or store.name == name)
        and (identifier is None or store.identifier == identifier)
    ]
    if len(matching) == 1:
        return matching[0]
    if not matching:
        raise StoreNotFoundError(
            _not_found(location, name, identifier, stores),
            location=location,
            stores=[(store.name, store.identifier) for store in stores],
        )
    listed = "; ".join(map(str, matching))
    if len({(store.name, store.identifier) for store in matching}) < len(matching):
        advice = f"a copy is addressed by its own directory (file:{matching[0].directory})"
    else:
        advice = "say which with --name and --id"
    raise LocationError(
        f"{location} holds {len(matching)} matching stores ({listed}): {advice}",
        location=location,
    )


def _not_found(
    location: str, name: str | None, identifier: str | None, stores: list[FoundStore]
) -> str:
    wanted = " ".join(
        f"{option} {value!r}" for option, value in (("--name", name), ("--id", identifier)) if value
    )
    head = f"no store {wanted} at {location}" if wanted else f"no store at {location}"
    if stores:
        return f"{head}; it holds: " + "; ".join(map(str, stores))
    scheme, path = parse_location(location)
    if scheme != "postgresql" and not os.path.exists(path):
        return f"{head}: {path} does not exist"
    return f"{head}: it holds no stores"


async def codec_if_created(
    location: str, name: str | None, identifier: str | None, codec: str | None
) -> Codec | None:
    """Return the codec a store opened with ``create`` would be made with, or None if it exists.

    A writing tool checks its input against it first, so a refusal makes no store either.
    """
    if parse_location(location)[0] == "memory":
        return None
    try:
        await find_store(location, name, identifier)
    except StoreNotFoundError:
        return codec_by_name(codec or NEW_STORE_CODEC)
    return None


async def choose_store(location: str, name: str | None, identifier: str | None) -> tuple[str, str]:
    """Return the names of the store meant (see `find_store`)."""
    store = await find_store(location, name, identifier)
    return store.name, store.identifier


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
    """Open the store at ``location``; only ``create`` makes a new one (then both names are needed).

    A new store gets ``codec``, by default `NEW_STORE_CODEC`; an existing one opens with its own
    (a ``codec`` that differs is refused). ``read_only`` opens a file store without touching its
    directory (fsck: a broken lock directory must not stop it from reporting that).

    Raises:
        StoreNotFoundError: no such store, and ``create`` is false.
        LocationError: the location does not parse, does not say which store it means, or
            ``create`` lacks a name or identifier for the new store.

    """
    parsed = parse_url(location)
    scheme, path = parsed.scheme, parsed.path
    # sync branch: the location's own options (?codec=json), with codec as given.
    options = merge_options(parsed, location, {"codec": codec})
    if scheme == "memory":
        if not create:  # a command's memory store is new and empty, and gone when it ends
            raise StoreNotFoundError(
                f"{location} holds no store: a memory store lives only as long as its process, "
                "so each command's starts empty and its writes go nowhere; name a file:, "
                "sqlite: or postgresql:// store (copy's --create takes memory: as a dry run)",
                location=location,
            )
        from ._memory import MemoryBackend  # noqa: PLC0415  (named by a URL: start-up time)

        return MemoryBackend(options.get("codec"))
    try:
        store = await find_store(location, name, identifier)
    except StoreNotFoundError as exc:
        if not create:
            raise
        if name is None or identifier is None:  # a usage error: nothing can be created
            raise LocationError(
                f"{exc}; --create makes a new store, named by both --name and --id",
                location=location,
            ) from None
        return await _create(parsed, location, name, identifier, options)
    if scheme == "file":
        # The stricter of the command's and the location's (?read_only=1) settings.
        options["sweep_orphans"] = sweep_orphans and options.get("sweep_orphans", True)
        options["read_only"] = read_only or options.get("read_only", False)
        options["own_directory"] = store.directory is not None
        path = store.directory or path
    return await parsed.backend.create_backend_instance(
        path, store.name, store.identifier, **options
    )


async def _create(
    parsed: ParsedURL, location: str, name: str, identifier: str, options: dict[str, Any]
) -> StorageBackend:
    """Create the store ``(name, identifier)`` at ``location``, with the location's options."""
    options = {**options, "codec": options.get("codec") or NEW_STORE_CODEC}
    path = parsed.path
    if parsed.scheme == "file" and await asyncio.to_thread(
        os.path.lexists, os.path.join(path, MARKER)
    ):
        raise LocationError(
            f"{path} is a store's own directory: a new store goes in the directory that holds "
            "stores (its parent)",
            location=location,
        )
    return await parsed.backend.create_backend_instance(path, name, identifier, **options)
