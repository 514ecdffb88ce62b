"""PostgresBackend's SQL text: names, keys and values as stored, every statement, the functions.

Nothing here talks to a server (a record too long for the index is refused here, before it is
sent). The only text ever formatted into SQL is quoted identifiers (a store's table, the schema)
and names this module builds itself; values travel as parameters.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from typing import Any

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
from ._sql_stores import STORES_TABLE, StoresStatements
from ._types import Keys
from ._validate import MAX_KEYS
from .errors import InvalidKeyError

FORMAT_VERSION = 1
DSN_PREFIXES = ("postgresql://", "postgres://")
LISTENERS_TABLE = "rapid_dev_storage_listeners"
"""Which connections LISTEN on which channel: triggers NOTIFY only when one does, because a
NOTIFY serialises commits database-wide (measured: 64 writers, 3,300 commits/s with it, 5,800
without)."""
NOTIFY_FUNCTION = "rapid_dev_storage_notify_v1"
SEND_FUNCTION = "rapid_dev_storage_send_v1"
TRUNCATE_FUNCTION = "rapid_dev_storage_truncate_v1"
WRITER_SETTING = "rapid_dev_storage.writer"
"""Set on each of a backend's connections, copied into notifications: a watcher skips its own."""
MAX_KEY_BYTES = 2000
"""Group name and keys of one record, UTF-8, at most: a btree index entry holds about 2700."""
PAGE_SIZE = 500
"""Rows per query while iterating: a round trip amortised, memory flat."""
FETCH_BATCH = 500
"""Records a watcher fetches per query after notifications."""

_ESCAPE = "\uffff"
"""PostgreSQL text holds no NUL: a key's NULs are stored as U+FFFF '0' (and U+FFFF as U+FFFF '1'),
so every other key is stored as itself and reads naturally in SQL."""
_UNESCAPE = re.compile(_ESCAPE + "(.)", re.DOTALL)


def escape(text: str) -> str:
    """Return a group name or key as stored (no NUL)."""
    if "\x00" not in text and _ESCAPE not in text:
        return text
    return text.replace(_ESCAPE, _ESCAPE + "1").replace("\x00", _ESCAPE + "0")


def unescape(text: str) -> str:
    """Return a stored group name or key as written."""
    if _ESCAPE not in text:
        return text
    return _UNESCAPE.sub(lambda match: "\x00" if match[1] == "0" else _ESCAPE, text)


def stored_record_params(group: str, keys: Keys) -> tuple[Any, ...]:
    """Return a record's key column values, escaped."""
    return record_params(escape(group), tuple(map(escape, keys)))


# JSON that jsonb would not give back as written: a NUL escape (jsonb refuses it), -0.0 and
# floats in exponent form (numeric prints 1e+16 as an integer). A match inside a string only
# costs an unneeded exact copy.
_JSONB_INEXACT = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000|[0-9]e\+|-0\.0(?![0-9])")
_JSONB_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_JSONB_INEXACT_NEEDS = (b"\\u0000", b"e+", b"-0.0")


def check_size(group: str, params: tuple[Any, ...]) -> None:
    """Refuse a record whose names the primary key's index cannot hold, before writing it."""
    names = params[: MAX_KEYS + 1]
    if sum(map(len, names)) * 4 <= MAX_KEY_BYTES:  # 4 bytes per character at most
        return
    size = sum(len(name.encode()) for name in names)
    if size > MAX_KEY_BYTES:
        keys = tuple(map(unescape, names[1 : 1 + params[MAX_KEYS + 1]]))
        raise InvalidKeyError(
            f"group {group!r} and its keys take {size} bytes: PostgresBackend holds at most "
            f"{MAX_KEY_BYTES} (PostgreSQL's index limit); use shorter keys, or put long text "
            "in the value",
            group=group,
            keys=keys,
        )


def stored_value(jsonb: bool, data: bytes) -> tuple[Any, ...]:
    """Return the value columns for a record's bytes: bytea, or jsonb and its exact text."""
    if not jsonb:
        return (data,)
    text = data.decode()
    # The regex tries every position (75 ns a byte: 1.7 s on the loop for 23 MB); what it can
    # match needs one of these, found at memchr speed.
    if not any(map(data.__contains__, _JSONB_INEXACT_NEEDS)) or _JSONB_INEXACT.search(data) is None:
        return (text, None)
    return (None if _JSONB_NUL.search(data) else text, text)


def keys_of(row: Any) -> Keys:
    """Return the keys of a row that starts with ``k1``..``k5, key_count``, unescaped."""
    keys: Keys = row[: row[MAX_KEYS]]  # a slice of a record is a tuple
    if _ESCAPE in "".join(keys):  # one test per row: iteration runs this for every record
        return tuple(map(unescape, keys))
    return keys


