"""Store URLs: ``file:DIR``, ``sqlite:FILE``, ``memory:``, ``postgresql://...``, with options.

One parser for the library (`open_storage`) and the command line (`_locations`): a URL names
a backend class, the path or DSN it opens, and backend options given as query parameters
(``file:data?codec=json&durability=fast``). Options are checked against what the backend's
``create_backend_instance`` takes, so a backend gaining an option gains it here too.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ._codecs import resolve_codec
from ._settings import parse_byte_count, parse_durability, parse_flag, parse_seconds, resolve
from .errors import LocationError

if TYPE_CHECKING:
    from ._backend import StorageBackend

DEFAULT_URL = "file:data"
"""Where `open_storage` opens a store when neither its argument nor ``RAPID_DEV_STORAGE_URL``
names one: the directory ``data`` under the working directory, as in the README's tour."""

BACKENDS: dict[str, tuple[str, str]] = {
    "file": ("._file", "FileBackend"),
    "sqlite": ("._sqlite", "SQLiteBackend"),
    "memory": ("._memory", "MemoryBackend"),
    "postgresql": ("._postgres", "PostgresBackend"),
}
"""Each scheme's backend, as (module, class): imported when a URL names it, so that opening a
file store never loads sqlite3 or PostgreSQL's modules (start-up time is measured)."""
PATH_SCHEMES = ("file", "sqlite", "memory")
"""The schemes whose URL is ``scheme:path``; any other URL may be a PostgreSQL DSN."""


def _unquote(text: str) -> str:
    """Return ``text`` with its %-escapes decoded, as `urllib.parse.unquote` does.

    urllib.parse (and the ipaddress module it imports) loads only for a URL that holds a ``%``:
    about 2 ms of every start-up otherwise (tools/bench_startup.py).
    """
    if "%" not in text:
        return text
    from urllib.parse import unquote as decoded  # noqa: PLC0415

    return decoded(text)


def _parse_pool_size(text: str) -> int:
    from ._postgres_open import parse_pool_size  # noqa: PLC0415  (PostgreSQL's, when named)

    return parse_pool_size(text)


def _parse_codec_name(text: str) -> str:
    resolve_codec(text, None, None)  # a ValueError names the codecs it knows
    return text


QUERY_OPTIONS: dict[str, Callable[[str], Any]] = {
    "codec": _parse_codec_name,
    "durability": parse_durability,
    "lock_timeout": parse_seconds,
    "inline_limit": parse_byte_count,
    "force_polling": parse_flag,
    "sweep_orphans": parse_flag,
    "read_only": parse_flag,
    "pool_size": _parse_pool_size,
    "reconnect_timeout": parse_seconds,
}
"""Options a URL may carry, each with the parser of its text (a `ValueError` says what is wrong).
A serializer or a deserializer is code: only an argument can give one."""

FORMS = "file:DIR, sqlite:FILE, memory: or postgresql://..."
EXAMPLES = "for example file:data, sqlite:app.db?codec=json or postgresql://user@host/database"


class ParsedURL(NamedTuple):
    """What a store URL names: the backend, what it opens, and the options it carries.

    A NamedTuple, not a frozen dataclass: making the class costs a seventh as much, and the
    command line makes it at every start.
    """

    scheme: str
    """``file``, ``sqlite``, ``memory`` or ``postgresql`` (also for a ``postgres://`` DSN)."""
    backend: type[StorageBackend]
    path: str
    """The directory or SQLite file (``:memory:`` included), the DSN, or '' for memory."""
    options: dict[str, Any]
    """Backend options from the query, parsed: ``{"codec": "json", "lock_timeout": 5.0}``."""


def resolve_url(url: str | None) -> str:
    """Return ``url`` if given, else ``RAPID_DEV_STORAGE_URL``, else `DEFAULT_URL`."""
    return resolve("url", url, DEFAULT_URL, str)


def parse_url(url: str) -> ParsedURL:
    """Parse a store URL, checking its options against its backend's.

    ``file:DIR`` and ``sqlite:FILE`` take the path as written (relative or absolute); the URL
    forms ``file:///abs/dir`` and ``sqlite:///abs/file.db`` are percent-decoded. A PostgreSQL
    DSN keeps every query parameter that is not one of our options (``sslmode``,
    ``search_path``...) for the server.

    Raises:
        LocationError: an unknown scheme, a missing path, or an unknown or malformed option.

    """
    scheme, separator, rest = url.partition(":")
    if scheme not in PATH_SCHEMES or not separator:
        return _parse_dsn(url)
    path, _, query = rest.partition("?")
    if path.startswith("//"):
        host, slash, absolute = path[2:].partition("/")
        if host not in ("", "localhost") or not slash:
            raise LocationError(
                f"store URL {url!r} names host {host!r}: a {scheme}:// URL names a path on "
                f"this machine ({scheme}:///absolute/path), or write {scheme}:relative/path",
                location=url,
            )
        path = _unquote("/" + absolute)
    if scheme == "memory" and path:
        raise LocationError(f"store URL {url!r}: memory: takes no path", location=url)
    if scheme != "memory" and not path:
        raise LocationError(f"store URL {url!r} names no {scheme} path", location=url)
    options, _ = _split_query(url, query, keep=lambda name: False)
    return _parsed(url, scheme, path, options)


