"""The JSON view of values: bytes survive every trip through JSON, and look unlike text."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapid_dev_storage import FileBackend, NoValue, Storage
from rapid_dev_storage._json_view import dumps, from_view, loads

KEYS = st.text(max_size=8) | st.sampled_from(["$bytes", "$dict", "$ref"])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=20,
)


@given(VALUES)
def test_every_value_comes_back_from_its_view(value: Any) -> None:
    assert loads(dumps(value)) == value
    assert from_view(json.loads(dumps(value, indent=2))) == value


def test_bytes_and_text_that_looks_like_them_differ() -> None:
    assert dumps(b"\x00") == '{"$bytes": "AA=="}'
    assert dumps("b'\\x00'") == "\"b'\\\\x00'\""
    assert loads(dumps({"$bytes": "AA=="})) == {"$bytes": "AA=="}  # a real dict, escaped
    assert dumps({"$bytes": "AA=="}) == '{"$dict": {"$bytes": "AA=="}}'
    assert loads('{"$ref": "x"}') == {"$ref": "x"}  # other $ names stand for themselves
    assert loads('{"$bytes": "AA==", "more": 1}') == {"$bytes": "AA==", "more": 1}
    assert math.isnan(loads(dumps(float("nan"))))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": [{"$bytes": 5}]}', r"value\['a'\]\[0\]: .*holds base64 text, not 5"),
        ('{"$bytes": "not base64!"}', r"value: .*not valid base64"),
        ('{"$bytes": "é"}', r"not valid base64"),
        ('{"$dict": [1]}', r"holds an object .*not \[1\]"),
    ],
)
def test_a_malformed_tag_says_where_and_what(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loads(text)


async def test_dump_load_dump_of_a_msgpack_store_with_bytes_is_byte_identical(
    tmp_path: Path,
) -> None:
    values = {
        ("blob",): b"\x00\xff binary",
        ("mixed", "1"): {"data": b"\x01", "text": "b'\\x01'", "list": [b"", "x"]},
        ("tagged",): {"$bytes": "not really bytes"},
        ("plain",): {"n": 1},
    }
    async with Storage(await FileBackend.create_backend_instance(tmp_path / "a", "app", 1)) as a:
        for keys, value in values.items():
            await a.get_group("G")[keys].set_value(value)
        await a.dump(tmp_path / "one.jsonl")
    async with Storage(await FileBackend.create_backend_instance(tmp_path / "b", "app", 1)) as b:
        assert await b.load(tmp_path / "one.jsonl") == len(values)
        for keys, value in values.items():
            assert await b.get_group("G")[keys].get_value() == value
        await b.dump(tmp_path / "two.jsonl")
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()


async def test_bytes_into_a_json_store_are_refused_by_name(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"group": "G", "keys": ["a"], "value": {"$bytes": "AA=="}}\n')
    backend = await FileBackend.create_backend_instance(tmp_path / "s", "app", 1, codec="json")
    async with Storage(backend) as store:
        with pytest.raises(ValueError, match=r"line 1: .*bytes"):
            await store.load(source)
        assert await store.get_group("G")["a"].get_value() is NoValue


async def test_a_line_nested_beyond_recursion_is_a_bad_line_not_a_crash(tmp_path: Path) -> None:
    source = tmp_path / "deep.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    source.write_text(f'{{"group": "G", "keys": ["a"], "value": {deep}}}\n')
    async with Storage(
        await FileBackend.create_backend_instance(tmp_path / "s", "app", 1)
    ) as store:
        with pytest.raises(ValueError, match=r"line 1: value: nested too deeply"):
            await store.load(source)
        assert await store.get_group("G")["a"].get_value() is NoValue
