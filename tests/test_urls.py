"""Store URLs: the parser's table, options, the default and its variable, and open_storage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _postgres import DSN, fresh_schema, requires_postgres

from rapid_dev_storage import (
    FileBackend,
    InvalidNameError,
    LocationError,
    MemoryBackend,
    PostgresBackend,
    SQLiteBackend,
    open_storage,
)
from rapid_dev_storage._urls import parse_url

GOOD: list[tuple[str, type[Any], str, dict[str, Any]]] = [
    ("file:data", FileBackend, "data", {}),
    ("file:/abs/dir", FileBackend, "/abs/dir", {}),
    ("file:///abs/my%20dir", FileBackend, "/abs/my dir", {}),
    ("file://localhost/abs", FileBackend, "/abs", {}),
    ("file:data/my%20app~1", FileBackend, "data/my%20app~1", {}),  # as written: no URL form
    ("sqlite:app.db", SQLiteBackend, "app.db", {}),
    ("sqlite::memory:", SQLiteBackend, ":memory:", {}),
    ("sqlite:///var/app.db", SQLiteBackend, "/var/app.db", {}),
    ("memory:", MemoryBackend, "", {}),
    ("memory:?codec=json", MemoryBackend, "", {"codec": "json"}),
    (
        "file:data?codec=json&durability=fast&lock_timeout=2.5&inline_limit=0",
        FileBackend,
        "data",
        {"codec": "json", "durability": "fast", "lock_timeout": 2.5, "inline_limit": 0},
    ),
    (
        "file:data?force_polling=yes&read_only=1&sweep_orphans=off",
        FileBackend,
        "data",
        {"force_polling": True, "read_only": True, "sweep_orphans": False},
    ),
    ("sqlite:a.db?durability=full", SQLiteBackend, "a.db", {"durability": "full"}),
    ("postgresql://u@h/db", PostgresBackend, "postgresql://u@h/db", {}),
    ("postgres://u@h/db", PostgresBackend, "postgres://u@h/db", {}),
    (
        "postgresql://u@h/db?sslmode=require&pool_size=3&search_path=s&reconnect_timeout=1",
        PostgresBackend,
        "postgresql://u@h/db?sslmode=require&search_path=s",  # the server's own stay
        {"pool_size": 3, "reconnect_timeout": 1.0},
    ),
]


@pytest.mark.parametrize(("url", "backend", "path", "options"), GOOD)
def test_good_urls(url: str, backend: type[Any], path: str, options: dict[str, Any]) -> None:
    parsed = parse_url(url)
    assert (parsed.backend, parsed.path, parsed.options) == (backend, path, options)


BAD = [
    ("data", "is not file:DIR"),
    ("ftp://host/x", "is not file:DIR"),
    ("postgresql:db", "is not file:DIR"),
    ("file:", "names no file path"),
    ("sqlite:", "names no sqlite path"),
    ("memory:somewhere", "memory: takes no path"),
    ("file://server/share", "names host 'server'"),
    ("file:data?codec", "option 'codec' has no value"),
    ("file:data?codec=", "option 'codec' has no value"),
    ("file:data?codec=json&codec=json", "gives option 'codec' twice"),
    (
        "file:data?colour=blue",
        "gives 'colour', which FileBackend does not take: it takes codec, durability, "
        "lock_timeout, inline_limit, force_polling, sweep_orphans, read_only",
    ),
    ("file:data?durability=sometimes", "durability must be one of full, fast"),
    ("file:data?lock_timeout=-1", "option lock_timeout"),
    (
        "file:data?lock_timeout=abc",
        "option lock_timeout: a timeout must be a number of seconds >= 0, not 'abc'",
    ),
    ("postgresql://h/db?reconnect_timeout=soon", "a number of seconds >= 0, not 'soon'"),
    ("file:data?inline_limit=lots", "option inline_limit: a size must be a whole number of bytes"),
    ("file:data?force_polling=maybe", "expected 1 or 0"),
    (
        "sqlite:a.db?inline_limit=5",
        "store URL 'sqlite:a.db?inline_limit=5' gives 'inline_limit', which SQLiteBackend",
    ),
    ("memory:?durability=fast", "MemoryBackend"),
    ("postgresql://h/db?pool_size=0", "a pool holds at least 1 connection"),
    ("file:data?serializer=x", "gives 'serializer', which FileBackend does not take"),
    ("file:data?pool_size=3", "it takes codec, durability, lock_timeout, inline_limit, force_p"),
    ("file:data?codec=yaml", "option codec: unknown codec 'yaml': use one of json, msgpack"),
]


@pytest.mark.parametrize(("url", "message"), BAD)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(LocationError, match=None) as caught:
        parse_url(url)
    assert message in str(caught.value)
    assert caught.value.location == url


async def test_open_storage_every_local_scheme(tmp_path: Path) -> None:
    for url, backend in [
        (f"file:{tmp_path / 'files'}?codec=json", FileBackend),
        (f"file://{tmp_path / 'url files'}".replace(" ", "%20"), FileBackend),
        (f"sqlite:{tmp_path / 'app.db'}", SQLiteBackend),
        ("sqlite::memory:", SQLiteBackend),
        ("memory:", MemoryBackend),
    ]:
        async with await open_storage(url, "my app", 1) as store:
            assert type(store.backend) is backend
            await store.get_group("USER")["42"].set_value({"n": 1})
            assert await store.get_group("USER")["42"].get_value() == {"n": 1}
    assert (tmp_path / "url files" / "my%20app~1").is_dir()
    marker = (tmp_path / "files" / "my%20app~1" / ".rapid-dev-storage.json").read_text()
    assert '"json"' in marker


async def test_arguments_and_query_combine_and_conflicts_are_refused(tmp_path: Path) -> None:
    url = f"file:{tmp_path}?codec=json"
    async with await open_storage(url, "a", 1, durability="fast", codec="json") as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        assert (backend.codec.name, backend.durability) == ("json", "fast")
    with pytest.raises(LocationError, match="option 'codec' is 'msgpack' as an argument but"):
        await open_storage(url, "a", 1, codec="msgpack")
    with pytest.raises(LocationError, match=r"an argument beside store URL .* is 'pool_size'"):
        await open_storage(f"file:{tmp_path}", "a", 1, pool_size=3)
    async with await open_storage(f"file:{tmp_path / 'own'}", "a", 1, own_directory=True):
        pass  # an argument a URL cannot give
    with pytest.raises(InvalidNameError, match="needs the store's name and unique_identifier"):
        await open_storage(f"file:{tmp_path}")


async def test_no_url_takes_the_variable_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAPID_DEV_STORAGE_URL", raising=False)
    async with await open_storage(name="app", unique_identifier=1) as store:
        await store.get_group("G")["k"].set_value(1)
    assert (tmp_path / "data" / "app~1").is_dir()  # file:data, as the README says
    monkeypatch.setenv("RAPID_DEV_STORAGE_URL", f"sqlite:{tmp_path / 'env.db'}?codec=json")
    async with await open_storage(None, "app", 1) as store:
        assert isinstance(store.backend, SQLiteBackend)
        assert store.backend.codec.name == "json"
    assert (tmp_path / "env.db").is_file()
    monkeypatch.setenv("RAPID_DEV_STORAGE_URL", "nowhere")
    with pytest.raises(LocationError, match="'nowhere' is not file:DIR"):
        await open_storage(None, "app", 1)


@requires_postgres
async def test_open_storage_postgresql() -> None:
    dsn = await fresh_schema()
    async with await open_storage(f"{dsn}&codec=json&pool_size=2", "app", 1) as store:
        assert isinstance(store.backend, PostgresBackend)
        assert store.backend.codec.name == "json"
        await store.get_group("G")["k"].set_value([1])
        assert await store.get_group("G")["k"].get_value() == [1]
    assert DSN


def test_a_missing_asyncpg_names_the_extra(tmp_path: Path) -> None:
    # A real interpreter in which asyncpg cannot be imported (a module of that name that fails).
    (tmp_path / "asyncpg.py").write_text("raise ImportError('not installed here')\n")
    program = (
        "import asyncio, rapid_dev_storage\n"
        "try:\n"
        "    asyncio.run(rapid_dev_storage.open_storage('postgresql://h/db', 'a', 1))\n"
        "except rapid_dev_storage.UnsupportedOperationError as exc:\n"
        "    print(exc)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=True,
    )
    assert "pip install 'rapid_dev_storage[postgres]'" in result.stdout
