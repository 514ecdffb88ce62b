"""Large values: checked and encoded off the event loop, from a snapshot taken at the call.

`_coding.INLINE_ENCODE` is lowered here so that small values take the large path (a thread)
too: the same errors, paths and bytes at both sizes, whatever the caller does to its value
meanwhile.
"""

from __future__ import annotations

import asyncio
import copy
import math
import threading
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rapid_dev_storage._coding as coding
from rapid_dev_storage import FileBackend, MemoryBackend, SQLiteBackend, Storage, StorageBackend
from rapid_dev_storage._codecs import JSONCodec, MsgpackCodec
from rapid_dev_storage._value_fits import INT_MAX, INT_MIN, MAX_DEPTH
from rapid_dev_storage.errors import InvalidValueError

KINDS = [(kind, codec) for kind in ("memory", "file", "sqlite") for codec in ("msgpack", "json")]


def rows(count: int) -> dict[str, Any]:
    return {
        f"r{index:06}": {"id": index, "name": f"u{index}", "tags": ("a", "b"), "score": 0.5}
        for index in range(count)
    }


async def open_backend(kind: str, codec: str, path: Path) -> StorageBackend:
    if kind == "file":
        return await FileBackend.create_backend_instance(path, "large", 1, codec=codec)
    if kind == "sqlite":
        return await SQLiteBackend.create_backend_instance(path / "db", "large", 1, codec=codec)
    return MemoryBackend(codec=codec)


@pytest.fixture(params=KINDS, ids=["-".join(kind) for kind in KINDS])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    kind, codec = request.param
    async with Storage(await open_backend(kind, codec, tmp_path)) as opened:
        yield opened


@pytest.fixture
def small_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values over 2 KB of msgpack take the large path: checked and encoded on a thread."""
    monkeypatch.setattr(coding, "INLINE_ENCODE", 2048)


def as_stored(value: Any) -> Any:
    """``value`` as a read returns it: tuples come back as lists."""
    if isinstance(value, dict):
        return {key: as_stored(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_stored(item) for item in value]
    return value


async def test_a_large_value_is_checked_and_encoded_on_a_thread(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40,000 rows (over 1.5 MiB): the check and the codec's encode run off the loop's thread."""
    loop_thread = threading.get_ident()
    threads: list[tuple[str, int]] = []
    real_fits, real_dumps = coding.value_fits, JSONCodec.dumps

    def fits(value: Any, *args: Any, **kwargs: Any) -> bool:
        if type(value) is dict and len(value) > 1000:
            threads.append(("check", threading.get_ident()))
        return real_fits(value, *args, **kwargs)

    def dumps(self: JSONCodec, value: Any) -> bytes:
        if len(str(value)[:100_000]) == 100_000:
            threads.append(("encode", threading.get_ident()))
        return real_dumps(self, value)

    monkeypatch.setattr(coding, "value_fits", fits)
    assert len(coding.SNAPSHOTS.dumps(rows(40_000))) > coding.INLINE_ENCODE
    monkeypatch.setattr(JSONCodec, "dumps", dumps)
    value = rows(40_000)
    handle = store.get_group("g")["big"]
    await handle.set_value(value)
    await handle.update(lambda current: {**current, "extra": 1})
    assert threads
    assert all(thread != loop_thread for _, thread in threads), threads
    assert ("encode" in {what for what, _ in threads}) == (store.backend.codec.name == "json")
    stored = await handle.get_value()
    assert len(stored) == 40_001
    assert stored["r039999"] == as_stored(value["r039999"])


class Level(int):
    pass


