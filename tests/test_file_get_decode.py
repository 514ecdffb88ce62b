"""A get's one-step decoding returns or refuses exactly what the long path does."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, Iterator

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_file_scan_decode import RECORDS, values

from rapid_dev_storage import CorruptRecordError, FileBackend, Storage
from rapid_dev_storage._types import Keys


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileBackend]:
    backend = asyncio.run(
        FileBackend.create_backend_instance(tmp_path_factory.mktemp("get"), "app", 1)
    )
    yield backend
    asyncio.run(backend.close())


def outcome(decode: Any, keys: Keys, data: bytes) -> tuple[str, Any]:
    """What decoding gives: the value (by its bytes: NaN is not equal to itself) or the error."""
    try:
        value = decode(keys, data)
    except CorruptRecordError as exc:
        return "refused", str(exc)
    return "value", msgpack.packb(value, use_bin_type=True)


def both(backend: FileBackend, keys: Keys, data: bytes) -> tuple[tuple[str, Any], int]:
    """Return the long path's outcome, checking a get's is the same; and how many times the
    get took the long path."""
    long_calls: list[bytes] = []
    long_path = backend._record_of

    def counted(group: str, keys: Keys | None, data: bytes, source: str | None = None) -> Any:
        long_calls.append(data)
        return long_path(group, keys, data, source)

    expected = outcome(lambda keys, data: long_path("G", keys, data)[1], keys, data)
    backend._record_of = counted  # type: ignore[method-assign]
    try:
        assert outcome(lambda keys, data: backend._value_of("G", keys, data), keys, data) == (
            expected
        )
    finally:
        del backend._record_of
    return expected, len(long_calls)


def test_a_usual_record_takes_the_short_path(backend: FileBackend) -> None:
    value = {"name": "x", "n": 3, "tags": ["a"]}
    for keys in (("user:1",), ("é" * 15,), ("",), ("k" * 31,)):
        data = msgpack.packb({"keys": list(keys), "value": value})
        assert both(backend, keys, data) == (("value", msgpack.packb(value)), 0)


@pytest.mark.parametrize("record", RECORDS, ids=list(RECORDS))
def test_every_other_record_gets_the_long_paths_answer(backend: FileBackend, record: str) -> None:
    form, keys = RECORDS[record]
    both(backend, keys, msgpack.packb(form, use_bin_type=True))  # the same, whichever path


def test_a_record_of_other_keys_or_damaged_is_refused_as_before(backend: FileBackend) -> None:
    data = msgpack.packb({"keys": ["k"], "value": [1, 2]})
    for other in (("j",), ("kk",), ("k", "k")):  # a record misplaced at these keys' name
        assert both(backend, other, data)[0][0] == "refused"
    for cut in range(len(data)):
        assert both(backend, ("k",), data[:cut])[0][0] == "refused"
    assert both(backend, ("k",), data + b"\x01")[0][0] == "refused"  # a byte after the value
    twice = b"\x82\xa4keys\x91\xa1k\xa4keys\x91\xa1k"  # "keys" twice: a dict of one
    assert both(backend, ("k",), twice)[0][0] == "refused"


def test_a_get_of_a_record_with_a_byte_after_its_value_fails(tmp_path: Path) -> None:
    async def main() -> None:
        backend = await FileBackend.create_backend_instance(tmp_path, "app", 1)
        async with Storage(backend) as store:
            record = store.get_group("g")["k"]
            await record.set_value([1, 2])
            path = backend.record_path("g", ("k",))
            with open(path, "ab") as file:
                file.write(b"\x01")
            with pytest.raises(CorruptRecordError):
                await record.get_value()

    asyncio.run(main())


def test_a_subclass_decoding_its_own_way_keeps_the_long_path(tmp_path: Path) -> None:
    class Decoding(FileBackend):  # its records hold whatever it decodes them to
        def _decode_record(self, group: str, keys: Any, data: bytes, source: Any) -> Any:
            return keys, ("its own", len(data))

    backend = asyncio.run(Decoding.create_backend_instance(tmp_path, "app", 1))
    data = msgpack.packb({"keys": ["k"], "value": 1})
    assert backend._value_of("G", ("k",), data) == ("its own", len(data))
    asyncio.run(backend.close())


def test_other_codecs_keep_the_long_path(tmp_path: Path) -> None:
    backend = asyncio.run(FileBackend.create_backend_instance(tmp_path, "app", 1, codec="json"))
    data = backend._encode_record(("k",), {"a": 1})
    assert both(backend, ("k",), data) == (("value", msgpack.packb({"a": 1})), 1)
    asyncio.run(backend.close())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=2), values, st.booleans())
def test_any_record_gets_the_same_answer_either_way(
    backend: FileBackend, written: list[str], value: Any, read_as_written: bool
) -> None:
    data = None
    with contextlib.suppress(OverflowError, ValueError):  # msgpack cannot carry it: no file
        data = msgpack.packb({"keys": written, "value": value}, use_bin_type=True)
    if data is not None:
        both(backend, tuple(written) if read_as_written else (*written, "x"), data)
