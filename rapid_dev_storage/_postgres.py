"""`PostgresBackend`: one table per store on a PostgreSQL server, through an asyncpg pool.

asyncpg is imported when a backend is created, never when the package is: it is the optional
``postgres`` extra. Every operation is one statement on a pooled connection, so there is no
thread and no transaction held between awaits. ``update`` is a compare-and-swap in a single
``UPDATE ... WHERE value = expected`` (PostgreSQL re-checks the condition on the row it locked,
so two machines never both win), and a lost connection is retried until the server answers
again. Changes reach watchers through triggers and ``LISTEN/NOTIFY``: the trigger sends the
record's keys (a payload holds at most 8000 bytes), the watcher fetches the values.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, TypeVar

from ._backend import ScanItem, StorageBackend
from ._codecs import Codec, codec_by_name, codec_for_existing_store
from ._settings import parse_seconds, resolve, resolve_store_options
from ._sql import (
    KEY_COLUMNS,
    RECORD_COLUMNS,
    delete_prefix_statements,
    groups_statement,
    numbered,
    quote_identifier,
    record_condition,
    record_params,
    scan_page_statements,
)
from ._types import Keys
from ._validate import MAX_KEYS
from .errors import (
    InvalidKeyError,
    LockTimeoutError,
    StorageError,
    StorageIOError,
    StoreClosedError,
    UnsupportedOperationError,
)

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")
logger = logging.getLogger("rapid_dev_storage")

FORMAT_VERSION = 1
DSN_PREFIXES = ("postgresql://", "postgres://")
STORES_TABLE = "rapid_dev_storage_stores"
LISTENERS_TABLE = "rapid_dev_storage_listeners"
"""Which connections LISTEN on which channel: triggers NOTIFY only when one does, because a
NOTIFY serialises commits database-wide (measured: 64 writers, 3,300 commits/s with it, 5,800
without)."""
NOTIFY_FUNCTION = "rapid_dev_storage_notify_v1"
SEND_FUNCTION = "rapid_dev_storage_send_v1"
WRITER_SETTING = "rapid_dev_storage.writer"
"""Set on each of a backend's connections, copied into notifications: a watcher skips its own."""
MAX_KEY_BYTES = 2000
"""Group name and keys of one record, UTF-8, at most: a btree index entry holds about 2700."""
PAGE_SIZE = 500
"""Rows per query while iterating: a round trip amortised, memory flat."""
FETCH_BATCH = 500
"""Records a watcher fetches per query after notifications."""
DEFAULT_POOL_SIZE = 10
RECONNECT_TIMEOUT = 30.0
"""Seconds an operation keeps retrying while the server is unreachable (a restart takes a few)."""

FIRST_RETRY_DELAY = 0.02
"""Seconds before the first retry; doubled after each, up to half a second."""

_ESCAPE = "\uffff"
"""PostgreSQL text holds no NUL: a key's NULs are stored as U+FFFF '0' (and U+FFFF as U+FFFF '1'),
so every other key is stored as itself and reads naturally in SQL."""
_UNESCAPE = re.compile(_ESCAPE + "(.)", re.DOTALL)
# JSON that jsonb would not give back as written: a NUL escape (jsonb refuses it), -0.0 and
# floats in exponent form (numeric prints 1e+16 as an integer). A match inside a string only
# costs an unneeded exact copy.
_JSONB_INEXACT = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000|[0-9]e\+|-0\.0(?![0-9])")
_JSONB_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _escape(text: str) -> str:
    if "\x00" not in text and _ESCAPE not in text:
        return text
    return text.replace(_ESCAPE, _ESCAPE + "1").replace("\x00", _ESCAPE + "0")


def _unescape(text: str) -> str:
    if _ESCAPE not in text:
        return text
    return _UNESCAPE.sub(lambda match: "\x00" if match[1] == "0" else _ESCAPE, text)