@pytest.mark.parametrize(
    "bad", [Level(3), INT_MAX + 1, "\ud800"], ids=["subclass", "int", "surrogate"]
)
async def test_a_large_value_the_snapshot_refuses_is_named_on_a_thread(
    store: Storage, monkeypatch: pytest.MonkeyPatch, bad: Any
) -> None:
    """The walk naming the refused part of 40,000 rows runs off the loop (it held it ~1 s at
    300,000); a small refused value is still named where the write is made."""
    loop_thread = threading.get_ident()
    named_on: list[int] = []
    real_check = coding.check_value

    def check(value: Any, **options: Any) -> None:
        named_on.append(threading.get_ident())
        real_check(value, **options)

    monkeypatch.setattr(coding, "check_value", check)
    handle = store.get_group("g")["k"]
    await handle.set_value("kept")
    for count, where in ((40_000, "off"), (10, "on")):
        value = rows(count)
        last = f"r{count - 1:06d}"
        value[last]["bad"] = bad
        named_on.clear()
        with pytest.raises(InvalidValueError) as caught:
            await handle.set_value(value)
        assert caught.value.path is not None
        assert caught.value.path.startswith(f"value[{last!r}]['bad']")
        assert named_on
        assert all((thread == loop_thread) == (where == "on") for thread in named_on), where
        with pytest.raises(InvalidValueError):
            await handle.update(lambda current, value=value: value)  # type: ignore[misc]
    assert await handle.get_value() == "kept"


@pytest.mark.usefixtures("small_inline")
async def test_the_value_stored_is_the_value_at_the_call(store: Storage) -> None:
    """Another task mutating the caller's value while it is encoded changes nothing stored."""
    value = rows(2_000)
    at_call = copy.deepcopy(value)
    handle = store.get_group("g")["k"]
    stop = False

    async def mutator() -> None:
        number = 0
        while not stop:
            value[f"new{number}"] = {"n": number}
            value.setdefault("r000001", {})["name"] = f"changed {number}"
            value.pop(f"r{number:06}", None)
            value.setdefault("r000002", {})["tags"] = [number]
            number += 1
            await asyncio.sleep(0)

    setting = asyncio.ensure_future(handle.set_value(value))  # runs first: the call
    running = asyncio.ensure_future(mutator())
    await asyncio.sleep(0)
    value.clear()
    await setting
    stop = True
    await running
    assert await handle.get_value() == as_stored(at_call)


@pytest.mark.usefixtures("small_inline")
async def test_an_update_stores_the_value_its_function_returned(store: Storage) -> None:
    value = rows(1_000)
    at_return = copy.deepcopy(value)
    handle = store.get_group("g")["k"]
    updating = asyncio.ensure_future(handle.update(lambda current: value))
    for _ in range(5):
        await asyncio.sleep(0)
        value.pop(next(iter(value)), None)
    await updating
    assert await handle.get_value() == as_stored(at_return)


@pytest.mark.usefixtures("small_inline")
async def test_a_refused_large_value_writes_nothing(store: Storage) -> None:
    group = store.get_group("g")
    await group["k"].set_value("before")
    bad = rows(1_000)
    bad["r000500"]["score"] = {1: "int key"}
    with pytest.raises(InvalidValueError) as caught:
        await group["k"].set_value(bad)
    assert caught.value.path == "value['r000500']['score']"
    assert "dict key 1 is int" in str(caught.value)
    assert await group["k"].get_value() == "before"


# --- the same refusals, messages and paths as the check made on the loop --------------------


class StrSub(str):
    pass


class IntSub(int):
    pass


class FloatSub(float):
    pass


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT_MIN - 2, max_value=INT_MAX + 2),
    st.sampled_from([INT_MIN, INT_MIN - 1, INT_MAX, INT_MAX + 1, 2**63 - 1, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["\ud800", "a\udfffb", StrSub("sub"), IntSub(3), FloatSub(1.5), b"bytes"]),
    st.sampled_from([bytearray(b"ba"), memoryview(b"mv")]),
    st.binary(max_size=4),
    st.sampled_from([object(), {1, 2}, math.inf, -math.nan]),
)
KEYS = st.one_of(
    st.text(max_size=4),
    st.sampled_from([1, None, 2.5, True, b"k", (1, 2), ("a", ("b",)), "\udc80", StrSub("k")]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(KEYS, inner, max_size=4),
    ),
    max_leaves=12,
)
EDGES = [nested(MAX_DEPTH - 1), nested(MAX_DEPTH), nested(MAX_DEPTH + 1), nested(600)]


