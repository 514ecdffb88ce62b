"""Conformance checks of update, of closing, and that a backend implements every hook.

Part of `rapid_dev_storage.testing.BackendConformance` (a mixin, one concern of the suite).
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from ._api import Storage
from ._conformance_support import case, contents
from ._types import NoValue
from .errors import InvalidValueError, StorageError, StoreClosedError


class UpdateCases:
    """Checks that updates are atomic and exact, and that a closed store refuses work."""

    # --- update -------------------------------------------------------------------------------

    @case
    async def test_update(self, store: Storage) -> None:
        """Update gets the value or NoValue, stores and returns the result; NoValue clears."""
        handle = store.get_group("G")["counter"]
        seen: list[Any] = []

        def first(current: Any) -> int:
            seen.append(current)
            return 1

        assert await handle.update(first) == 1
        assert seen == [NoValue]

        async def add_async(current: int) -> int:
            await asyncio.sleep(0)
            return current + 10

        assert await handle.update(add_async) == 11
        assert await handle.get_value() == 11
        assert await handle.update(lambda current: NoValue) is NoValue
        assert await handle.get_value() is NoValue
        # Clearing what is not there: nothing to write, and nothing appears.
        assert await handle.update(lambda current: NoValue) is NoValue
        assert await contents(store.get_group("G")) == {}
        assert await handle.update(lambda current: (1, "two")) == (1, "two")
        assert await handle.get_value() == [1, "two"]

    @case
    async def test_failed_update_changes_nothing(self, store: Storage) -> None:
        """An update function that raises, or returns a bad value, leaves the value as it was."""
        handle = store.get_group("G")["k"]
        await handle.set_value({"n": 1})

        def explode(current: Any) -> Any:
            raise KeyError("boom")

        with pytest.raises(KeyError):
            await handle.update(explode)
        with pytest.raises(InvalidValueError):
            await handle.update(lambda current: {**current, "when": datetime.date(2024, 1, 1)})
        assert await handle.get_value() == {"n": 1}

    @case
    async def test_concurrent_updates_are_exact(self, store: Storage) -> None:
        """200 concurrent increments of one key, each yielding mid-update, count exactly 200."""
        handle = store.get_group("G")["counter"]

        async def increment(current: Any) -> int:
            await asyncio.sleep(0)  # give every other task the chance to interleave
            return (0 if current is NoValue else current) + 1

        results = await asyncio.gather(*(handle.update(increment) for _ in range(200)))
        assert sorted(results) == list(range(1, 201))
        assert await handle.get_value() == 200

    @case
    async def test_update_refuses_writing_its_own_record(self, store: Storage) -> None:
        """Inside its update function, writing or updating the same record fails loudly."""
        group = store.get_group("G")
        handle = group["k"]
        await handle.set_value(0)

        async def sets_itself(current: Any) -> Any:
            await handle.set_value(99)
            return current

        async def updates_itself(current: Any) -> Any:
            return await handle.update(lambda inner: inner)

        async def writes_another(current: Any) -> Any:
            await group["other"].set_value(current)
            return current + 1

        for fn in (sets_itself, updates_itself):
            with pytest.raises(StorageError, match="inside its own update"):
                await handle.update(fn)
        assert await handle.update(writes_another) == 1
        assert await group["other"].get_value() == 0

    # --- lifecycle ----------------------------------------------------------------------------

    @case
    async def test_closed_store_refuses_work(self, store: Storage) -> None:
        """After close, every operation raises StoreClosedError; closing again is harmless."""
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        await store.close()
        await store.close()
        for operation in (
            handle.get_value(),
            handle.set_value(2),
            handle.clear_value(),
            handle.update(lambda current: current),
            store.list_groups(),
            store.get_group("G").clear_group(),
        ):
            with pytest.raises(StoreClosedError):
                await operation
        with pytest.raises(StoreClosedError):
            await contents(store.get_group("G"))