def table_name(name: str, unique_identifier: str) -> str:
    """Return a store's table: readable in psql, within PostgreSQL's 63 bytes, distinct by hash."""
    digest = hashlib.sha256(f"{name}\x00{unique_identifier}".encode()).hexdigest()[:12]
    readable = re.sub(r"[^a-z0-9]+", "_", f"{name}_{unique_identifier}".lower()).strip("_")
    return f"rds_{readable[:40]}_{digest}"


def channel_name(schema: str, table: str) -> str:
    """Return a store's NOTIFY channel: channels are database-wide, tables only schema-wide."""
    digest = hashlib.sha256(f"{schema}\x00{table}".encode()).hexdigest()[:16]
    return f"{table[:46]}_{digest}"


def truncate_trigger(table: str) -> str:
    """Return the name of a table's TRUNCATE trigger (at most 63 bytes, as PostgreSQL keeps)."""
    return f"{table}_trunc"


def redact(dsn: str) -> str:
    """Return ``dsn`` without its password, to name the server in messages."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rpartition("@")
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


VERSION_DEFAULT = "(random() * 4611686018427387904)::bigint"
"""A fresh version for rows that sets and SQL edits insert; an update writes one it chose."""


HISTORY = 16
"""Versions an update keeps of the ones before it: a write lost mid-statement is decided exactly
as long as fewer than this many updates replaced the version it read (else it raises)."""
VERSION_COLUMNS = f"version bigint DEFAULT {VERSION_DEFAULT}, history bigint[]"


def _value(jsonb: bool, alias: str = "") -> str:
    """Return the expression of a record's bytes as stored: bytea, or the JSON text."""
    return f"COALESCE({alias}raw, {alias}data::text)" if jsonb else f"{alias}data"


class Queries:
    """Every statement for one store's table, built once, here and nowhere else."""

    def __init__(self, table: str, jsonb: bool, channel: str, *, versioned: bool = True) -> None:
        self.table = table
        t = quote_identifier(table)
        self.quoted_table = t
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
        self.create_table = (
            f'CREATE TABLE {t} (group_name text COLLATE "C" NOT NULL, {keys}, '
            f"key_count smallint NOT NULL, {value_columns}, {VERSION_COLUMNS}, "
            f"PRIMARY KEY ({columns}))"
        )
        # Tables of older versions gain them on open (instant: no default, so no rewrite).
        self.add_version_columns = [
            f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS version bigint, "
            "ADD COLUMN IF NOT EXISTS history bigint[]",
            f"ALTER TABLE {t} ALTER COLUMN version SET DEFAULT {VERSION_DEFAULT}",
        ]
        self.create_triggers = [
            f"CREATE TRIGGER {quote_identifier(table + '_notify')} AFTER INSERT OR UPDATE OR "
            f"DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION {NOTIFY_FUNCTION}('{channel}')",
        ]
        # TRUNCATE removes rows without row triggers; before it does, this one reports each
        # record (only while someone watches). Added to tables of older versions on open.
        self.create_truncate_trigger = (
            f"CREATE TRIGGER {quote_identifier(truncate_trigger(table))} BEFORE TRUNCATE ON {t} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {TRUNCATE_FUNCTION}('{channel}')"
        )
        record = record_condition(numbered)
        placeholders = ", ".join(f"${i}" for i in range(1, width + 1))
        excluded = ", ".join(f"{column} = EXCLUDED.{column}" for column in stored.split(", "))
        # A table of an older version has no version column until its owner opens it.
        version = "version" if versioned else "NULL::bigint"
        self.select = f"SELECT {value}, {version} FROM {t} WHERE {record}"
        self.recover = f"SELECT {value}, version, history FROM {t} WHERE {record}"
        self.upsert = (
            f"INSERT INTO {t} ({columns}, {stored}) VALUES ({placeholders}) "
            f"ON CONFLICT ({columns}) DO UPDATE SET {excluded}"
        )
        # Update's writes, each one statement: the row lock and the re-check of the WHERE clause
        # make it a compare-and-swap against every other connection. Each writes a version of
        # its own choosing and keeps the ones it replaced, newest first, in history: after a lost
        # connection, the
        # row says whether this very write landed (see PostgresBackend._after_loss).
        self.insert_new = (
            f"INSERT INTO {t} ({columns}, {stored}, version) VALUES ({placeholders}, "
            f"${width + 1}) ON CONFLICT ({columns}) DO NOTHING"
        )
        self.swap_update = (
            f"UPDATE {t} SET {assign}, version = ${width + 1}, "
            f"history = (ARRAY[version] || history)[1:{HISTORY}] WHERE {record} "
            f"AND {value} = ${width + 2} AND version IS NOT DISTINCT FROM ${width + 3}"
        )
        self.swap_delete = (
            f"DELETE FROM {t} WHERE {record} AND {value} = $8 AND version IS NOT DISTINCT FROM $9"
        )
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


