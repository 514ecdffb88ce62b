"""A backend written against only the original seven-method contract still works with Storage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgpack
import pytest
from _original_backend import Keys, OriginalStyleBackend

from rapid_dev_storage import (
    InvalidKeyError,
    InvalidNameError,
    MemoryBackend,
    NoValue,
    ReentrantUpdateError,
    Storage,
    StorageBackend,
    StorageGroup,
    StorageValue,
    StoreClosedError,
    StoredValue,
    UnsupportedOperationError,
)
from rapid_dev_storage.testing import BackendConformance


async def test_storage_works_on_an_original_style_backend() -> None:
    backend = await OriginalStyleBackend.create_backend_instance(":memory:", "legacy", 1)
    async with Storage(backend) as store:
        group = store.get_group("USER")
        await group["u1", "settings"].set_value({"theme": "dark"})
        await group["u1", "name"].set_value("Ada")
        await group["u2", "name"].set_value("Bob")
        assert await group["u1", "settings"].get_value() == {"theme": "dark"}
        assert {keys async for keys, _ in group.all_items("u1")} == {
            ("u1", "settings"),
            ("u1", "name"),
        }
        assert len([item async for item in group]) == 3
        await group.clear_prefix("u1")
        assert [keys async for keys, _ in group.all_items()] == [("u2", "name")]

        async def add_one(current: Any) -> int:
            await asyncio.sleep(0)
            return (0 if current is NoValue else current) + 1

        counter = group["counter"]
        await asyncio.gather(*(counter.update(add_one) for _ in range(200)))
        assert await counter.get_value() == 200
        assert await counter.update(lambda current: NoValue) is NoValue
        assert await counter.get_value() is NoValue
        with pytest.raises(UnsupportedOperationError, match="OriginalStyleBackend"):
            await store.list_groups()
        await group.clear_group()
        assert backend.rows == {}


async def test_the_adapter_checks_what_reaches_an_original_style_backend() -> None:
    backend = OriginalStyleBackend()
    store = Storage(backend)
    assert store.backend is backend
    group = store.get_group("G")
    await group["a", "b"].set_value(1)
    with pytest.raises(InvalidKeyError):
        group.all_items("a", 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        await group.clear_prefix("a", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError):
        await StorageGroup(backend, "").clear_group()

    async def writes_itself(current: Any) -> Any:
        await group["a", "b"].set_value(99)
        return current

    with pytest.raises(ReentrantUpdateError):
        await group["a", "b"].update(writes_itself)
    assert backend.rows == {("G", ("a", "b")): msgpack.packb(1)}
    with pytest.raises(UnsupportedOperationError, match="OriginalStyleBackend"):
        await store.subscribe(print)
    await store.close()
    with pytest.raises(StoreClosedError):
        await group["a", "b"].get_value()
    assert backend.rows == {("G", ("a", "b")): msgpack.packb(1)}  # nothing to release


async def test_handles_made_directly_share_one_adapter_and_its_locks() -> None:
    backend = OriginalStyleBackend()

    async def add_one(current: Any) -> int:
        await asyncio.sleep(0)
        return (0 if current is NoValue else current) + 1

    handles = [StoredValue(backend, "G", "n"), StorageGroup(backend, "G")["n"]]
    await asyncio.gather(*(handles[i % 2].update(add_one) for i in range(100)))
    assert await handles[0].get_value() == 100


def test_original_names_are_kept() -> None:
    assert StoredValue is StorageValue
    handle = StoredValue(MemoryBackend(), "G", "a", "b")
    assert handle.keys == ("a", "b")


class NaiveUpdateBackend(MemoryBackend):
    """Broken on purpose: update without the lock or compare-and-swap."""

    async def update_data(self, group_name: str, *keys: str, fn: Any) -> Any:
        current = await self.get_data(group_name, *keys)
        new = await fn(current)
        await self.write_data(group_name, *keys, value=new)
        return new


class MergesPrefixesBackend(MemoryBackend):
    """Broken on purpose: clearing prefix ('a', '') also clears ('a',), like padding with ''."""

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        stripped = tuple(key for key in prefix if key)
        await super()._delete_prefix(group, stripped)


@pytest.mark.parametrize(
    ("backend_class", "check"),
    [
        (NaiveUpdateBackend, BackendConformance.test_concurrent_updates_are_exact),
        (MergesPrefixesBackend, BackendConformance.test_clear_prefix_removes_exactly_the_prefix),
    ],
)
def test_the_suite_catches_broken_backends(
    backend_class: type[StorageBackend], check: Any, tmp_path: Path
) -> None:
    class Suite(BackendConformance):
        async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
            return backend_class()

    with pytest.raises(AssertionError):
        check(Suite(), "msgpack", tmp_path)
