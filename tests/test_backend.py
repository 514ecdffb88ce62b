"""The backend contract: hooks all implemented or construction fails; public methods overridable."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _custom_backends import AuditedBackend, WithoutSwap, WithSwap
from _original_backend import OriginalStyleBackend

from rapid_dev_storage import (
    Keys,
    MemoryBackend,
    NoValue,
    Storage,
    StorageBackend,
    UnsupportedOperationError,
)
from rapid_dev_storage.testing import BackendConformance


async def test_overriding_public_methods_and_calling_super_keeps_the_contract() -> None:
    backend = AuditedBackend()
    async with Storage(backend) as store, store.watch("G") as changes:
        handle = store.get_group("G")["k"]
        await handle.set_value({"n": 1})
        assert await handle.get_value() == {"n": 1}
        await backend.write_data("G", "k", value={"n": 2})
        assert await backend.get_data("G", "k") == {"n": 2}
        # Handles go through the overrides too, and super() reaches the hooks: no recursion.
        assert backend.writes == [("G", ("k",), {"n": 1}), ("G", ("k",), {"n": 2})]
        assert backend.reads == [("G", ("k",)), ("G", ("k",))]
        assert await handle.update(lambda current: {"n": current["n"] + 1}) == {"n": 3}
        await handle.clear_value()
        seen = [await asyncio.wait_for(changes.__anext__(), 5) for _ in range(4)]
        assert [(c.kind, c.value, c.origin) for c in seen] == [
            ("set", {"n": 1}, "local"),
            ("set", {"n": 2}, "local"),
            ("set", {"n": 3}, "local"),
            ("cleared", NoValue, "local"),
        ]


def test_a_backend_missing_a_hook_fails_at_construction() -> None:
    with pytest.raises(UnsupportedOperationError) as caught:
        WithoutSwap()
    message = str(caught.value)
    assert "WithoutSwap" in message
    assert "_swap()" in message
    assert "implement" in message
    for present in ("_read()", "_write()", "_scan()", "_close()"):
        assert present not in message

    class OnlyRead(StorageBackend):
        async def _read(self, group: str, keys: Keys) -> bytes | None:
            return None

    with pytest.raises(UnsupportedOperationError, match=r"OnlyRead .*_write\(\), _swap\(\)"):
        OnlyRead()


async def test_a_class_adding_the_missing_hook_is_complete() -> None:
    async with Storage(WithSwap("json")) as store:
        assert store.backend.codec.name == "json"
        counter = store.get_group("G")["n"]
        await asyncio.gather(*(counter.update(lambda n: (n or 0) + 1) for _ in range(20)))
        assert await counter.get_value() == 20
        assert await store.list_groups() == ["G"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (WithoutSwap, r"WithoutSwap implements some of StorageBackend's hooks but not _swap\(\)"),
        (OriginalStyleBackend, r"OriginalStyleBackend implements none of StorageBackend's hooks"),
    ],
)
def test_the_suite_names_missing_hooks(make: Any, expected: str, tmp_path: Path) -> None:
    class Suite(BackendConformance):
        async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
            backend: StorageBackend = make()
            return backend

    with pytest.raises(pytest.fail.Exception, match=expected):
        Suite().test_implements_every_hook("msgpack", tmp_path)


def test_the_conformance_suite_passes_a_complete_backend(tmp_path: Path) -> None:
    class Suite(BackendConformance):
        async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
            return WithSwap(codec)

    Suite().test_implements_every_hook("json", tmp_path)


async def test_a_scan_of_large_records_holds_one_decoded_at_a_time_not_a_batch() -> None:
    """The policy decodes a scan's bytes a bounded part at a time: a batch of large records
    (256 of them from MemoryBackend) is not all decoded before the first is yielded."""
    backend = MemoryBackend()
    group = "G"
    large = "x" * (300 * 1024)  # over LARGE_RECORD: each decoded on a thread
    for index in range(8):
        await backend.write_data(group, f"k{index}", value=large)
    decoded: list[bytes] = []
    settled = backend._settled_record

    async def counted(*arguments: Any) -> Any:
        decoded.append(arguments[2])
        return await settled(*arguments)

    backend._settled_record = counted  # type: ignore[method-assign]
    records = backend.get_all_by_group(group)
    first = await records.__anext__()
    assert first[1] == large
    assert len(decoded) == 1  # not the eight of the batch
    rest = [record async for record in records]
    assert len(rest) == 7
    assert len(decoded) == 8
    await backend.close()
