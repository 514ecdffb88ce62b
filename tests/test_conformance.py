"""The shipped conformance suite, run against every built-in backend and codec."""

from __future__ import annotations

from pathlib import Path

from _custom_backends import AuditedBackend, WithSwap
from _postgres import fresh_schema, requires_postgres

from rapid_dev_storage import (
    FileBackend,
    MemoryBackend,
    OverlayBackend,
    PostgresBackend,
    SQLiteBackend,
    StorageBackend,
)
from rapid_dev_storage.testing import BackendConformance


class TestMemoryBackend(BackendConformance):
    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        return MemoryBackend(codec)


class TestBackendOverridingPublicMethods(BackendConformance):
    """A subclass overriding get_data and write_data, calling super(): the contract holds."""

    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        return AuditedBackend(codec)


class TestSmallestBackend(BackendConformance):
    """A dict and the eight hooks, written as a backend author would (tests/_custom_backends.py)."""

    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        return WithSwap(codec)


class TestSQLiteFile(BackendConformance):
    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        return await SQLiteBackend.create_backend_instance(
            directory / "store.sqlite3", "conformance", 1, codec=codec, durability="fast"
        )


class TestSQLiteInMemory(BackendConformance):
    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        return await SQLiteBackend.create_backend_instance(
            ":memory:", "conformance", 1, codec=codec
        )


class TestFileBackend(BackendConformance):
    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        return await FileBackend.create_backend_instance(
            directory, "conformance", 1, codec=codec, durability="fast"
        )


class TestFileBackendFullDurability(BackendConformance):
    codecs = ("json",)

    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        return await FileBackend.create_backend_instance(directory, "conformance", 1, codec=codec)


class TestOverlayBackend(BackendConformance):
    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        fixture = await FileBackend.create_backend_instance(
            directory / "fixture", "conformance", 1, codec=codec
        )
        await fixture.close()
        return await OverlayBackend.over(directory / "fixture", directory / "layer")


@requires_postgres
class TestPostgresBackend(BackendConformance):
    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        # A schema of its own per case: the server outlives every test.
        return await PostgresBackend.create_backend_instance(
            await fresh_schema(), "conformance", 1, codec=codec
        )
