"""Promises kept on a bad day: malformed markers, hand-edited records, keys that lie.

Every backend's read path is checked by the conformance suite
(``test_reads_refuse_what_writes_refuse``); this module covers what is FileBackend's own (the
marker, the record's envelope) and the checks themselves.
"""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapid_dev_storage import (
    CorruptRecordError,
    FileBackend,
    IncompatibleStoreError,
    InvalidKeyError,
    InvalidValueError,
    JSONCodec,
    MsgpackCodec,
    Storage,
)
from rapid_dev_storage._conformance_bad_day import _LyingStr
from rapid_dev_storage._file import MARKER
from rapid_dev_storage._slices import LARGE_RECORD, collector_paused
from rapid_dev_storage._validate import (
    MAX_DEPTH,
    check_keys,
    check_store_name,
    check_value,
    unwritable_reason,
    value_fits,
)
from rapid_dev_storage.testing import BAD_VALUES, storable_values


async def open_store(path: Path, **options: Any) -> Storage:
    return Storage(await FileBackend.create_backend_instance(path, "app", 1, **options))


# --- the marker -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"codec": ["json"]}, "codec", "list ['json']"),
        ({"codec": ""}, "codec", "str ''"),
        ({"version": True}, "version", "bool True"),
        ({"version": -1}, "version", "-1"),
        ({"version": 0}, "version", "int 0"),
        ({"version": "1"}, "version", "str '1'"),
        ({"version": 1.0}, "version", "float 1.0"),
        ({"name": 5}, "name", "int 5"),
        ({"unique_identifier": None}, "unique_identifier", "NoneType None"),
        ({"format": "other"}, "format", "'other'"),
        ({"extension": ".msgpack"}, "extension", "'.msgpack'"),
        ({"extension": None}, "extension", "NoneType"),
    ],
)
async def test_every_malformed_marker_field_is_named(
    tmp_path: Path, change: dict[str, Any], field: str, hint: str
) -> None:
    async with await open_store(tmp_path, codec="json") as store:
        await store.get_group("G")["k"].set_value(1)
    marker_path = tmp_path / "app~1" / MARKER
    marker = json.loads(marker_path.read_text(encoding="utf-8"))
    marker_path.write_text(json.dumps({**marker, **change}), encoding="utf-8")
    for read_only in (False, True):
        with pytest.raises(IncompatibleStoreError) as caught:
            await open_store(tmp_path, read_only=read_only)
        message = str(caught.value)
        assert f'"{field}"' in message, message
        assert hint in message, message
        assert "expected" in message or "but codec" in message, message
        assert caught.value.field == field
        assert caught.value.location == str(marker_path)
        assert "newer" not in message


async def test_marker_missing_field_twice_or_not_an_object(tmp_path: Path) -> None:
    async with await open_store(tmp_path, codec="json") as store:
        await store.get_group("G")["k"].set_value(1)
    marker_path = tmp_path / "app~1" / MARKER
    marker = json.loads(marker_path.read_text(encoding="utf-8"))
    cases = [
        (json.dumps({k: v for k, v in marker.items() if k != "codec"}), 'field "codec" is missing'),
        (json.dumps(marker)[:-1] + ', "version": 1}', "'version' appears twice"),
        (json.dumps([marker]), "expected a JSON object"),
        ("\ufeff" + json.dumps({**marker, "version": None}), "NoneType None"),
        (b"\xff\xfe".decode("latin-1"), "does not decode as JSON"),
    ]
    for text, hint in cases:
        marker_path.write_text(text, encoding="utf-8")
        with pytest.raises(IncompatibleStoreError, match=hint):
            await open_store(tmp_path)
    marker_path.write_text(json.dumps({**marker, "version": 2}), encoding="utf-8")
    with pytest.raises(IncompatibleStoreError, match="newer than this rapid_dev_storage reads"):
        await open_store(tmp_path)


# --- records no write makes: FileBackend's envelope -------------------------------------------


