"""A scan's one-step decoding returns or refuses exactly what the long path does."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Iterator

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapid_dev_storage import CorruptRecordError, FileBackend
from rapid_dev_storage._file_layout import record_file_name
from rapid_dev_storage._file_scan_decode import quick_decoder, scan_decoder
from rapid_dev_storage._types import Keys

DIRECTORY = os.path.join(os.sep + "store", "group")


def backend_at(path: Path, codec: str = "msgpack") -> FileBackend:
    return asyncio.run(FileBackend.create_backend_instance(path, "app", 1, codec=codec))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileBackend]:
    backend = backend_at(tmp_path_factory.mktemp("decode"))
    yield backend
    asyncio.run(backend.close())


def outcome(record_of: Any, data: bytes, source: str) -> tuple[str, Any]:
    """What decoding gives: the record (by its bytes: NaN is not equal to itself) or the error."""
    try:
        keys, value = record_of(None, data, source)
    except CorruptRecordError as exc:
        return "refused", str(exc)
    return "record", (keys, msgpack.packb(value, use_bin_type=True))


def both(backend: FileBackend, data: bytes, source: str) -> tuple[tuple[str, Any], int]:
    """Return the long path's outcome, checking the short path's is the same; and how many
    records the short path left to the long one."""
    long_calls: list[bytes] = []

    def long_path(keys: Keys | None, data: bytes, source: str | None) -> tuple[Keys, Any]:
        long_calls.append(data)
        return backend._record_of("G", keys, data, source)

    expected = outcome(long_path, data, source)
    long_calls.clear()
    assert (
        outcome(scan_decoder(quick_decoder(backend.codec, ".msgpack"), long_path), data, source)
        == expected
    )
    return expected, len(long_calls)


def source_of(keys: Keys) -> str:
    return os.path.join(DIRECTORY, record_file_name(keys, ".msgpack"))


def test_a_usual_record_takes_the_short_path(backend: FileBackend) -> None:
    keys = ("user:1",)
    value = {"name": "x", "n": 3, "tags": ["a"]}
    data = msgpack.packb({"keys": list(keys), "value": value})
    assert both(backend, data, source_of(keys)) == (("record", (keys, msgpack.packb(value))), 0)
    assert backend._scan_decoder("G")(None, data, source_of(keys)) == (keys, value)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


RECORDS = {
    "several keys": ({"keys": ["a", "b"], "value": 1}, ("a", "b")),
    "a key not ASCII": ({"keys": ["é"], "value": 1}, ("é",)),
    "a key of 32 characters": ({"keys": ["k" * 32], "value": 1}, ("k" * 32,)),
    "an empty key": ({"keys": [""], "value": 1}, ("",)),
    "a timestamp": ({"keys": ["k"], "value": msgpack.Timestamp(1)}, ("k",)),
    "an ext type": ({"keys": ["k"], "value": msgpack.ExtType(5, b"x")}, ("k",)),
    "a bytes dict key": ({"keys": ["k"], "value": {b"x": 1}}, ("k",)),
    "the largest uint": ({"keys": ["k"], "value": 2**64 - 1}, ("k",)),
    "deep nesting": ({"keys": ["k"], "value": nested(300)}, ("k",)),
    "no value": ({"keys": ["k"], "other": 1}, ("k",)),
    "value first": ({"value": 1, "keys": ["k"]}, ("k",)),
    "three entries": ({"keys": ["k"], "value": 1, "x": 2}, ("k",)),
    "keys not a list": ({"keys": "k", "value": 1}, ("k",)),
}


@pytest.mark.parametrize("record", RECORDS, ids=list(RECORDS))
def test_every_other_record_gets_the_long_paths_answer(backend: FileBackend, record: str) -> None:
    form, keys = RECORDS[record]
    data = msgpack.packb(form, use_bin_type=True)
    both(backend, data, source_of(keys))  # the same answer, whichever path gave it


def test_a_misnamed_or_damaged_record_is_refused_as_before(backend: FileBackend) -> None:
    keys = ("k",)
    data = msgpack.packb({"keys": ["k"], "value": 1})
    misnamed = os.path.join(DIRECTORY, "0" * 32 + ".msgpack")
    assert both(backend, data, misnamed)[0][0] == "refused"
    # Not even when the name only ends like the right one.
    assert both(backend, data, DIRECTORY + "x" + os.path.basename(source_of(keys)))[0][0] == (
        "refused"
    )
    for cut in range(len(data)):
        assert both(backend, data[:cut], source_of(keys))[0][0] == "refused"
    twice = b"\x82\xa4keys\x91\xa1k\xa4keys\x91\xa1k"  # "keys" twice: a dict of one
    assert both(backend, twice, source_of(keys))[0][0] == "refused"


def test_a_subclass_decoding_its_own_way_keeps_the_long_path(tmp_path: Path) -> None:
    class Decoding(FileBackend):
        def _decode_record(
            self, group: str, keys: Keys | None, data: bytes, source: str | None
        ) -> tuple[Keys, Any]:
            found, value = super()._decode_record(group, keys, data, source)
            return found, ("decoded here", value)

    backend = asyncio.run(Decoding.create_backend_instance(tmp_path, "app", 1))
    keys = ("k",)
    data = msgpack.packb({"keys": ["k"], "value": 1})
    assert backend._scan_decoder("G")(None, data, source_of(keys)) == (keys, ("decoded here", 1))
    asyncio.run(backend.close())


def test_other_codecs_keep_the_long_path(tmp_path: Path) -> None:
    json_backend = backend_at(tmp_path, codec="json")
    long_path = json_backend._record_of
    assert scan_decoder(quick_decoder(json_backend.codec, ".json"), long_path) is long_path
    asyncio.run(json_backend.close())


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.text(max_size=4) | st.binary(max_size=2)
    return st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    containers,
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.text(max_size=40), min_size=1, max_size=2).map(tuple),
    value=values,
    named_right=st.booleans(),
)
def test_any_record_gets_the_same_answer_on_either_path(
    backend: FileBackend, keys: Keys, value: Any, named_right: bool
) -> None:
    try:
        data = msgpack.packb({"keys": list(keys), "value": value}, use_bin_type=True)
    except (OverflowError, ValueError):
        return  # msgpack cannot carry it: no such record file
    source = source_of(keys) if named_right else source_of((*keys, "x"))
    both(backend, data, source)
