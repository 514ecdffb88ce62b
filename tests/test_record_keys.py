"""Reading a record's keys from the start of its bytes, as clears by prefix do."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from rapid_dev_storage._codecs import JSONCodec, MsgpackCodec
from rapid_dev_storage._record_keys import HEAD, leading_keys

KEYS = st.lists(st.text(), min_size=1, max_size=5).map(tuple)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)


@given(keys=KEYS, value=VALUES)
def test_the_keys_of_every_record_the_library_writes_are_read_from_its_start(
    keys: tuple[str, ...], value: Any
) -> None:
    record = {"keys": list(keys), "value": value}
    assert leading_keys(".json", JSONCodec().dumps(record)) == keys
    assert leading_keys(".msgpack", MsgpackCodec().dumps(record)) == keys


def test_records_laid_out_otherwise_are_left_to_the_whole_decode() -> None:
    value_first = json.dumps({"value": 1, "keys": ["k"]}).encode()
    assert leading_keys(".json", value_first) is None
    assert leading_keys(".msgpack", msgpack.packb({"value": 1, "keys": ["k"]})) is None
    assert leading_keys(".json", b"<<<<<<< HEAD\n") is None
    assert leading_keys(".json", b'{"keys": "k", "value": 1}') is None
    assert leading_keys(".json", b'{"keys": [], "value": 1}') is None
    assert leading_keys(".msgpack", msgpack.packb({"keys": [1], "value": 1})) is None
    assert leading_keys(".bin", b"anything") is None
    long_key = "k" * HEAD  # keys past the head: decoded whole instead
    assert leading_keys(".json", JSONCodec().dumps({"keys": [long_key], "value": 1})) is None


def test_a_large_record_needs_only_its_head() -> None:
    record = {"keys": ["big", "é"], "value": ["x" * 1000] * 10_000}
    for codec, extension in ((JSONCodec(), ".json"), (MsgpackCodec(), ".msgpack")):
        data = codec.dumps(record)
        assert len(data) > 10 * HEAD
        assert leading_keys(extension, data[:HEAD]) == ("big", "é")