def _parse_dsn(url: str) -> ParsedURL:
    """Parse a PostgreSQL DSN, or raise `LocationError` for a URL of no scheme we know."""
    from ._postgres_sql import DSN_PREFIXES  # noqa: PLC0415  (only for a DSN: start-up time)

    if not url.startswith(DSN_PREFIXES):
        raise LocationError(f"store URL {url!r} is not {FORMS} ({EXAMPLES})", location=url)
    dsn, _, query = url.partition("?")
    ours, theirs = _split_query(url, query, keep=lambda name: name not in QUERY_OPTIONS)
    if theirs:
        dsn = f"{dsn}?{'&'.join(theirs)}"
    return _parsed(url, "postgresql", dsn, ours)


def _split_query(
    url: str, query: str, keep: Callable[[str], bool]
) -> tuple[dict[str, Any], list[str]]:
    """Return the parsed options of ``query``, and the raw parameters ``keep`` leaves as they are.

    Raises:
        LocationError: a parameter without a value, given twice, or whose value does not parse.

    """
    options: dict[str, Any] = {}
    kept: list[str] = []
    for parameter in query.split("&") if query else ():
        raw_name, equals, raw_value = parameter.partition("=")
        name, value = _unquote(raw_name), _unquote(raw_value)
        if keep(name):
            kept.append(parameter)
            continue
        if not equals or not value:
            raise LocationError(
                f"store URL {url!r}: option {name!r} has no value (write {name}=...)", location=url
            )
        if name in options:
            raise LocationError(f"store URL {url!r} gives option {name!r} twice", location=url)
        parse = QUERY_OPTIONS.get(name)
        if parse is None:  # refused by `check_options`, naming what the backend takes
            options[name] = value
            continue
        try:
            options[name] = parse(value)
        except ValueError as exc:
            raise LocationError(f"store URL {url!r}: option {name}: {exc}", location=url) from None
    return options, kept


def _parsed(url: str, scheme: str, path: str, options: dict[str, Any]) -> ParsedURL:
    module, name = BACKENDS[scheme]
    backend = getattr(importlib.import_module(module, __package__), name)
    check_options(url, backend, options, {})
    return ParsedURL(scheme, backend, path, options)


_BACKEND_OPTIONS: dict[type[StorageBackend], tuple[str, ...]] = {}


def backend_options(backend: type[StorageBackend]) -> tuple[str, ...]:
    """Return the options ``backend.create_backend_instance`` takes (its keyword-only ones)."""
    # Remembered: a signature costs some 50 µs, and every open checks its options twice.
    known = _BACKEND_OPTIONS.get(backend)
    if known is not None:
        return known
    parameters = inspect.signature(backend.create_backend_instance).parameters.values()
    known = _BACKEND_OPTIONS[backend] = tuple(
        p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY
    )
    return known


def check_options(
    url: str, backend: type[StorageBackend], options: dict[str, Any], arguments: dict[str, Any]
) -> None:
    """Raise `LocationError` naming any option ``backend`` does not take, and those it does.

    ``options`` came in the URL: the options named are those a URL can give it. ``arguments``
    were given beside the URL: every keyword its ``create_backend_instance`` takes is named.
    """
    takes = backend_options(backend)
    for given, where, named in (
        (options, f"store URL {url!r} gives", [name for name in QUERY_OPTIONS if name in takes]),
        (arguments, f"an argument beside store URL {url!r} is", list(takes)),
    ):
        unknown = [name for name in given if name not in named]
        if unknown:
            raise LocationError(
                f"{where} {', '.join(map(repr, unknown))}, which {backend.__name__} does not "
                f"take: it takes {', '.join(named) or 'none'}",
                location=url,
            )


def merge_options(parsed: ParsedURL, url: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Return the URL's options with ``arguments`` added (an argument of None is not given).

    Raises:
        LocationError: an option the backend does not take, or one given by both the URL and an
            argument with different values (neither silently wins over the other).

    """
    merged = dict(parsed.options)
    for name, value in arguments.items():
        if value is None:
            continue
        if name in merged and merged[name] != value:
            raise LocationError(
                f"option {name!r} is {value!r} as an argument but {merged[name]!r} in store URL "
                f"{url!r}: give it once",
                location=url,
            )
        merged[name] = value
    check_options(
        url,
        parsed.backend,
        parsed.options,
        {name: value for name, value in arguments.items() if value is not None},
    )
    return merged
