"""Conformance checks of values and keys: exact round trips, refusals, look-alike keys.

Part of `rapid_dev_storage.testing.BackendConformance` (a mixin, one concern of the suite).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from ._api import Storage
from ._conformance_support import (
    BAD_VALUES,
    DISTINCT_KEYS,
    as_stored,
    case,
    contents,
    same,
    snapshot,
)
from ._types import NoValue
from ._value_fits import INT_MAX, INT_MIN
from .errors import InvalidKeyError, InvalidNameError, InvalidValueError


class ValueCases:
    """Checks that values come back exactly and keys name exactly one record."""

    # --- values -------------------------------------------------------------------------------

    @case
    async def test_missing_value_is_novalue(self, store: Storage) -> None:
        """An absent value reads as NoValue (falsy), or as the default given."""
        handle = store.get_group("G")["missing"]
        assert await handle.get_value() is NoValue
        assert not NoValue
        assert await handle.get_value(default=5) == 5
        assert await handle.get_value(None) is None

    @case
    async def test_stored_none_is_not_novalue(self, store: Storage) -> None:
        """A stored None is a value; clearing it gives NoValue back."""
        handle = store.get_group("G")["k"]
        await handle.set_value(None)
        assert await handle.get_value() is None
        assert await handle.get_value(default=5) is None
        assert await contents(store.get_group("G")) == {("k",): None}
        await handle.clear_value()
        assert await handle.get_value() is NoValue

    @case
    async def test_values_round_trip_exactly(self, store: Storage) -> None:
        """Every supported type comes back as itself; tuples come back as lists."""
        codec = store.backend.codec
        scalars = (None, True, False, 0, 1, -1, INT_MIN, INT_MAX, 1.5, -0.0, 1e308, 5e-324)
        texts = ("", "héllo ✓ 🔑", "\x00\n\t\"'\\", "x" * 100_000)
        nested = ([1, [2, [3, []]]], (1, (2, "x")), {"a": {"b": {"c": [None, True, 1.0]}}})
        samples: list[Any] = [*scalars, *texts, [], {}, *nested, {"": 1, "é": 2, "0": 3}]
        samples.append(list(range(10_000)))
        if codec.allows_bytes:
            samples += [b"", b"\x00\xff", {"blob": b"abc"}]
        if codec.allows_non_finite:
            samples += [math.inf, -math.inf, math.nan]
        group = store.get_group("values")
        for index, value in enumerate(samples):
            await group[str(index)].set_value(value)
        for index, value in enumerate(samples):
            got = await group[str(index)].get_value()
            assert same(got, as_stored(value)), f"sample {index}: stored {value!r}, got {got!r}"

    @case
    async def test_returned_values_are_copies(self, store: Storage) -> None:
        """Mutating a value after set_value, or one get_value returned, changes nothing stored."""
        handle = store.get_group("G")["k"]
        value = {"list": [1, 2]}
        await handle.set_value(value)
        value["list"].append(3)
        got = await handle.get_value()
        assert got == {"list": [1, 2]}
        got["list"].append(4)
        assert await handle.get_value() == {"list": [1, 2]}

    @case
    async def test_bad_values_are_refused_and_nothing_changes(self, store: Storage) -> None:
        """Unstorable values raise InvalidValueError from set_value; stored data is untouched."""
        group = store.get_group("G")
        await group["k"].set_value("original")
        await group["other"].set_value(1)
        before = await snapshot(store)
        bad = list(BAD_VALUES)
        codec = store.backend.codec
        if not codec.allows_bytes:
            bad.append(("bytes", lambda: {"a": b"x"}))
        if not codec.allows_non_finite:
            bad += [("nan", lambda: [math.nan]), ("infinity", lambda: {"x": -math.inf})]
        for label, make in bad:
            for handle in (group["k"], group["new"]):
                with pytest.raises(InvalidValueError) as caught:
                    await handle.set_value(make())
                assert isinstance(caught.value, (TypeError, ValueError)), label
                assert "G" in str(caught.value), f"{label}: message should name the group"
                with pytest.raises(InvalidValueError):
                    await handle.update(lambda _current: make())  # noqa: B023  # awaited at once
        assert await snapshot(store) == before
        assert await group["new"].get_value() is NoValue

    @case
    async def test_large_values(self, store: Storage) -> None:
        """A value of a few megabytes is stored and read back whole."""
        value = {"text": "é" * 1_000_000, "items": [{"i": i} for i in range(20_000)]}
        handle = store.get_group("big")["one"]
        await handle.set_value(value)
        assert await handle.get_value() == value

    # --- keys ---------------------------------------------------------------------------------

    @case
    async def test_one_to_five_keys(self, store: Storage) -> None:
        """Records have 1 to 5 keys; each length is its own record."""
        group = store.get_group("G")
        for count in range(1, 6):
            keys = tuple(f"k{i}" for i in range(count))
            await group[keys].set_value(count)
        for count in range(1, 6):
            handle = group[tuple(f"k{i}" for i in range(count))]
            assert handle.keys == tuple(f"k{i}" for i in range(count))
            assert await handle.get_value() == count
        assert len(await contents(group)) == 5

    @case
    async def test_single_str_is_one_key(self, store: Storage) -> None:
        """group["abc"] is the key ("abc",), never ("a", "b", "c")."""
        group = store.get_group("G")
        assert group["abc"].keys == ("abc",)
        await group["abc"].set_value(1)
        assert await group[("abc",)].get_value() == 1
        assert await group["a", "b", "c"].get_value() is NoValue

    @case
    async def test_similar_keys_are_distinct_records(self, store: Storage) -> None:
        """Separators, empty keys, case, NUL and Unicode normal forms never merge records."""
        group = store.get_group("G")
        for index, keys in enumerate(DISTINCT_KEYS):
            await group[keys].set_value(index)
        for index, keys in enumerate(DISTINCT_KEYS):
            assert await group[keys].get_value() == index, keys
        assert await contents(group) == {keys: i for i, keys in enumerate(DISTINCT_KEYS)}

    @case
    async def test_overwrite_replaces(self, store: Storage) -> None:
        """Setting a value again replaces it, for every key count (the original added a row)."""
        group = store.get_group("G")
        for count in range(1, 6):
            handle = group[tuple("k" * (i + 1) for i in range(count))]
            await handle.set_value("first")
            await handle.set_value("second")
            await handle.set_value(["third"])
            assert await handle.get_value() == ["third"]
        assert sorted(map(len, await contents(group))) == [1, 2, 3, 4, 5]

    @case
    async def test_bad_keys_are_refused(self, store: Storage) -> None:
        """Not 1-5 str keys: InvalidKeyError naming the problem, and nothing is written."""
        group = store.get_group("G")
        await group["k"].set_value(1)
        before = await snapshot(store)
        bad: list[tuple[Any, str]] = [
            ((), "1 to 5"),
            (("a",) * 6, "got 6"),
            (1, "int"),
            (("a", 2), "key 1"),
            (("a", None), "NoneType"),
            (["a"], "list"),
            (("a", b"b"), "bytes"),
            (("\ud800",), "surrogate"),
        ]
        for keys, hint in bad:
            with pytest.raises(InvalidKeyError) as caught:
                group[keys]  # indexing alone must raise
            assert hint in str(caught.value), (keys, str(caught.value))
            assert isinstance(caught.value, ValueError)
        backend = store.backend
        with pytest.raises(InvalidKeyError):
            await backend.write_data("G", value=1)
        with pytest.raises(InvalidKeyError):
            await backend.write_data("G", "a", 2, value=1)  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            await backend.get_data("G", *("a",) * 6)
        with pytest.raises(InvalidKeyError):
            await backend.clear_by_keys("G")
        assert await snapshot(store) == before

    @case
    async def test_bad_group_names_are_refused(self, store: Storage) -> None:
        """Group names are non-empty str: InvalidNameError otherwise, and nothing is written."""
        for name in ("", 5, None, b"G", "\udc80"):
            with pytest.raises(InvalidNameError):
                store.get_group(name)  # type: ignore[arg-type]
        with pytest.raises(InvalidNameError):
            await store.backend.write_data("", "k", value=1)
        assert await store.list_groups() == []