def dollar_quoted(body: str) -> str:
    """Return ``body`` as a dollar-quoted string whose tag does not occur in it.

    The body holds the schema's quoted name, which may contain anything, ``$$`` included:
    quoting it as an identifier protects it from ``"`` but not from the end of a ``$$`` string.
    """
    tag, number = "$rds$", 0
    while tag in body:
        number += 1
        tag = f"$rds{number}$"
    return f"{tag}{body}{tag}"


def functions_ddl(schema: str) -> list[tuple[str, str]]:
    """Return ``(name, CREATE FUNCTION)`` of the trigger functions, per schema.

    Created once per schema, by the first store created there, and never replaced (replacing
    needs ownership: a second role creating a store must not need to own them). The payload is
    JSON with the record's keys as stored; when escaping makes it longer than NOTIFY's 8000
    bytes, the names go base64-encoded instead (they hold at most MAX_KEY_BYTES). Names inside
    are schema-qualified: a trigger fired from a session with another search_path (someone
    editing in psql) still finds them.
    """
    s = quote_identifier(schema)
    send = f"""
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
        END"""
    notify = f"""
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
        END"""
    truncate = f"""
        DECLARE
            r record;
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM {s}.{LISTENERS_TABLE} WHERE channel = TG_ARGV[0]) THEN
                RETURN NULL;
            END IF;
            FOR r IN EXECUTE format('SELECT group_name, key_count, ARRAY[k1, k2, k3, k4, k5] '
                                    'AS keys FROM %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME) LOOP
                PERFORM {s}.{SEND_FUNCTION}(TG_ARGV[0], r.group_name, r.key_count, r.keys);
            END LOOP;
            RETURN NULL;
        END"""
    send_args = "channel text, group_name text, key_count smallint, keys text[]"
    return [
        (
            SEND_FUNCTION,
            f"CREATE FUNCTION {s}.{SEND_FUNCTION}({send_args}) RETURNS void LANGUAGE plpgsql "
            f"AS {dollar_quoted(send)}",
        ),
        (
            NOTIFY_FUNCTION,
            f"CREATE FUNCTION {s}.{NOTIFY_FUNCTION}() RETURNS trigger LANGUAGE plpgsql "
            f"AS {dollar_quoted(notify)}",
        ),
        (
            TRUNCATE_FUNCTION,
            f"CREATE FUNCTION {s}.{TRUNCATE_FUNCTION}() RETURNS trigger LANGUAGE plpgsql "
            f"AS {dollar_quoted(truncate)}",
        ),
    ]


STORES = StoresStatements(numbered, {"channel": "TEXT NOT NULL"})
LISTENERS_DDL = (
    f"CREATE TABLE {LISTENERS_TABLE} (channel text NOT NULL, "
    "pid integer NOT NULL, PRIMARY KEY (channel, pid))"
)
RELATION_EXISTS = "SELECT to_regclass($1) IS NOT NULL"
# Under the advisory lock, existence is asked of the catalogs in a fresh snapshot: to_regclass
# and its kin answer from caches that an advisory lock does not refresh, and would miss what
# the previous holder of the lock created.
IN_SCHEMA = "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
TABLE_CREATED = (
    f"SELECT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = {IN_SCHEMA} AND relname = $1)"
)
FUNCTION_CREATED = (
    f"SELECT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = {IN_SCHEMA} AND proname = $1)"
)
TRIGGER_EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)"
)
PRIVILEGES = (
    "SELECT current_user, has_table_privilege($1, 'INSERT'), has_table_privilege($1, 'UPDATE'), "
    "has_table_privilege($1, 'DELETE')"
)
# A watcher registers its listening connection after LISTEN, so every write that starts once
# watching has started notifies it. Rows of connections that died (a crash, a server restart)
# are swept by the next watcher of the channel; until then they only cost a NOTIFY.
LISTENER_SWEEP = (
    f"DELETE FROM {LISTENERS_TABLE} WHERE channel = $1 AND pid NOT IN "
    "(SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)"
)
LISTENER_ADD = (
    f"INSERT INTO {LISTENERS_TABLE} (channel, pid) VALUES ($1, pg_backend_pid()) "
    "ON CONFLICT DO NOTHING"
)
LISTENER_REMOVE = f"DELETE FROM {LISTENERS_TABLE} WHERE channel = $1 AND pid = pg_backend_pid()"
STORES_EXISTS = f"SELECT to_regclass('{STORES_TABLE}') IS NOT NULL"
CREATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('rapid_dev_storage'))"
CURRENT_SCHEMA = "SELECT current_schema()"
