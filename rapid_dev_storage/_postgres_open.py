"""Opening a PostgresBackend store: its server settings and pool, then the store itself.

The store is created, or checked and upgraded, and opening learns what this role may do.

Opening an existing, up-to-date store runs no DDL and takes no lock, so a role that may only read
can open it. Creating or upgrading runs under one advisory lock, and each shared object (the
bookkeeping tables, the trigger functions) is created only when missing and never replaced: a
role that did not create them never needs to own them.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._codecs import Codec
from ._postgres_run import lost_connection_errors, require_asyncpg, translated
from ._postgres_sql import (
    CREATION_LOCK,
    CURRENT_SCHEMA,
    DSN_PREFIXES,
    FORMAT_VERSION,
    FUNCTION_CREATED,
    LISTENERS_DDL,
    LISTENERS_TABLE,
    PRIVILEGES,
    RELATION_EXISTS,
    STORES,
    STORES_EXISTS,
    TABLE_CREATED,
    TRIGGER_EXISTS,
    WRITER_SETTING,
    Queries,
    channel_name,
    functions_ddl,
    redact,
    table_name,
    truncate_trigger,
)
from ._settings import StoreOptions, parse_seconds, resolve
from ._sql import quote_identifier
from ._sql_stores import STORES_LIST, STORES_TABLE, StoreRequest
from .errors import LocationError, StorageError, StorageIOError

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10
RECONNECT_TIMEOUT = 30.0
"""Seconds an operation keeps retrying while the server is unreachable (a restart takes a few)."""


def parse_pool_size(text: str) -> int:
    """Accept a whole number of connections >= 1."""
    size = int(text)
    if size < 1:
        raise ValueError(f"a pool holds at least 1 connection, not {text!r}")
    return size


@dataclass(frozen=True)
class Server:
    """Where and how a backend connects, resolved once when it is created."""

    dsn: str
    location: str
    """The DSN without its password: it names the server in messages."""
    pool_size: int
    reconnect_timeout: float
    lock_timeout: float
    settings: dict[str, str]
    """Set on every connection: this backend's writer id, its durability and lock timeout."""


def resolve_server(
    path: Path | str,
    options: StoreOptions,
    *,
    pool_size: int | None,
    reconnect_timeout: float | None,
) -> Server:
    """Check the DSN and resolve the pool's settings (argument, environment, default).

    Raises:
        LocationError: ``path`` is not a DSN.
        ValueError: a pool size or timeout that is not one, naming the environment variable.

    """
    size = resolve(
        "pool_size",
        parse_pool_size(str(pool_size)) if pool_size is not None else None,
        DEFAULT_POOL_SIZE,
        parse_pool_size,
    )
    retry_for = resolve(
        "reconnect_timeout",
        parse_seconds(str(reconnect_timeout)) if reconnect_timeout is not None else None,
        RECONNECT_TIMEOUT,
        parse_seconds,
    )
    dsn = str(path) if isinstance(path, str) else ""
    if not dsn.startswith(DSN_PREFIXES):
        raise LocationError(
            f"PostgresBackend needs a DSN such as postgresql://user@host/database, not {path!r}",
            location=str(path),
        )
    settings = {
        # Copied into this backend's notifications: its watcher skips its own writes.
        WRITER_SETTING: secrets.token_hex(8),
        "synchronous_commit": "on" if options.durability == "full" else "off",
        "lock_timeout": str(max(1, round(options.lock_timeout * 1000))),  # 0 would mean forever
    }
    return Server(dsn, redact(dsn), size, retry_for, options.lock_timeout, settings)


@dataclass
class OpenedStore:
    """What opening a store found: its statements, codec, and whether this role may write."""

    queries: Queries
    codec: Codec
    role: str = ""
    writable: bool = False
    upgraded: bool = True
    """False: made by an older version, which this role may not upgrade; it can only read."""

    @property
    def read_only_reason(self) -> str:
        """Say why this role may only read the store, and what would let it write ('': it may)."""
        table = self.queries.table
        if not self.upgraded:
            return (
                f"it was made by an older rapid_dev_storage and role {self.role!r} may not "
                f"upgrade it: open it once as the owner of table {table!r}"
            )
        if not self.writable:
            return (
                f"role {self.role!r} may only read table {table!r}: GRANT INSERT, UPDATE, "
                f"DELETE ON it TO {self.role}, or write as a role that may"
            )
        return ""


async def connect_pool(server: Server, request: StoreRequest) -> tuple[asyncpg.Pool, OpenedStore]:
    """Open a pool on the server and, on its first connection, the store asked for.

    ``min_size=0``: no background task re-opens connections while the server is away; the
    connection opened here stays in the pool for the first statement.
    """
    import asyncpg  # noqa: PLC0415 - the optional extra

    async def no_reset(connection: asyncpg.Connection) -> None:
        """Skip the reset query on release: we keep no session state, so it only costs."""

    pool = asyncpg.create_pool(
        server.dsn,
        min_size=0,
        max_size=server.pool_size,
        server_settings=server.settings,
        reset=no_reset,
    )
    try:
        await pool
        async with pool.acquire() as connection:
            return pool, await open_store(connection, request)
    except BaseException as exc:
        await pool.close()
        if isinstance(exc, StorageError):  # already says what went wrong
            raise
        refused = (
            asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidCatalogNameError,
        )
        if isinstance(exc, (*lost_connection_errors(), *refused)):
            raise _cannot_connect(request.location, exc) from exc
        if isinstance(exc, asyncpg.PostgresError):
            raise translated(exc, request.location) from exc
        raise