def outcome(backend: StorageBackend, encode: Any) -> tuple[str, Any]:
    try:
        return "stored", encode()
    except InvalidValueError as exc:
        return "refused", (str(exc), exc.path, exc.group, exc.keys)


def both_paths(backend: StorageBackend, value: Any) -> None:
    """The inline check (the reference) and the thread's path agree on ``value``."""
    keys = ("k",)
    expected = outcome(backend, lambda: coding.RecordCoding._encode(backend, "g", keys, value))
    default = coding.INLINE_ENCODE
    for large in (False, True):
        inline = 0 if large else 10**12
        coding.INLINE_ENCODE = inline
        try:
            found = outcome(backend, lambda: backend._encode_at_call("g", keys, value))
            snapshot = found[1]
            if isinstance(snapshot, coding.LargeValue):
                assert large
                found = outcome(backend, lambda: backend._encode_large("g", keys, snapshot))  # noqa: B023  (called at once)
        finally:
            coding.INLINE_ENCODE = default
        assert found == expected, (large, value)


ODD = [
    {"a": (1, [2.5, None]), "b": b"x", "c": {"d": "\u00e9"}},
    {1: "int key"},
    {"k": {(1, 2): "tuple key"}},
    [StrSub("sub")],
    {"f": math.nan, "i": INT_MAX + 1},
    ["ok", "\ud800"],
    {"ba": bytearray(b"x"), "mv": [memoryview(b"y")]},
    *EDGES,
]


@settings(max_examples=300, deadline=None)
@given(value=VALUES, padded=st.booleans(), codec=st.sampled_from(["msgpack", "json"]))
def test_both_paths_refuse_alike(value: Any, padded: bool, codec: str) -> None:
    """Random values, small and padded to a large one: same bytes, or same error and path."""
    if padded:
        value = {"pad": "p" * 5000, "rows": [value] * 50}
    both_paths(MemoryBackend(codec=codec), value)


@pytest.mark.parametrize("codec", ["msgpack", "json"])
async def test_file_records_refuse_alike(tmp_path: Path, codec: str) -> None:
    backend = await FileBackend.create_backend_instance(tmp_path, "s", 1, codec=codec)
    try:
        for value in ODD:
            both_paths(backend, value)
            both_paths(backend, {"pad": "p" * 5000, "odd": value})
            both_paths(MemoryBackend(codec=codec), {"pad": "p" * 5000, "odd": value})
    finally:
        await backend.close()


async def test_bytes_like_values_are_stored_as_bytes_at_any_size(store: Storage) -> None:
    """msgpack carries a bytearray or memoryview as it carries bytes (read back as bytes, as a
    tuple as a list), small or large; JSON refuses them at both sizes, naming the part."""
    handle = store.get_group("g")["k"]
    await handle.set_value("kept")
    json = store.backend.codec.name == "json"
    for count in (10, 40_000):
        value = rows(count)
        value["r000000"]["blob"] = [bytearray(b"ba"), memoryview(b"mv")]
        if json:
            with pytest.raises(InvalidValueError) as caught:
                await handle.set_value(value)
            assert caught.value.path == "value['r000000']['blob'][0]"
            assert "bytes cannot be stored by this codec" in str(caught.value)
            assert await handle.get_value() == "kept"
        else:
            await handle.set_value(value)
            assert (await handle.get_value())["r000000"]["blob"] == [b"ba", b"mv"]


def test_our_codecs_are_the_ones_snapshotted() -> None:
    """The snapshot is msgpack's strict encoder: for msgpack stores the encoding itself."""
    value = {"a": (1, [2.5, None]), "b": b"x"}
    assert coding.SNAPSHOTS.dumps(value) == MsgpackCodec().dumps(value)