def table_name(name: str, unique_identifier: str) -> str:
    """Return a store's table: readable in psql, within PostgreSQL's 63 bytes, distinct by hash."""
    digest = hashlib.sha256(f"{name}\x00{unique_identifier}".encode()).hexdigest()[:12]
    readable = re.sub(r"[^a-z0-9]+", "_", f"{name}_{unique_identifier}".lower()).strip("_")
    return f"rds_{readable[:40]}_{digest}"


def channel_name(schema: str, table: str) -> str:
    """Return a store's NOTIFY channel: channels are database-wide, tables only schema-wide."""
    digest = hashlib.sha256(f"{schema}\x00{table}".encode()).hexdigest()[:16]
    return f"{table[:46]}_{digest}"


def redact(dsn: str) -> str:
    """Return ``dsn`` without its password, to name the server in messages."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rpartition("@")
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _value(jsonb: bool, alias: str = "") -> str:
    """Return the expression of a record's bytes as stored: bytea, or the JSON text."""
    return f"COALESCE({alias}raw, {alias}data::text)" if jsonb else f"{alias}data"


class _Queries:
    """Every statement for one store's table, built once, here and nowhere else."""

    def __init__(self, table: str, jsonb: bool, channel: str) -> None:
        self.table = table
        t = quote_identifier(table)
        self.jsonb = jsonb
        self.channel = channel
        columns = ", ".join(RECORD_COLUMNS)
        keys = ", ".join(f'{column} text COLLATE "C" NOT NULL' for column in KEY_COLUMNS)
        if jsonb:
            # raw keeps the JSON as written when jsonb would alter it (-0.0, 1e+16, "\u0000").
            value_columns = "data jsonb, raw text, CHECK (data IS NOT NULL OR raw IS NOT NULL)"
            stored = "data, raw"
            assign = "data = $8, raw = $9"
        else:
            value_columns = "data bytea NOT NULL"
            stored = "data"
            assign = "data = $8"
        width = 9 if jsonb else 8
        value = _value(jsonb)
        self.create = [
            f'CREATE TABLE {t} (group_name text COLLATE "C" NOT NULL, {keys}, '
            f"key_count smallint NOT NULL, {value_columns}, PRIMARY KEY ({columns}))",
            f"CREATE TRIGGER {quote_identifier(table + '_notify')} AFTER INSERT OR UPDATE OR "
            f"DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION {NOTIFY_FUNCTION}('{channel}')",
        ]
        record = record_condition(numbered)
        placeholders = ", ".join(f"${i}" for i in range(1, width + 1))
        excluded = ", ".join(f"{column} = EXCLUDED.{column}" for column in stored.split(", "))
        self.select = f"SELECT {value} FROM {t} WHERE {record}"
        self.upsert = (
            f"INSERT INTO {t} ({columns}, {stored}) VALUES ({placeholders}) "
            f"ON CONFLICT ({columns}) DO UPDATE SET {excluded}"
        )
        self.insert_new = (
            f"INSERT INTO {t} ({columns}, {stored}) VALUES ({placeholders}) "
            f"ON CONFLICT ({columns}) DO NOTHING"
        )
        # One statement each: the row lock and the re-check of the WHERE clause make it a
        # compare-and-swap against every other connection.
        self.swap_update = f"UPDATE {t} SET {assign} WHERE {record} AND {value} = ${width + 1}"
        self.swap_delete = f"DELETE FROM {t} WHERE {record} AND {value} = $8"
        self.delete = f"DELETE FROM {t} WHERE {record}"
        self.delete_prefix = delete_prefix_statements(t, numbered)
        self.scan_page = scan_page_statements(t, value, numbered, limit=str(PAGE_SIZE))
        self.groups = groups_statement(t)
        wanted = ", ".join(
            f"${i}::{'smallint' if column == 'key_count' else 'text'}[]"
            for i, column in enumerate(RECORD_COLUMNS, 1)
        )
        self.fetch_many = (
            f"SELECT w.i, {_value(jsonb, 't.')} "
            f"FROM unnest({wanted}) WITH ORDINALITY AS w({columns}, i) JOIN {t} AS t ON "
            + " AND ".join(
                f"t.{column} = w.{column}" + ("" if column == "key_count" else ' COLLATE "C"')
                for column in RECORD_COLUMNS
            )
        )


