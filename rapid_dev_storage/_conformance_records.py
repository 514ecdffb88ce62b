"""Conformance checks of clearing, groups and iteration: exactly the records asked for.

Part of `rapid_dev_storage.testing.BackendConformance` (a mixin, one concern of the suite).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import pytest

from ._api import Storage, StorageValue
from ._conformance_support import DISTINCT_KEYS, case, contents, distinct_records
from ._snapshots import INLINE_ENCODE
from ._types import NoValue
from .errors import InvalidKeyError


class RecordCases:
    """Checks that clears, listings and iteration touch exactly the records they name."""

    # --- order ---------------------------------------------------------------------------------

    @case
    async def test_a_write_made_first_lands_first(self, store: Storage) -> None:
        """Of two writes of one record, the one made later wins.

        Also when the earlier one is due to give the loop a turn and the later one, made after
        other work held the loop, is not.
        """
        group = store.get_group("order")
        await group["other"].set_value("x")

        async def race(first: Callable[[StorageValue], Awaitable[Any]], second: Any) -> Any:
            handle = group["k"]

            async def busy_reader() -> None:  # over a millisecond of reads: a turn comes due
                end = time.perf_counter() + 0.0015
                while time.perf_counter() < end:
                    await group["other"].get_value()

            async def loop_held() -> None:  # other work holding the loop for 3 ms
                end = time.perf_counter() + 0.003
                while time.perf_counter() < end:
                    pass

            await asyncio.gather(busy_reader(), first(handle), loop_held(), second(handle))
            return await handle.get_value()

        async def set_first(handle: StorageValue) -> None:
            await handle.set_value("first")

        async def set_second(handle: StorageValue) -> None:
            await handle.set_value("second")

        async def clear(handle: StorageValue) -> None:
            await handle.clear_value()

        async def bump(handle: StorageValue) -> None:
            await handle.update(lambda current: f"{current} bumped")

        for _ in range(3):
            assert await race(set_first, set_second) == "second"
            assert await race(set_first, clear) is NoValue
            assert await race(clear, set_second) == "second"
            assert await race(set_first, bump) == "first bumped"

    @case
    async def test_a_clear_of_many_records_keeps_its_place_among_writes(
        self, store: Storage
    ) -> None:
        """A clear of a group or prefix lands after the writes made before it, before later ones.

        Several writes in flight at once, so that a backend writing on several connections or
        threads would let one overtake the clear, or the clear overtake it.
        """
        group = store.get_group("order")
        records = [("p", str(index)) for index in range(8)]

        def set_all(value: str) -> list[asyncio.Future[None]]:
            return [asyncio.ensure_future(group[keys].set_value(value)) for keys in records]

        async def values() -> list[Any]:
            return [await group[keys].get_value() for keys in records]

        for clear in (group.clear_group, lambda: group.clear_prefix("p")):
            for _ in range(3):  # tasks start in the order they are made
                await asyncio.gather(*set_all("before"), asyncio.ensure_future(clear()))
                assert await values() == [NoValue] * len(records)
                await asyncio.gather(asyncio.ensure_future(clear()), *set_all("after"))
                assert await values() == ["after"] * len(records)

    @case
    async def test_a_large_write_made_first_lands_first(self, store: Storage) -> None:
        """A write of a large value (checked and encoded on a thread) lands before later writes.

        Later sets, clears, updates and clears of a prefix or the group, made while it encodes,
        wait for it; a large write cancelled while it encodes never lands.
        """
        group = store.get_group("order")
        large = "L" * (INLINE_ENCODE + 1)

        async def after_large(second: Callable[[StorageValue], Awaitable[Any]]) -> Any:
            handle = group["p", "k"]
            await asyncio.gather(handle.set_value(large), second(handle))
            return await handle.get_value()

        async def bump(handle: StorageValue) -> None:
            await handle.update(lambda current: current[:3] + " bumped")

        for _ in range(2):
            assert await after_large(lambda handle: handle.set_value("small")) == "small"
            assert await after_large(lambda handle: handle.clear_value()) is NoValue
            assert await after_large(bump) == "LLL bumped"
            assert await after_large(lambda _: group.clear_prefix("p")) is NoValue
            assert await after_large(lambda _: group.clear_group()) is NoValue
        handle = group["p", "k"]
        cancelled = asyncio.ensure_future(handle.set_value(large))
        await asyncio.sleep(0)  # under way: its snapshot is taken
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        await handle.set_value("after")
        assert await handle.get_value() == "after"

    # --- clearing -----------------------------------------------------------------------------

    @case
    async def test_clear_value(self, store: Storage) -> None:
        """Clearing removes one record; clearing an absent one is fine; others stay."""
        group = store.get_group("G")
        await group["a"].set_value(1)
        await group["a", "b"].set_value(2)
        await group["a"].clear_value()
        await group["a"].clear_value()
        await group["never"].clear_value()
        assert await contents(group) == {("a", "b"): 2}

    @case
    async def test_clear_prefix_removes_exactly_the_prefix(self, store: Storage) -> None:
        """clear_prefix(p) removes records whose keys start with p, and nothing else."""
        group = await distinct_records(store)
        await store.get_group("other")["a"].set_value("other group")
        await group.clear_prefix("a", "")
        expected = {keys: list(keys) for keys in DISTINCT_KEYS if keys[:2] != ("a", "")}
        assert await contents(group) == expected
        await group.clear_prefix("a")
        expected = {keys: value for keys, value in expected.items() if keys[0] != "a"}
        assert await contents(group) == expected
        assert await store.get_group("other")["a"].get_value() == "other group"
        with pytest.raises(InvalidKeyError):
            await group.clear_prefix()
        assert await contents(group) == expected

    @case
    async def test_clear_group(self, store: Storage) -> None:
        """clear_group empties one group; the group disappears from list_groups."""
        await store.get_group("A")["k"].set_value(1)
        await store.get_group("A")["k", "l"].set_value(2)
        await store.get_group("B")["k"].set_value(3)
        await store.get_group("A").clear_group()
        assert await contents(store.get_group("A")) == {}
        assert await store.get_group("B")["k"].get_value() == 3
        assert await store.list_groups() == ["B"]
        await store.get_group("never").clear_group()

    # --- groups and iteration -----------------------------------------------------------------

    @case
    async def test_groups_are_separate(self, store: Storage) -> None:
        """The same keys in two groups are two records."""
        names = ["USER", "user", "main store", "ключи", "a/b", "..", "G\x00"]
        for name in names:
            await store.get_group(name)["k"].set_value(name)
        for name in names:
            assert await store.get_group(name)["k"].get_value() == name
        assert await store.list_groups() == sorted(names)

    @case
    async def test_all_items_by_prefix(self, store: Storage) -> None:
        """all_items() yields the whole group; all_items(*p) the records starting with p."""
        group = await distinct_records(store)
        await store.get_group("H")["a"].set_value("elsewhere")
        everything = {keys: list(keys) for keys in DISTINCT_KEYS}
        assert await contents(group) == everything
        assert {keys: value async for keys, value in group} == everything
        prefixes = {keys[:width] for keys in DISTINCT_KEYS for width in range(1, len(keys) + 1)}
        prefixes |= {("zz",), ("a", "b", "c", "d", "e")}
        for prefix in prefixes:
            expected = {k: v for k, v in everything.items() if k[: len(prefix)] == prefix}
            assert await contents(group, *prefix) == expected, prefix

    @case
    async def test_all_items_streams_many_records(self, store: Storage) -> None:
        """Thousands of records are each yielded once, even while the group is being written."""
        group = store.get_group("many")
        for i in range(1_500):
            await group[f"{i:05}", "x"].set_value(i)
        seen = set()
        async for keys, value in group.all_items():
            assert keys not in seen
            seen.add(keys)
            assert value == int(keys[0])
            await group[keys].set_value(value)  # rewriting seen records must not repeat them
        assert len(seen) == 1_500
        assert len(await contents(group, "00042")) == 1

    @case
    async def test_list_groups(self, store: Storage) -> None:
        """list_groups names the groups holding records, sorted."""
        assert await store.list_groups() == []
        for name in ("b", "a", "c"):
            await store.get_group(name)["k"].set_value(None)
        assert await store.list_groups() == ["a", "b", "c"]
        await store.get_group("b")["k"].clear_value()
        assert await store.list_groups() == ["a", "c"]