async def test_record_envelope_with_a_field_twice_is_corrupt(tmp_path: Path) -> None:
    for codec in ("json", "msgpack"):
        root = tmp_path / codec
        async with await open_store(root, codec=codec) as store:
            handle = store.get_group("G")["k"]
            await handle.set_value({"v": 1})
            path = Path(store.backend.record_path("G", ("k",)))  # type: ignore[attr-defined]
            if codec == "json":
                path.write_text('{"keys": ["k"], "value": 1, "value": 2}\n', encoding="utf-8")
            else:  # a map header of three entries, "value" twice
                path.write_bytes(
                    b"\x83"
                    + msgpack.packb("keys")
                    + msgpack.packb(["k"])
                    + msgpack.packb("value")
                    + msgpack.packb(1)
                    + msgpack.packb("value")
                    + msgpack.packb(2)
                )
            with pytest.raises(CorruptRecordError) as caught:
                await handle.get_value()
            assert caught.value.location == str(path)
            assert "twice" in str(caught.value) or "each once" in str(caught.value)
            with pytest.raises(CorruptRecordError):
                await handle.update(lambda current: current)


async def test_record_keys_with_a_lone_surrogate_are_corrupt(tmp_path: Path) -> None:
    async with await open_store(tmp_path, codec="json") as store:
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        path = Path(store.backend.record_path("G", ("k",)))  # type: ignore[attr-defined]
        path.write_text('{"keys": ["\\ud800"], "value": 1}\n', encoding="utf-8")
        problems: list[CorruptRecordError] = []
        assert [
            item async for item in store.get_group("G").all_items(on_corrupt=problems.append)
        ] == []
        assert [error.location for error in problems] == [str(path)]


async def test_large_records_are_checked_too(tmp_path: Path) -> None:
    """Past LARGE_RECORD a record decodes in slices on a thread: the same rule applies."""
    async with await open_store(tmp_path, codec="json") as store:
        handle = store.get_group("G")["big"]
        await handle.set_value(["x" * 100] * (LARGE_RECORD // 50))
        path = Path(store.backend.record_path("G", ("big",)))  # type: ignore[attr-defined]
        text = path.read_text(encoding="utf-8")
        for bad in ('"bad": NaN', '"bad": 1e999', f'"bad": {2**64}', '"bad": "\\udfff"'):
            path.write_text(text.replace('"value": [', '"value": [{' + bad + "}, ", 1), "utf-8")
            with pytest.raises(CorruptRecordError) as caught:
                await handle.get_value()
            assert caught.value.location == str(path)


# --- the checks themselves --------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(
            storable_values(allow_bytes=True, allow_non_finite=True),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.sampled_from([math.nan, math.inf, b"x", {1: 2}, {b"k": 1}, {1, 2}, object()]),
        ),
        lambda children: st.lists(children, max_size=3) | st.tuples(children),
        max_leaves=8,
    ),
    st.booleans(),
    st.booleans(),
)
def test_fast_walk_agrees_with_the_reporting_walk(
    value: Any, allow_bytes: bool, allow_non_finite: bool
) -> None:
    """value_fits (no paths) says yes exactly when check_value (with paths) accepts."""
    options = {"allow_bytes": allow_bytes, "allow_non_finite": allow_non_finite}
    refusal: str | None = None
    try:
        check_value(value, **options)
    except InvalidValueError as error:
        refusal = str(error)
    assert value_fits(value, 0, allow_bytes, allow_non_finite) == (refusal is None)
    assert unwritable_reason(value, **options) == refusal


def test_bad_values_report_their_path() -> None:
    for label, make in BAD_VALUES:
        with pytest.raises(InvalidValueError) as caught:
            check_value({"a": [make()]}, allow_bytes=True, allow_non_finite=True)
        assert str(caught.value).startswith("value['a'][0]"), label
    deep: Any = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(InvalidValueError, match=f"nested deeper than {MAX_DEPTH}") as caught:
        check_value(deep, allow_bytes=True, allow_non_finite=True)
    assert len(str(caught.value)) < 200