def _functions_ddl(schema: str) -> list[str]:
    """Return the trigger functions, created once per schema and shared by every store's table.

    The payload is JSON with the record's keys as stored; when escaping makes it longer than
    NOTIFY's 8000 bytes, the names go base64-encoded instead (they hold at most MAX_KEY_BYTES).
    Names inside are schema-qualified: a trigger fired from a session with another search_path
    (someone editing in psql) still finds them.
    """
    s = quote_identifier(schema)
    return [
        f"""CREATE OR REPLACE FUNCTION {s}.{SEND_FUNCTION}(channel text, group_name text,
            key_count smallint, keys text[]) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            writer text := current_setting('{WRITER_SETTING}', true);
            payload text;
        BEGIN
            payload := json_build_object('writer', writer, 'group', group_name,
                                         'keys', keys[1:key_count])::text;
            IF octet_length(payload) > 7999 THEN
                payload := json_build_object('writer', writer, 'base64', true,
                    'group', encode(convert_to(group_name, 'UTF8'), 'base64'),
                    'keys', (SELECT array_agg(encode(convert_to(k, 'UTF8'), 'base64'))
                             FROM unnest(keys[1:key_count]) AS k))::text;
            END IF;
            PERFORM pg_notify(channel, payload);
        END $$""",
        f"""CREATE OR REPLACE FUNCTION {s}.{NOTIFY_FUNCTION}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM {s}.{LISTENERS_TABLE} WHERE channel = TG_ARGV[0]) THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND
                    (OLD.group_name, OLD.k1, OLD.k2, OLD.k3, OLD.k4, OLD.k5, OLD.key_count)
                    IS DISTINCT FROM
                    (NEW.group_name, NEW.k1, NEW.k2, NEW.k3, NEW.k4, NEW.k5, NEW.key_count)) THEN
                PERFORM {s}.{SEND_FUNCTION}(TG_ARGV[0], OLD.group_name, OLD.key_count,
                                            ARRAY[OLD.k1, OLD.k2, OLD.k3, OLD.k4, OLD.k5]);
            END IF;
            IF TG_OP <> 'DELETE' THEN
                PERFORM {s}.{SEND_FUNCTION}(TG_ARGV[0], NEW.group_name, NEW.key_count,
                                            ARRAY[NEW.k1, NEW.k2, NEW.k3, NEW.k4, NEW.k5]);
            END IF;
            RETURN NULL;
        END $$""",
    ]


_STORES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {STORES_TABLE} (name text NOT NULL, "
    "unique_identifier text NOT NULL, table_name text NOT NULL UNIQUE, codec text NOT NULL, "
    "format_version integer NOT NULL, channel text NOT NULL, "
    "PRIMARY KEY (name, unique_identifier))"
)
_LISTENERS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LISTENERS_TABLE} (channel text NOT NULL, "
    "pid integer NOT NULL, PRIMARY KEY (channel, pid))"
)
_STORES_SELECT = (
    f"SELECT codec, format_version, table_name, channel FROM {STORES_TABLE} "
    "WHERE name = $1 AND unique_identifier = $2"
)
_STORES_INSERT = (
    f"INSERT INTO {STORES_TABLE} (name, unique_identifier, table_name, codec, format_version, "
    "channel) VALUES ($1, $2, $3, $4, $5, $6)"
)
# A watcher registers its listening connection after LISTEN, so every write that starts once
# watching has started notifies it. Rows of connections that died (a crash, a server restart)
# are swept by the next watcher of the channel; until then they only cost a NOTIFY.
_LISTENER_SWEEP = (
    f"DELETE FROM {LISTENERS_TABLE} WHERE channel = $1 AND pid NOT IN "
    "(SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)"
)
_LISTENER_ADD = (
    f"INSERT INTO {LISTENERS_TABLE} (channel, pid) VALUES ($1, pg_backend_pid()) "
    "ON CONFLICT DO NOTHING"
)
_LISTENER_REMOVE = f"DELETE FROM {LISTENERS_TABLE} WHERE channel = $1 AND pid = pg_backend_pid()"
_STORES_LIST = f"SELECT name, unique_identifier FROM {STORES_TABLE} ORDER BY 1, 2"
_STORES_EXISTS = f"SELECT to_regclass('{STORES_TABLE}') IS NOT NULL"
_CREATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('rapid_dev_storage'))"