def _cannot_connect(location: str, exc: BaseException) -> StorageIOError:
    return StorageIOError(f"cannot connect to {location}: {exc}")


async def open_store(connection: asyncpg.Connection, request: StoreRequest) -> OpenedStore:
    """Open the store asked for: create it if missing, upgrade it if older."""
    import asyncpg  # noqa: PLC0415 - the optional extra

    opened = None
    if await connection.fetchval(STORES_EXISTS):
        row = await connection.fetchrow(STORES.select, request.name, request.identifier)
        if row is not None and await _current(connection, row["table_name"]):
            opened = _existing(row, request)
    if opened is None:
        try:
            async with connection.transaction():
                opened = await _create_or_upgrade(connection, request)
        except asyncpg.InsufficientPrivilegeError as exc:
            role = await connection.fetchval("SELECT current_user")
            schema = await connection.fetchval(CURRENT_SCHEMA)
            raise StorageIOError(
                f"{request.location}: role {role!r} may not create store ({request.name!r}, "
                f"{request.identifier!r}) in schema {schema!r} ({exc}): have a role that may "
                f"create it open it once, or GRANT CREATE ON SCHEMA, SELECT, INSERT ON "
                f"{STORES_TABLE} and SELECT, INSERT, DELETE ON {LISTENERS_TABLE} TO {role} "
                "(docs/backends.md: roles sharing a schema)"
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


def _existing(row: asyncpg.Record, request: StoreRequest) -> OpenedStore:
    stored_codec, version, table, channel = row
    codec = request.existing_codec(stored_codec, version, FORMAT_VERSION)
    queries = Queries(table, jsonb=stored_codec == "json", channel=channel)
    return OpenedStore(queries, codec)


async def _create_or_upgrade(connection: asyncpg.Connection, request: StoreRequest) -> OpenedStore:
    """Create what is missing, in one transaction under the advisory lock.

    The lock serialises creation: two processes creating the same store at once would
    otherwise race on ``CREATE TABLE``.
    """
    await connection.execute(CREATION_LOCK)
    for table, ddl in ((STORES_TABLE, STORES.create), (LISTENERS_TABLE, LISTENERS_DDL)):
        if not await connection.fetchval(TABLE_CREATED, table):
            await connection.execute(ddl)
    schema = await connection.fetchval(CURRENT_SCHEMA)
    row = await connection.fetchrow(STORES.select, request.name, request.identifier)
    if row is not None:
        return await _upgrade(connection, _existing(row, request), request, schema)
    codec = request.new_codec()
    table = table_name(request.name, request.identifier)
    channel = channel_name(schema, table)
    queries = Queries(table, jsonb=codec.name == "json", channel=channel)
    await _create_functions(connection, schema)
    for statement in (queries.create_table, *queries.create_triggers):
        await connection.execute(statement)
    await connection.execute(queries.create_truncate_trigger)
    await connection.execute(
        STORES.insert, request.name, request.identifier, table, codec.name, FORMAT_VERSION, channel
    )
    return OpenedStore(queries, codec)


async def _upgrade(
    connection: asyncpg.Connection, opened: OpenedStore, request: StoreRequest, schema: str
) -> OpenedStore:
    """Bring a store of an older version up to date, or open it read-only if we may not."""
    import asyncpg  # noqa: PLC0415

    queries = opened.queries
    if await _current(connection, queries.table):  # upgraded while we waited
        return opened
    try:
        async with connection.transaction():  # a savepoint: a refusal keeps the rest
            await _create_functions(connection, schema)
            for statement in (*queries.add_version_columns, queries.create_truncate_trigger):
                await connection.execute(statement)
    except asyncpg.InsufficientPrivilegeError as exc:
        logger.warning(
            "%s: store (%r, %r) was made by an older rapid_dev_storage and this role may not "
            "upgrade it in place (%s): it opens read-only until the table's owner opens it once",
            request.location,
            request.name,
            request.identifier,
            exc,
        )
        opened.queries = Queries(queries.table, queries.jsonb, queries.channel, versioned=False)
        opened.upgraded = False
    return opened


async def _create_functions(connection: asyncpg.Connection, schema: str) -> None:
    for function, ddl in functions_ddl(schema):
        if not await connection.fetchval(FUNCTION_CREATED, function):
            await connection.execute(ddl)


async def list_stores(dsn: str) -> list[tuple[str, str]]:
    """Return the ``(name, unique_identifier)`` of every store on the server (for the CLI).

    Raises:
        UnsupportedOperationError: asyncpg (the postgres extra) is not installed.

    """
    require_asyncpg()
    import asyncpg  # noqa: PLC0415

    try:
        connection = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _cannot_connect(redact(dsn), exc) from exc
    try:
        if not await connection.fetchval(STORES_EXISTS):
            return []
        return [(str(n), str(u)) for n, u in await connection.fetch(STORES_LIST)]
    finally:
        await connection.close()
