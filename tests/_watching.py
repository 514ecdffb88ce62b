"""What the watch tests share: opening each kind of store, waiting for a change, workers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from _postgres import fresh_schema, requires_postgres

from rapid_dev_storage import (
    Change,
    FileBackend,
    MemoryBackend,
    PostgresBackend,
    SQLiteBackend,
    Storage,
    Watch,
)

WORKER = Path(__file__).with_name("_worker.py")
POSTGRES = pytest.param("postgres", marks=requires_postgres)
KINDS = ["memory", "sqlite", "file", POSTGRES]
SHARED = ["sqlite", "file", POSTGRES]  # backends other processes can write to
_SERVERS: dict[Path, str] = {}  # a test's own schema on the PostgreSQL server, by tmp_path


async def open_store(kind: str, path: Path, **options: Any) -> Storage:
    if kind == "memory":
        return Storage(MemoryBackend())
    if kind == "postgres":
        if path not in _SERVERS:
            _SERVERS[path] = await fresh_schema()
        backend = await PostgresBackend.create_backend_instance(
            _SERVERS[path], "shared", 1, durability="fast", **options
        )
        return Storage(backend)
    if kind == "sqlite":
        backend = await SQLiteBackend.create_backend_instance(
            path / "db.sqlite3", "shared", 1, durability="fast", **options
        )
        return Storage(backend)
    backend = await FileBackend.create_backend_instance(
        path, "shared", 1, codec="json", durability="fast", **options
    )
    return Storage(backend)


def store_path(kind: str, path: Path) -> str:
    if kind == "postgres":
        return _SERVERS[path]
    return str(path / "db.sqlite3") if kind == "sqlite" else str(path)


async def next_change(watch: Watch, timeout: float = 5.0) -> Change:
    return await asyncio.wait_for(watch.__anext__(), timeout)


async def no_more(watch: Watch, wait: float = 0.4) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(watch.__anext__(), wait)


async def run_worker(*arguments: str) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, str(WORKER), *arguments)
    assert await process.wait() == 0
