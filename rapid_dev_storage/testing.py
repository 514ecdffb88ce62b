"""The conformance suite every backend passes, shipped so that your own backend can run it too.

Subclass `BackendConformance` in a test module (the class name must start with ``Test``) and
implement `BackendConformance.open_backend`::

    class TestMyBackend(BackendConformance):
        codecs = ("msgpack", "json")

        async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
            return await MyBackend.create_backend_instance(directory, "suite", 1, codec=codec)

pytest then runs every check once per codec. The suite needs pytest and hypothesis (the
``test`` extra) but no asyncio plugin: each check runs its own event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import math
import os
import shutil
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import Any, Awaitable, Callable, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ._api import Storage, StorageGroup
from ._backend import StorageBackend
from ._conformance_bad_day import BadDayCases
from ._conformance_bad_day import case as _case
from ._types import Keys, NoValue
from ._validate import INT_MAX, INT_MIN
from .errors import (
    InvalidKeyError,
    InvalidNameError,
    InvalidValueError,
    StorageError,
    StoreClosedError,
)

__all__ = ["BackendConformance", "storable_values"]

Case = Callable[[Any, Storage], Awaitable[None]]

# Key tuples that a naive encoding (joining with a separator, padding with "", normalising
# Unicode, folding case) would confuse. Every one must be its own record.
DISTINCT_KEYS: tuple[Keys, ...] = (
    ("a/b",),
    ("a", "b"),
    ("ab", ""),
    ("a",),
    ("a", ""),
    ("a", "", ""),
    ("", "a"),
    ("",),
    ("A",),
    ("a\x00b",),
    ("a:b",),
    ("a%3Ab",),
    ("a\\b",),
    ("..",),
    (".",),
    (unicodedata.normalize("NFC", "é"),),
    (unicodedata.normalize("NFD", "é"),),
    ("ключ", "键", "🔑"),
    ("a", "b", "c", "d", "e"),
    ("a", "b", "c", "d", ""),
)


class _Color(enum.IntEnum):
    RED = 1


def _self_containing_list() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


# Values no codec may accept, each with what makes it wrong.
BAD_VALUES: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("set", lambda: {1, 2}),
    ("datetime", lambda: datetime.datetime(2024, 1, 1)),  # any datetime is refused
    ("object", object),
    ("int dict key", lambda: {1: "a"}),
    ("nested int dict key", lambda: {"a": [{"b": {2: 3}}]}),
    ("too large int", lambda: INT_MAX + 1),
    ("too small int", lambda: INT_MIN - 1),
    ("IntEnum", lambda: _Color.RED),
    ("self-containing list", _self_containing_list),
    ("complex", lambda: 1j),
)


def storable_values(*, allow_bytes: bool, allow_non_finite: bool) -> st.SearchStrategy[Any]:
    """Hypothesis strategy for values a codec with these capabilities must round-trip."""
    scalars: st.SearchStrategy[Any] = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=INT_MIN, max_value=INT_MAX),
        st.floats(allow_nan=False, allow_infinity=allow_non_finite),
        st.text(max_size=8),
    )
    if allow_bytes:
        scalars = scalars | st.binary(max_size=8)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=4), children, max_size=4)
        ),
        max_leaves=12,
    )


def as_stored(value: Any) -> Any:
    """Return what reading ``value`` back gives: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [as_stored(item) for item in value]
    if isinstance(value, dict):
        return {key: as_stored(item) for key, item in value.items()}
    return value


