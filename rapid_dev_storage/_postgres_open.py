"""Opening a PostgresBackend store: create it, or check and upgrade it, and learn what we may do.

Opening an existing, up-to-date store runs no DDL and takes no lock, so a role that may only read
can open it. Creating or upgrading runs under one advisory lock, and each shared object (the
bookkeeping tables, the trigger functions) is created only when missing and never replaced: a
role that did not create them never needs to own them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._codecs import Codec, codec_by_name, codec_for_existing_store
from ._postgres_sql import (
    CREATION_LOCK,
    CURRENT_SCHEMA,
    FORMAT_VERSION,
    FUNCTION_CREATED,
    LISTENERS_DDL,
    LISTENERS_TABLE,
    PRIVILEGES,
    RELATION_EXISTS,
    STORES_DDL,
    STORES_EXISTS,
    STORES_INSERT,
    STORES_LIST,
    STORES_SELECT,
    STORES_TABLE,
    TABLE_CREATED,
    TRIGGER_EXISTS,
    Queries,
    channel_name,
    functions_ddl,
    redact,
    table_name,
    truncate_trigger,
)
from ._sql import quote_identifier
from .errors import StorageIOError

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)


@dataclass
class OpenedStore:
    """What opening a store found: its statements, codec, and whether this role may write."""

    queries: Queries
    codec: Codec
    role: str = ""
    writable: bool = False
    upgraded: bool = True
    """False: made by an older version, which this role may not upgrade; it can only read."""


async def open_store(
    connection: asyncpg.Connection,
    name: str,
    identifier: str,
    requested: Codec | None,
    location: str,
) -> OpenedStore:
    """Open the store ``(name, identifier)``: create it if missing, upgrade it if older."""
    import asyncpg  # noqa: PLC0415 - the optional extra

    opened = None
    if await connection.fetchval(STORES_EXISTS):
        row = await connection.fetchrow(STORES_SELECT, name, identifier)
        if row is not None and await _current(connection, row["table_name"]):
            opened = _existing(row, name, identifier, requested, location)
    if opened is None:
        try:
            async with connection.transaction():
                opened = await _create_or_upgrade(connection, name, identifier, requested,
                                                  location)  # fmt: skip
        except asyncpg.InsufficientPrivilegeError as exc:
            role = await connection.fetchval("SELECT current_user")
            schema = await connection.fetchval(CURRENT_SCHEMA)
            raise StorageIOError(
                f"{location}: role {role!r} may not create store ({name!r}, {identifier!r}) in "
                f"schema {schema!r} ({exc}): have a role that may create it open it once, or "
                f"GRANT CREATE ON SCHEMA, SELECT, INSERT ON {STORES_TABLE} and SELECT, INSERT, "
                f"DELETE ON {LISTENERS_TABLE} TO {role} (README: roles sharing a schema)"
            ) from exc
    role, *rights = await connection.fetchrow(PRIVILEGES, opened.queries.quoted_table)
    opened.role = role
    opened.writable = any(rights) and opened.upgraded
    return opened


async def _current(connection: asyncpg.Connection, table: str) -> bool:
    """Whether a store's table has everything this version adds.

    Its version columns and TRUNCATE trigger are added in one transaction: the trigger stands
    for both.
    """
    quoted = quote_identifier(table)
    if not await connection.fetchval(RELATION_EXISTS, quoted):
        return False
    return bool(await connection.fetchval(TRIGGER_EXISTS, quoted, truncate_trigger(table)))


def _existing(
    row: asyncpg.Record, name: str, identifier: str, requested: Codec | None, location: str
) -> OpenedStore:
    stored_codec, version, table, channel = row
    where = f"{location}: store ({name!r}, {identifier!r})"
    codec = codec_for_existing_store(where, stored_codec, version, FORMAT_VERSION, requested)
    queries = Queries(table, jsonb=stored_codec == "json", channel=channel)
    return OpenedStore(queries, codec)


async def _create_or_upgrade(
    connection: asyncpg.Connection,
    name: str,
    identifier: str,
    requested: Codec | None,
    location: str,
) -> OpenedStore:
    """Create what is missing, in one transaction under the advisory lock.

    The lock serialises creation: two processes creating the same store at once would
    otherwise race on ``CREATE TABLE``.
    """
    import asyncpg  # noqa: PLC0415

    await connection.execute(CREATION_LOCK)
    for table, ddl in ((STORES_TABLE, STORES_DDL), (LISTENERS_TABLE, LISTENERS_DDL)):
        if not await connection.fetchval(TABLE_CREATED, table):
            await connection.execute(ddl)
    schema = await connection.fetchval(CURRENT_SCHEMA)
    row = await connection.fetchrow(STORES_SELECT, name, identifier)
    if row is not None:
        opened = _existing(row, name, identifier, requested, location)
        if await _current(connection, opened.queries.table):  # upgraded while we waited
            return opened
        try:
            async with connection.transaction():  # a savepoint: a refusal keeps the rest
                await _create_functions(connection, schema)
                queries = opened.queries
                for statement in (*queries.add_version_columns, queries.create_truncate_trigger):
                    await connection.execute(statement)
        except asyncpg.InsufficientPrivilegeError as exc:
            logger.warning(
                "%s: store (%r, %r) was made by an older rapid_dev_storage "
                "and this role may not upgrade it in place (%s): it opens read-only until the "
                "table's owner opens it once",
                location, name, identifier, exc,
            )  # fmt: skip
            queries = opened.queries
            opened.queries = Queries(queries.table, queries.jsonb, queries.channel, versioned=False)
            opened.upgraded = False
        return opened
    codec = requested if requested is not None else codec_by_name("msgpack")
    table = table_name(name, identifier)
    channel = channel_name(schema, table)
    queries = Queries(table, jsonb=codec.name == "json", channel=channel)
    await _create_functions(connection, schema)
    for statement in (queries.create_table, *queries.create_triggers,
                      queries.create_truncate_trigger):  # fmt: skip
        await connection.execute(statement)
    await connection.execute(
        STORES_INSERT, name, identifier, table, codec.name, FORMAT_VERSION, channel
    )
    return OpenedStore(queries, codec)


async def _create_functions(connection: asyncpg.Connection, schema: str) -> None:
    for function, ddl in functions_ddl(schema):
        if not await connection.fetchval(FUNCTION_CREATED, function):
            await connection.execute(ddl)


async def list_stores(dsn: str) -> list[tuple[str, str]]:
    """Return the ``(name, unique_identifier)`` of every store on the server (for the CLI)."""
    import asyncpg  # noqa: PLC0415

    try:
        connection = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageIOError(f"cannot connect to {redact(dsn)}: {exc}") from exc
    try:
        if not await connection.fetchval(STORES_EXISTS):
            return []
        return [(str(n), str(u)) for n, u in await connection.fetch(STORES_LIST)]
    finally:
        await connection.close()