def _record_params(group: str, keys: Keys) -> tuple[Any, ...]:
    return record_params(_escape(group), tuple(map(_escape, keys)))


def _keys_of(row: Any) -> Keys:
    keys: Keys = row[: row[MAX_KEYS]]  # a slice of a record is a tuple
    if _ESCAPE in "".join(keys):  # one test per row: iteration runs this for every record
        return tuple(map(_unescape, keys))
    return keys


def _check_size(group: str, params: tuple[Any, ...]) -> None:
    """Refuse a record whose names the primary key's index cannot hold, before writing it."""
    names = params[: MAX_KEYS + 1]
    if sum(map(len, names)) * 4 <= MAX_KEY_BYTES:  # 4 bytes per character at most
        return
    size = sum(len(name.encode()) for name in names)
    if size > MAX_KEY_BYTES:
        keys = tuple(map(_unescape, names[1 : 1 + params[MAX_KEYS + 1]]))
        raise InvalidKeyError(
            f"group {group!r} and its keys take {size} bytes: PostgresBackend holds at most "
            f"{MAX_KEY_BYTES} (PostgreSQL's index limit); use shorter keys, or put long text "
            "in the value",
            group=group,
            keys=keys,
        )


def _lost_connection_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the connection or server went away: the operation may be retried."""
    import asyncpg  # noqa: PLC0415 - the optional extra, imported only when a backend exists

    return (
        OSError,
        asyncpg.InterfaceError,  # "connection is closed", released by a failed connection
        asyncpg.PostgresConnectionError,  # class 08
        asyncpg.CannotConnectNowError,  # the server is starting or stopping
        asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError,
    )


def _translated(exc: BaseException, location: str) -> Exception:
    """Return our error for one of asyncpg's; raise it ``from`` the original."""
    import asyncpg  # noqa: PLC0415

    if isinstance(exc, asyncpg.LockNotAvailableError):
        return LockTimeoutError(
            f"{location}: another connection held a row lock past the timeout "
            "(raise lock_timeout= or RAPID_DEV_STORAGE_LOCK_TIMEOUT)"
        )
    return StorageIOError(f"{location}: {exc}")


def parse_pool_size(text: str) -> int:
    """Accept a whole number of connections >= 1."""
    size = int(text)
    if size < 1:
        raise ValueError(f"a pool holds at least 1 connection, not {text!r}")
    return size


