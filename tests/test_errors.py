"""Errors carry what a program needs to act on, and are StorageErrors and their builtins."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapid_dev_storage import (
    FileBackend,
    LocationError,
    PostgresBackend,
    ReentrantUpdateError,
    Storage,
    StorageError,
    StorageIOError,
)
from rapid_dev_storage._file_locks import lock_timeout_error


async def test_writing_its_own_record_from_update_names_the_record(tmp_path: Path) -> None:
    async with Storage(await FileBackend.create_backend_instance(tmp_path, "app", 1)) as store:
        handle = store.get_group("G")["a", "b"]

        async def writes_itself(current: object) -> int:
            await handle.set_value(1)
            return 2

        with pytest.raises(ReentrantUpdateError) as caught:
            await handle.update(writes_itself)
    assert isinstance(caught.value, StorageError)
    assert isinstance(caught.value, RuntimeError)
    assert (caught.value.group, caught.value.keys) == ("G", ("a", "b"))


async def test_a_bad_dsn_is_a_location_error() -> None:
    with pytest.raises(LocationError) as caught:
        await PostgresBackend.create_backend_instance("mysql://x", "app", 1)
    assert isinstance(caught.value, ValueError)
    assert caught.value.location == "mysql://x"


def test_lock_timeouts_and_io_errors_carry_their_facts() -> None:
    error = lock_timeout_error("/s/.locks/07.lock", 2.5)
    assert (error.location, error.timeout) == ("/s/.locks/07.lock", 2.5)
    assert str(error).startswith("/s/.locks/07.lock: another process held the lock for more")
    assert isinstance(error, TimeoutError)


async def test_a_file_error_carries_errno_and_filename(tmp_path: Path) -> None:
    async with Storage(await FileBackend.create_backend_instance(tmp_path, "app", 1)) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        backend = store.backend
        assert isinstance(backend, FileBackend)
        record = Path(backend.record_path("G", ("k",)))
        record.unlink()
        record.mkdir()  # a directory where the record should be
        with pytest.raises(StorageIOError) as caught:
            await handle.set_value(2)
    assert caught.value.filename == str(record)
    assert caught.value.errno is not None
    assert str(record) in str(caught.value)