def same(actual: Any, expected: Any) -> bool:
    """Return whether both are equal and of the same types throughout (``True`` is not ``1``)."""
    if type(actual) is not type(expected):
        return False
    if isinstance(actual, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(
            same(actual[key], expected[key]) for key in actual
        )
    if isinstance(actual, float) and math.isnan(actual):
        return math.isnan(expected)
    if isinstance(actual, float) and actual == 0.0:
        return math.copysign(1, actual) == math.copysign(1, expected)
    return bool(actual == expected)


async def contents(group: StorageGroup, *prefix: str) -> dict[Keys, Any]:
    """Return the group's records as a dict, checking that no key is yielded twice."""
    seen: dict[Keys, Any] = {}
    async for keys, value in group.all_items(*prefix):
        assert keys not in seen, f"all_items yielded {keys!r} twice"
        seen[keys] = value
    return seen


async def snapshot(store: Storage) -> dict[str, dict[Keys, Any]]:
    """Return every record of every group."""
    return {name: await contents(store.get_group(name)) for name in await store.list_groups()}


def _resources() -> tuple[int, int]:
    """Return the process's thread and open-file counts (file count 0 where /proc is missing)."""
    try:
        descriptors = len(os.listdir("/proc/self/fd"))
    except OSError:
        descriptors = 0
    return threading.active_count(), descriptors


class BackendConformance(BadDayCases):
    """Every behaviour the `StorageBackend` contract promises, as pytest tests."""

    codecs: ClassVar[tuple[str, ...]] = ("msgpack", "json")
    """Codec names each check runs with; each is passed to `open_backend`."""

    model_examples: ClassVar[int] = 40
    """Examples for the stateful comparison with a dict model."""

    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        """Return a new, empty backend using ``codec``; ``directory`` is yours to use."""
        raise NotImplementedError("subclasses of BackendConformance implement open_backend()")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run each check once per codec in `codecs`."""
        if "codec" in metafunc.fixturenames:
            metafunc.parametrize("codec", self.codecs)

    def run_case(self, body: Case, codec: str, directory: Path) -> None:
        """Run one check against a fresh store in its own event loop, closing it afterwards."""

        async def main() -> None:
            store = Storage(await self.open_backend(codec, directory))
            try:
                await body(self, store)
            finally:
                await store.close()

        before = _resources()
        asyncio.run(main())
        assert _resources() == before, "the store leaked threads or file descriptors"

    # --- values -------------------------------------------------------------------------------

    @_case
    async def test_missing_value_is_novalue(self, store: Storage) -> None:
        """An absent value reads as NoValue (falsy), or as the default given."""
        handle = store.get_group("G")["missing"]
        assert await handle.get_value() is NoValue
        assert not NoValue
        assert await handle.get_value(default=5) == 5
        assert await handle.get_value(None) is None

    @_case
    async def test_stored_none_is_not_novalue(self, store: Storage) -> None:
        """A stored None is a value; clearing it gives NoValue back."""
        handle = store.get_group("G")["k"]
        await handle.set_value(None)
        assert await handle.get_value() is None
        assert await handle.get_value(default=5) is None
        assert await contents(store.get_group("G")) == {("k",): None}
        await handle.clear_value()
        assert await handle.get_value() is NoValue

    @_case
    async def test_values_round_trip_exactly(self, store: Storage) -> None:
        """Every supported type comes back as itself; tuples come back as lists."""
        codec = store.backend.codec
        samples: list[Any] = [
            None, True, False, 0, 1, -1, INT_MIN, INT_MAX, 1.5, -0.0, 1e308, 5e-324,
            "", "héllo ✓ 🔑", "\x00\n\t\"'\\", "x" * 100_000,
            [], {}, [1, [2, [3, []]]], (1, (2, "x")), {"a": {"b": {"c": [None, True, 1.0]}}},
            {"": 1, "é": 2, "0": 3}, list(range(10_000)),
        ]  # fmt: skip
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

    @_case
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

    @_case
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

    @_case
    async def test_large_values(self, store: Storage) -> None:
        """A value of a few megabytes is stored and read back whole."""
        value = {"text": "é" * 1_000_000, "items": [{"i": i} for i in range(20_000)]}
        handle = store.get_group("big")["one"]
        await handle.set_value(value)
        assert await handle.get_value() == value

    # --- keys ---------------------------------------------------------------------------------

    @_case
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

    @_case
    async def test_single_str_is_one_key(self, store: Storage) -> None:
        """group["abc"] is the key ("abc",), never ("a", "b", "c")."""
        group = store.get_group("G")
        assert group["abc"].keys == ("abc",)
        await group["abc"].set_value(1)
        assert await group[("abc",)].get_value() == 1
        assert await group["a", "b", "c"].get_value() is NoValue

    @_case
    async def test_similar_keys_are_distinct_records(self, store: Storage) -> None:
        """Separators, empty keys, case, NUL and Unicode normal forms never merge records."""
        group = store.get_group("G")
        for index, keys in enumerate(DISTINCT_KEYS):
            await group[keys].set_value(index)
        for index, keys in enumerate(DISTINCT_KEYS):
            assert await group[keys].get_value() == index, keys
        assert await contents(group) == {keys: i for i, keys in enumerate(DISTINCT_KEYS)}

    @_case
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

    @_case
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

    @_case
    async def test_bad_group_names_are_refused(self, store: Storage) -> None:
        """Group names are non-empty str: InvalidNameError otherwise, and nothing is written."""
        for name in ("", 5, None, b"G", "\udc80"):
            with pytest.raises(InvalidNameError):
                store.get_group(name)  # type: ignore[arg-type]
        with pytest.raises(InvalidNameError):
            await store.backend.write_data("", "k", value=1)
        assert await store.list_groups() == []

    # --- clearing -----------------------------------------------------------------------------

    @_case
    async def test_clear_value(self, store: Storage) -> None:
        """Clearing removes one record; clearing an absent one is fine; others stay."""
        group = store.get_group("G")
        await group["a"].set_value(1)
        await group["a", "b"].set_value(2)
        await group["a"].clear_value()
        await group["a"].clear_value()
        await group["never"].clear_value()
        assert await contents(group) == {("a", "b"): 2}

    @_case
    async def test_clear_prefix_removes_exactly_the_prefix(self, store: Storage) -> None:
        """clear_prefix(p) removes records whose keys start with p, and nothing else."""
        group = store.get_group("G")
        for keys in DISTINCT_KEYS:
            await group[keys].set_value(list(keys))
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

    @_case
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

    @_case
    async def test_groups_are_separate(self, store: Storage) -> None:
        """The same keys in two groups are two records."""
        names = ["USER", "user", "main store", "ключи", "a/b", "..", "G\x00"]
        for name in names:
            await store.get_group(name)["k"].set_value(name)
        for name in names:
            assert await store.get_group(name)["k"].get_value() == name
        assert await store.list_groups() == sorted(names)

    @_case
    async def test_all_items_by_prefix(self, store: Storage) -> None:
        """all_items() yields the whole group; all_items(*p) the records starting with p."""
        group = store.get_group("G")
        for keys in DISTINCT_KEYS:
            await group[keys].set_value(list(keys))
        await store.get_group("H")["a"].set_value("elsewhere")
        everything = {keys: list(keys) for keys in DISTINCT_KEYS}
        assert await contents(group) == everything
        assert {keys: value async for keys, value in group} == everything
        prefixes = {keys[:width] for keys in DISTINCT_KEYS for width in range(1, len(keys) + 1)}
        prefixes |= {("zz",), ("a", "b", "c", "d", "e")}
        for prefix in prefixes:
            expected = {k: v for k, v in everything.items() if k[: len(prefix)] == prefix}
            assert await contents(group, *prefix) == expected, prefix

    @_case
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

    @_case
    async def test_list_groups(self, store: Storage) -> None:
        """list_groups names the groups holding records, sorted."""
        assert await store.list_groups() == []
        for name in ("b", "a", "c"):
            await store.get_group(name)["k"].set_value(None)
        assert await store.list_groups() == ["a", "b", "c"]
        await store.get_group("b")["k"].clear_value()
        assert await store.list_groups() == ["a", "c"]

    # --- update -------------------------------------------------------------------------------

    @_case
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

    @_case
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

    @_case
    async def test_concurrent_updates_are_exact(self, store: Storage) -> None:
        """200 concurrent increments of one key, each yielding mid-update, count exactly 200."""
        handle = store.get_group("G")["counter"]

        async def increment(current: Any) -> int:
            await asyncio.sleep(0)  # give every other task the chance to interleave
            return (0 if current is NoValue else current) + 1

        results = await asyncio.gather(*(handle.update(increment) for _ in range(200)))
        assert sorted(results) == list(range(1, 201))
        assert await handle.get_value() == 200

    @_case
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

    @_case
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

    # --- model --------------------------------------------------------------------------------

    def test_matches_a_dict_model(self, codec: str) -> None:
        """Random sequences of every operation leave the store equal to a plain dict."""
        suite = self

        class Model(_DictModel):
            def __init__(self) -> None:
                super().__init__(suite, codec)

        run_state_machine_as_test(
            Model,
            settings=settings(
                max_examples=self.model_examples,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


_KEY_PARTS = st.sampled_from(["", "a", "b", "a/b", "é"])
_KEYS = st.lists(_KEY_PARTS, min_size=1, max_size=5).map(tuple)
_GROUPS = st.sampled_from(["G", "H"])


class _DictModel(RuleBasedStateMachine):
    """A store and a dict put through the same operations must always agree."""

    records = Bundle("records")

    def __init__(self, suite: BackendConformance, codec: str) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="rds-model-"))
        self.loop = asyncio.new_event_loop()
        self.store = Storage(
            self.loop.run_until_complete(suite.open_backend(codec, self.directory))
        )
        self.model: dict[tuple[str, Keys], Any] = {}
        codec_object = self.store.backend.codec
        self.values = storable_values(
            allow_bytes=codec_object.allows_bytes, allow_non_finite=codec_object.allows_non_finite
        )

    def run(self, awaitable: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(awaitable)

    @rule(target=records, group=_GROUPS, keys=_KEYS, data=st.data())
    def set_value(self, group: str, keys: Keys, data: st.DataObject) -> tuple[str, Keys]:
        value = data.draw(self.values)
        self.run(self.store.get_group(group)[keys].set_value(value))
        self.model[group, keys] = as_stored(value)
        return group, keys

    @rule(record=records)
    def get_value(self, record: tuple[str, Keys]) -> None:
        group, keys = record
        got = self.run(self.store.get_group(group)[keys].get_value())
        expected = self.model.get(record, NoValue)
        assert got is NoValue if expected is NoValue else same(got, expected)

    @rule(record=records)
    def clear_value(self, record: tuple[str, Keys]) -> None:
        group, keys = record
        self.run(self.store.get_group(group)[keys].clear_value())
        self.model.pop(record, None)

    @rule(record=records)
    def increment(self, record: tuple[str, Keys]) -> None:
        group, keys = record

        def bump(current: Any) -> Any:
            return current + 1 if type(current) is int and current < INT_MAX else 0

        result = self.run(self.store.get_group(group)[keys].update(bump))
        self.model[record] = bump(self.model.get(record, NoValue))
        assert result == self.model[record]

    @rule(group=_GROUPS, keys=_KEYS, width=st.integers(min_value=1, max_value=5))
    def clear_prefix(self, group: str, keys: Keys, width: int) -> None:
        prefix = keys[:width]
        self.run(self.store.get_group(group).clear_prefix(*prefix))
        for record in [r for r in self.model if r[0] == group and r[1][: len(prefix)] == prefix]:
            del self.model[record]

    @rule(group=_GROUPS)
    def clear_group(self, group: str) -> None:
        self.run(self.store.get_group(group).clear_group())
        for record in [r for r in self.model if r[0] == group]:
            del self.model[record]

    @rule(group=_GROUPS, keys=_KEYS, width=st.integers(min_value=0, max_value=5))
    def iterate_prefix(self, group: str, keys: Keys, width: int) -> None:
        prefix = keys[:width]
        got = self.run(contents(self.store.get_group(group), *prefix))
        expected = {
            k: v for (g, k), v in self.model.items() if g == group and k[: len(prefix)] == prefix
        }
        assert got.keys() == expected.keys()
        assert all(same(got[k], expected[k]) for k in got)

    @invariant()
    def groups_agree(self) -> None:
        assert self.run(self.store.list_groups()) == sorted({g for g, _ in self.model})

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)
