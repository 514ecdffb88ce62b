"""The PostgreSQL server the tests use: named by RAPID_DEV_STORAGE_TEST_POSTGRES, else skipped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Callable

import asyncpg
import pytest

from rapid_dev_storage import Change, PostgresBackend, Storage, Watch

DSN = os.environ.get("RAPID_DEV_STORAGE_TEST_POSTGRES", "")
CLUSTER = os.environ.get("RAPID_DEV_STORAGE_TEST_POSTGRES_DIR", "")
"""The directory of a throwaway cluster (tools/pg_cluster.py) the tests may restart."""

requires_postgres = pytest.mark.skipif(
    not DSN,
    reason="no PostgreSQL server: set RAPID_DEV_STORAGE_TEST_POSTGRES to a DSN (bash .ci/run "
    "starts one; so does `python tools/pg_cluster.py start /tmp/rds-pg`)",
)
requires_cluster = pytest.mark.skipif(
    not (DSN and CLUSTER),
    reason="no PostgreSQL cluster to restart: set RAPID_DEV_STORAGE_TEST_POSTGRES_DIR to the "
    "directory given to `python tools/pg_cluster.py start` (bash .ci/run does)",
)
PG_CLUSTER = Path(__file__).parents[1] / "tools" / "pg_cluster.py"


async def cluster(action: str, *options: str) -> None:
    """Run ``tools/pg_cluster.py ACTION`` on the test cluster (restart, stop, start)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PG_CLUSTER),
        action,
        CLUSTER,
        *options,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await process.wait() == 0


async def fresh_schema() -> str:
    """Create an empty schema and return a DSN whose tables go there: a server of one's own."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    connection = await asyncpg.connect(DSN)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
    finally:
        await connection.close()
    separator = "&" if urllib.parse.urlsplit(DSN).query else "?"
    return f"{DSN}{separator}search_path={schema}"


async def open_store(dsn: str, name: str = "app", uid: int | str = 1, **options: Any) -> Storage:
    """Open a PostgreSQL store (as ``Storage``) on ``dsn``."""
    return Storage(await PostgresBackend.create_backend_instance(dsn, name, uid, **options))


async def sql(dsn: str, statement: str, *params: Any) -> list[Any]:
    """Run one statement as a psql session would, on a connection of its own."""
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(statement, *params))
    finally:
        await connection.close()


async def next_change(watch: Watch, timeout: float = 5.0) -> Change:
    """The watch's next change, within ``timeout`` seconds."""
    return await asyncio.wait_for(watch.__anext__(), timeout)


async def wait_for_row(connection: asyncpg.Connection, query: str, timeout: float = 10) -> Any:
    """Poll the server's own view until ``query`` returns a row (the event is on the server)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (row := await connection.fetchrow(query)) is None:
        if loop.time() > deadline:
            raise AssertionError(f"no row after {timeout} s: {query}")
        await asyncio.sleep(0.005)
    return row


class Progress:
    """A count of finished operations that a test waits on, instead of sleeping and hoping."""

    def __init__(self) -> None:
        self.count = 0
        self._moved = asyncio.Event()

    def add(self) -> None:
        """Count one more finished operation (on the test's event loop)."""
        self.count += 1
        self._moved.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        """Return once ``condition()`` holds, asked after each operation; fail after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            self._moved.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"not there after {timeout} s ({self.count} operations)")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._moved.wait(), remaining)

    async def beyond(self, operations: int, timeout: float = 30) -> None:
        """Return once ``operations`` more have finished than now."""
        target = self.count + operations
        await self.until(lambda: self.count >= target, timeout)