class _LyingInt(int):
    def __repr__(self) -> str:
        return "not a number"

    __str__ = __repr__


def test_names_are_checked_as_plain_str() -> None:
    with pytest.raises(InvalidKeyError, match="surrogate"):
        check_keys((_LyingStr("\ud800"),))
    with pytest.raises(InvalidKeyError, match="surrogate"):
        check_keys(_LyingStr("ok\udfff"))
    assert type(check_keys(_LyingStr("ok"))[0]) is str
    with pytest.raises(ValueError, match="surrogate"):
        check_store_name(_LyingStr("a\ud800"), 1)
    with pytest.raises(ValueError, match="NUL"):
        check_store_name(_LyingStr("a\x00"), 1)
    assert check_store_name(_LyingStr("app"), _LyingInt(1)) == ("app", "1")


# --- the codecs on their own ------------------------------------------------------------------


def test_codecs_refuse_what_they_cannot_write_back() -> None:
    json_codec, msgpack_codec = JSONCodec(), MsgpackCodec()
    for text, hint in [
        (b"[NaN]", "NaN"),
        (b"[Infinity]", "Infinity"),
        (b"[1e400]", "too large"),
        (b"[-18446744073709551617]", "outside the storable range"),
        (b'{"a": {"b": 1, "b": 1}}', "'b' twice"),
        (b'["ok", "\\udfff"]', r"document\[1\]: a \\u escape"),
    ]:
        with pytest.raises(ValueError, match=hint):
            json_codec.loads(text)
    assert json_codec.loads(b'["\\ud83d\\ude00", 18446744073709551615]') == ["😀", 2**64 - 1]
    with pytest.raises(ValueError, match="ext type 3"):
        msgpack_codec.loads(msgpack.packb([msgpack.ExtType(3, b"")]))


@pytest.mark.parametrize("codec", [JSONCodec(), MsgpackCodec()], ids=["json", "msgpack"])
def test_large_documents_decode_in_slices_exactly(codec: Any) -> None:
    rows = [{"id": i, "name": f"itém {i}", "tags": ["a", [i, {"x": None}]]} for i in range(20_000)]
    value = {
        "rows": rows,
        "text": "é" * 300_000,
        "nested": [[rows[:50]] * 3],
        "map": {f"u{i}": {"n": i} for i in range(5_000)},
    }
    data = codec.dumps(value)
    assert len(data) > LARGE_RECORD
    assert codec.loads(data) == value
    for broken in (data[:-7], data + b"0", data[: len(data) // 2]):
        with pytest.raises(ValueError, match=r"(?i)expecting|extra|truncated|unterminated|decode"):
            codec.loads(broken)


def test_collector_pause_restores_the_collector() -> None:
    assert gc.isenabled()
    with collector_paused:
        assert not gc.isenabled()
        with collector_paused:
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused:
            pass
        assert not gc.isenabled(), "a program that disabled the collector keeps it disabled"
    finally:
        gc.enable()


@pytest.mark.parametrize("codec", ["msgpack", "json"])
async def test_a_lone_surrogate_in_a_value_is_named_by_its_path(codec: str, tmp_path: Path) -> None:
    """UTF-8 cannot carry a lone surrogate: the error says where it is, and nothing is written."""
    backend = await FileBackend.create_backend_instance(tmp_path, "s", 1, codec=codec)
    async with Storage(backend) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value("kept")
        for value, path, where in (
            ({"a": ["ok", {"b": "x\ud800"}]}, "value['a'][1]['b']", "value['a'][1]['b']"),
            ({"a": {"\udc00k": 1}}, "value['a']", "value['a']: dict key '\\udc00k'"),
        ):
            with pytest.raises(InvalidValueError, match="lone surrogate") as caught:
                await handle.set_value(value)
            assert caught.value.path == path  # a path, as a non-str key's error gives it
            assert where in str(caught.value)
        assert await handle.get_value() == "kept"