class PostgresBackend(StorageBackend):
    """Stores records in one table per store on a PostgreSQL server (asyncpg, a pool).

    Keys live in columns ``k1``..``k5`` plus ``key_count`` under one primary key, so prefix
    queries use the index; values are ``bytea`` (msgpack, custom codecs) or ``jsonb`` (the JSON
    codec), which SQL can query. Any number of processes on any number of machines may share a
    store: `update` is atomic across all of them, and watchers see every write, including ones
    made in SQL by hand.
    """

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        queries: _Queries,
        codec: Codec,
        location: str,
        dsn: str,
        connect_settings: dict[str, str],
        writer: str,
        reconnect_timeout: float,
    ) -> None:
        """Use `create_backend_instance`; this only assembles what it opened."""
        import asyncpg  # noqa: PLC0415

        super().__init__(codec)
        self.location = location
        self._pool = pool
        # One pooled connection kept for statements that find it free: asyncpg's acquire and
        # release cost about 50 us here, a third of a primary-key read on loopback.
        self._held: asyncpg.Connection | None = None
        self._held_busy = False
        self._releasing: set[asyncio.Task[object]] = set()
        self._queries = queries
        self._dsn = dsn
        self._connect_settings = connect_settings
        self._writer = writer
        self._reconnect_timeout = reconnect_timeout
        self._lost = _lost_connection_errors()
        # What the server answers for a failed statement; the connection stays usable.
        self._server_errors: type[Exception] = asyncpg.PostgresError
        self._listener: asyncpg.Connection | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._fetcher: asyncio.Task[None] | None = None
        self._pending: dict[tuple[str, Keys], None] = {}
        self._wake = asyncio.Event()

    @classmethod
    async def create_backend_instance(
        cls,
        path: Path | str,
        name: str,
        unique_identifier: int | str,
        *,
        serializer: Any = None,
        deserializer: Any = None,
        codec: str | Codec | None = None,
        durability: str | None = None,
        lock_timeout: float | None = None,
        pool_size: int | None = None,
        reconnect_timeout: float | None = None,
    ) -> PostgresBackend:
        """Open (creating if needed) the store ``(name, unique_identifier)`` on the server ``path``.

        ``path`` is a DSN (``postgresql://user:password@host:port/database``; libpq's
        environment variables fill in what it leaves out). Tables go in the first schema of the
        connection's ``search_path`` (``?search_path=myschema`` in the DSN picks another).
        ``codec`` as for every backend; JSON values are stored as ``jsonb``. ``durability``
        ``"full"`` (default) commits with ``synchronous_commit = on``, ``"fast"`` with ``off``.
        ``lock_timeout`` (seconds, default 10) bounds waiting for another connection's row
        lock; ``pool_size`` (default 10; env ``RAPID_DEV_STORAGE_POOL_SIZE``) caps connections;
        ``reconnect_timeout`` (seconds, default 30; env
        ``RAPID_DEV_STORAGE_RECONNECT_TIMEOUT``) is how long an operation retries while the
        server is unreachable.

        Raises:
            IncompatibleStoreError: the store exists with another codec or a newer format.
            InvalidNameError: ``name`` or ``unique_identifier`` is unusable.
            StorageIOError: the server cannot be reached or refused us.
            UnsupportedOperationError: asyncpg is not installed.

        """
        try:
            import asyncpg  # noqa: PLC0415
        except ImportError:
            raise UnsupportedOperationError(
                "PostgresBackend needs asyncpg: pip install 'rapid_dev_storage[postgres]'"
            ) from None
        options = resolve_store_options(
            name, unique_identifier, codec=codec, serializer=serializer,
            deserializer=deserializer, durability=durability, lock_timeout=lock_timeout,
        )  # fmt: skip
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
            raise ValueError(
                f"PostgresBackend needs a DSN such as postgresql://user@host/database, not {path!r}"
            )
        location = redact(dsn)
        writer = secrets.token_hex(8)
        settings = {
            WRITER_SETTING: writer,
            "synchronous_commit": "on" if options.durability == "full" else "off",
            "lock_timeout": str(max(1, round(options.lock_timeout * 1000))),  # 0 would mean forever
        }

        async def no_reset(connection: asyncpg.Connection) -> None:
            """Skip the reset query on release: we keep no session state, so it only costs."""

        # min_size=0: no background task re-opens connections while the server is away; the
        # connection opened here stays in the pool for the first statement.
        pool = asyncpg.create_pool(
            dsn, min_size=0, max_size=size, server_settings=settings, reset=no_reset
        )
        try:
            await pool
            async with pool.acquire() as connection:
                queries, chosen = await _open_store(connection, options.name, options.identifier,
                                                    options.codec, location)  # fmt: skip
        except BaseException as exc:
            await pool.close()
            refused = (asyncpg.InvalidAuthorizationSpecificationError,
                       asyncpg.InvalidCatalogNameError)  # fmt: skip
            if isinstance(exc, (*_lost_connection_errors(), *refused)):
                raise StorageIOError(f"cannot connect to {location}: {exc}") from exc
            if isinstance(exc, asyncpg.PostgresError):
                raise _translated(exc, location) from exc
            raise
        return cls(
            pool=pool, queries=queries, codec=chosen, location=f"{location} table {queries.table}",
            dsn=dsn, connect_settings=settings, writer=writer, reconnect_timeout=retry_for,
        )  # fmt: skip

    # --- running statements -------------------------------------------------------------------

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` again while the server is unreachable, up to ``reconnect_timeout``.

        The pool drops a connection that failed and opens a new one on the next acquire, so
        each attempt after a server restart reconnects by itself.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reconnect_timeout
        delay = FIRST_RETRY_DELAY
        while True:
            self._check_open()
            try:
                return await attempt()
            except Exception as exc:
                if not isinstance(exc, self._lost):
                    raise self._error(exc) from exc
                if delay == FIRST_RETRY_DELAY:
                    logger.info("rapid_dev_storage: %s: %s; retrying for up to %g s",
                                self.location, exc, self._reconnect_timeout)  # fmt: skip
                if loop.time() >= deadline:
                    raise StorageIOError(
                        f"{self.location}: the server did not answer for "
                        f"{self._reconnect_timeout:g} s (reconnect_timeout): {exc}"
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _once(self, method: str, sql: str, params: tuple[Any, ...]) -> Any:
        """Run one statement on the held connection if it is free, else on a pooled one.

        A statement cancelled mid-flight on the held connection is settled by the server (run
        or cancelled) while that connection goes back to the pool: later statements wait for
        that, so a cancelled clear never lands after a write acknowledged after it. (On a
        pooled connection the pool's release already waits, before the caller hears of it.)
        """
        if self._releasing:
            await asyncio.wait(set(self._releasing))
        if self._held_busy:
            return await getattr(self._pool, method)(sql, *params)
        self._held_busy = True
        try:
            if self._held is None:
                self._held = await self._pool.acquire()
            return await getattr(self._held, method)(sql, *params)
        except BaseException as exc:
            if not isinstance(exc, self._server_errors) or isinstance(exc, self._lost):
                self._drop_held()  # lost, or cancelled mid-statement: the pool sorts it out
            raise
        finally:
            self._held_busy = False

    def _drop_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            task = asyncio.ensure_future(self._pool.release(held))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _statement(self, method: str, sql: str, *params: Any) -> Any:
        """Run one statement (``fetchval`` or ``execute``), retrying while the server is away."""
        try:  # the hot path: one attempt, no closure
            return await self._once(method, sql, params)
        except Exception as exc:
            if not isinstance(exc, self._lost):
                raise self._error(exc) from exc
        return await self._retrying(lambda: self._once(method, sql, params))

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        return await self._retrying(lambda: self._pool.fetch(sql, *params))

    def _error(self, exc: Exception) -> Exception:
        """Return our error for a failed statement (the caller raises it ``from`` ``exc``)."""
        if self._closed:
            return StoreClosedError(f"PostgresBackend at {self.location} is closed")
        if isinstance(exc, self._server_errors):
            return _translated(exc, self.location)
        return StorageIOError(f"{self.location}: {exc}")

    # --- values as stored ---------------------------------------------------------------------

    def _stored(self, data: bytes) -> tuple[Any, ...]:
        """Return the value columns for a record's bytes."""
        if not self._queries.jsonb:
            return (data,)
        text = data.decode()
        if _JSONB_INEXACT.search(data) is None:
            return (text, None)
        return (None if _JSONB_NUL.search(data) else text, text)

    def _as_bytes(self, value: Any) -> bytes | None:
        """Return a stored value (bytea, or jsonb text) as the record's bytes."""
        if value is None or isinstance(value, bytes):
            return value
        return str(value).encode()

    def _canonical(self, data: bytes | None) -> bytes | None:
        """Return the bytes our own write of this value would have: jsonb reorders and respaces."""
        if data is None or not self._queries.jsonb:
            return data
        try:
            return self.codec.dumps(self.codec.loads(data))
        except Exception:  # undecodable: the hub reports it as such
            return data

    # --- hooks --------------------------------------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        return self._as_bytes(
            await self._statement("fetchval", self._queries.select, *_record_params(group, keys))
        )

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        params = _record_params(group, keys)
        _check_size(group, params)
        await self._statement("execute", self._queries.upsert, *params, *self._stored(data))

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        params = _record_params(group, keys)
        if new is not None:
            _check_size(group, params)
        queries = self._queries
        if expected is None:
            if new is None:  # clearing what is not there: nothing to write
                return await self._read(group, keys) is None
            sql, values = queries.insert_new, (*params, *self._stored(new))
        else:
            expected_value = expected.decode() if queries.jsonb else expected
            if new is None:
                sql, values = queries.swap_delete, (*params, expected_value)
            else:
                sql, values = queries.swap_update, (*params, *self._stored(new), expected_value)
        try:
            status = await self._once("execute", sql, values)
        except Exception as exc:
            if not isinstance(exc, self._lost):
                raise self._error(exc) from exc
            return await self._swap_after_loss(group, keys, expected, new, exc)
        return not status.endswith(" 0")

    async def _swap_after_loss(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None, exc: Exception
    ) -> bool:
        """Decide a swap whose connection was lost mid-statement, once the server answers.

        The record shows which: our new value (it landed), the expected one (it did not: swap
        again), or a third (someone wrote since; whether ours landed first cannot be known, and
        guessing could apply an update twice).
        """
        logger.info("rapid_dev_storage: %s: %s during an update; checking whether it landed",
                    self.location, exc)  # fmt: skip
        current = await self._read(group, keys)
        if self._canonical(current) == self._canonical(new):
            return True
        if current == expected:
            return await self._swap(group, keys, expected, new)
        raise StorageIOError(
            f"{self.location}: the connection was lost while updating group {group!r} keys "
            f"{keys!r}, and the record changed since: whether this update landed is unknown "
            f"({exc})"
        ) from exc

    async def _delete(self, group: str, keys: Keys) -> None:
        await self._statement("execute", self._queries.delete, *_record_params(group, keys))

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        params = (_escape(group), *map(_escape, prefix))
        await self._statement("execute", self._queries.delete_prefix[len(prefix)], *params)

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        head = (_escape(group), *map(_escape, prefix))
        after: tuple[Any, ...] = ("",) * (MAX_KEYS - len(prefix)) + (0,)
        sql = self._queries.scan_page[len(prefix)]
        while True:
            rows = await self._fetch(sql, *head, *after)
            yield [(_keys_of(row), self._as_bytes(row[-1]), None) for row in rows]  # type: ignore[misc]
            if len(rows) < PAGE_SIZE:
                return
            after = tuple(rows[-1])[len(prefix) : -1]

    async def _list_groups(self) -> list[str]:
        rows = await self._fetch(self._queries.groups)
        return [_unescape(row[0]) for row in rows]

    async def _close(self) -> None:
        self._drop_held()
        await asyncio.gather(*self._releasing, return_exceptions=True)
        await self._pool.close()

    # --- watching other writers ---------------------------------------------------------------

    async def _start_watching(self) -> None:
        await self._listen()
        self._fetcher = asyncio.ensure_future(self._fetch_changes())

    async def _stop_watching(self) -> None:
        tasks = [task for task in (self._fetcher, self._listener_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fetcher = self._listener_task = None
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):  # a lost server: its row is swept later
                await listener.execute(_LISTENER_REMOVE, self._queries.channel)
                await listener.close(timeout=2)
            if not listener.is_closed():  # closing timed out
                listener.terminate()
        self._pending.clear()

    async def _listen(self) -> None:
        """Connect the listening connection and LISTEN (it is not pooled: it stays subscribed)."""
        import asyncpg  # noqa: PLC0415

        async def connect() -> asyncpg.Connection:
            connection = await asyncpg.connect(self._dsn, server_settings=self._connect_settings)
            channel = self._queries.channel
            try:
                await connection.add_listener(channel, self._notified)
                await connection.execute(_LISTENER_SWEEP, channel)
                await connection.execute(_LISTENER_ADD, channel)
            except BaseException:
                connection.terminate()
                raise
            connection.add_termination_listener(self._listener_lost)
            return connection

        self._listener = await self._retrying(connect)

    def _listener_lost(self, connection: Any) -> None:
        """Listen again once the server is back (writes in between are missed)."""
        if connection is not self._listener or self._fetcher is None:
            return
        logger.warning("rapid_dev_storage: %s: lost the change listener; reconnecting",
                       self.location)  # fmt: skip
        self._listener_task = asyncio.ensure_future(self._relisten())

    async def _relisten(self) -> None:
        while True:
            try:
                await self._listen()
                return
            except StoreClosedError:
                return
            except StorageError as exc:
                logger.warning("rapid_dev_storage: %s", exc)

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("writer") == self._writer:
                return  # our own write: published when it landed
            names = [message["group"], *message["keys"]]
            if message.get("base64"):
                names = [base64.b64decode(name).decode() for name in names]
            group, keys = _unescape(names[0]), tuple(map(_unescape, names[1:]))
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("rapid_dev_storage: unreadable notification %r: %s", payload, exc)
            return
        hub = self._active_hub()
        if hub is not None and hub.wants(group, keys):
            self._pending[group, keys] = None
            self._wake.set()

    async def _fetch_changes(self) -> None:
        """Fetch the values of records others changed, in batches, and publish them in order."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending)[:FETCH_BATCH]
                for record in batch:
                    del self._pending[record]
                try:
                    found = await self._fetch_values(batch)
                except StorageError as exc:
                    logger.warning("rapid_dev_storage: fetching changed records failed: %s", exc)
                    for record in batch:  # try them again with the next notification
                        self._pending.setdefault(record, None)
                    await asyncio.sleep(0.5)
                    continue
                hub = self._active_hub()
                if hub is None:
                    return
                for index, (group, keys) in enumerate(batch):
                    hub.publish(group, keys, self._canonical(found.get(index)), "external")

    async def _fetch_values(self, records: list[tuple[str, Keys]]) -> dict[int, bytes | None]:
        columns: list[list[Any]] = [[] for _ in RECORD_COLUMNS]
        for group, keys in records:
            for column, value in zip(columns, _record_params(group, keys), strict=True):
                column.append(value)
        rows = await self._fetch(self._queries.fetch_many, *columns)
        return {row[0] - 1: self._as_bytes(row[1]) for row in rows}

    def __repr__(self) -> str:
        return f"PostgresBackend({self.location!r}, codec={self.codec.name!r})"


async def _open_store(
    connection: asyncpg.Connection,
    name: str,
    identifier: str,
    requested: Codec | None,
    location: str,
) -> tuple[_Queries, Codec]:
    """Create or check the store's table and its row in the stores table, in one transaction.

    An advisory lock serialises creation: two processes creating the same store at once would
    otherwise race on ``CREATE TABLE``.
    """
    async with connection.transaction():
        await connection.execute(_CREATION_LOCK)
        await connection.execute(_STORES_DDL)
        await connection.execute(_LISTENERS_DDL)
        row = await connection.fetchrow(_STORES_SELECT, name, identifier)
        if row is None:
            codec = requested if requested is not None else codec_by_name("msgpack")
            table = table_name(name, identifier)
            schema = await connection.fetchval("SELECT current_schema()")
            channel = channel_name(schema, table)
            queries = _Queries(table, jsonb=codec.name == "json", channel=channel)
            for statement in [*_functions_ddl(schema), *queries.create]:
                await connection.execute(statement)
            await connection.execute(
                _STORES_INSERT, name, identifier, table, codec.name, FORMAT_VERSION, channel
            )
            return queries, codec
    stored_codec, version, table, channel = row
    where = f"{location}: store ({name!r}, {identifier!r})"
    codec = codec_for_existing_store(where, stored_codec, version, FORMAT_VERSION, requested)
    return _Queries(table, jsonb=stored_codec == "json", channel=channel), codec


async def list_stores(dsn: str) -> list[tuple[str, str]]:
    """Return the ``(name, unique_identifier)`` of every store on the server (for the CLI)."""
    import asyncpg  # noqa: PLC0415

    try:
        connection = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageIOError(f"cannot connect to {redact(dsn)}: {exc}") from exc
    try:
        if not await connection.fetchval(_STORES_EXISTS):
            return []
        return [(str(n), str(u)) for n, u in await connection.fetch(_STORES_LIST)]
    finally:
        await connection.close()
