"""Conformance checks for a bad day: records no write could have made, keys that lie.

Part of `rapid_dev_storage.testing.BackendConformance` (a mixin, one concern of the suite).
The records are planted through the backend's own ``_write`` hook, as another
program or a hand edit would leave them; then every read path must refuse them alike.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from ._api import Storage
from ._backend import StorageBackend
from ._conformance_support import case
from .errors import CorruptRecordError, InvalidKeyError, InvalidNameError

PLACEHOLDER = "rds-conformance-placeholder"
"""A value written normally, whose encoding is then swapped for a planted one."""

# What each codec can carry in its bytes that no write produces, with a label for messages.
PLANTED: dict[str, tuple[tuple[str, bytes], ...]] = {
    "json": (
        ("NaN", b"[NaN]"),
        ("Infinity", b'{"x": -Infinity}'),
        ("float overflowing to infinity", b"1e400"),
        ("int beyond the storable range", str(2**70).encode()),
        ("nesting deeper than MAX_DEPTH", b"[" * 300 + b"]" * 300),
        ("lone surrogate", b'"\\ud800"'),
        ("lone surrogate in a dict key", b'{"\\udc00": 1}'),
        ("duplicate dict key", b'{"a": 1, "a": 2}'),
    ),
    "msgpack": (
        ("ext type", msgpack.packb(msgpack.ExtType(7, b"x"))),
        ("timestamp", msgpack.packb(msgpack.Timestamp(1, 0))),
        ("bytes dict key", msgpack.packb({b"k": 1}, use_bin_type=True)),
        ("int dict key", msgpack.packb({1: 2})),
        ("nesting deeper than MAX_DEPTH", b"\x91" * 300 + b"\xc0"),
    ),
}


class _LyingStr(str):
    """A str subclass whose checks claim any text is plain ASCII."""

    __slots__ = ()

    def isascii(self) -> bool:
        return True

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"x"


def _planted_record(backend: StorageBackend, keys: tuple[str, ...], raw: bytes) -> bytes:
    """Return the bytes of a record of ``keys`` whose value's encoding is ``raw``."""
    codec = backend.codec
    marker = (
        json.dumps(PLACEHOLDER).encode() if codec.name == "json" else msgpack.packb(PLACEHOLDER)
    )
    template = backend._encode_record(keys, PLACEHOLDER)
    assert template.count(marker) == 1, "the placeholder's encoding is not found once"
    return template.replace(marker, raw)


async def _reads_fine(handle: Any) -> bool:
    try:
        await handle.get_value()
    except CorruptRecordError:
        return False
    return True


class BadDayCases:
    """Checks that every backend refuses alike what no write could have stored."""

    @case
    async def test_reads_refuse_what_writes_refuse(self, store: Storage) -> None:
        """A value a write would refuse reads as CorruptRecordError: get, iteration, update."""
        backend = store.backend
        if backend.codec.name not in PLANTED:
            pytest.skip("needs the json or msgpack codec")
        group = store.get_group("planted")
        await group["good"].set_value({"fine": [1, 2.5, "é"]})
        for label, raw in PLANTED[backend.codec.name]:
            keys = (label,)
            planted = _planted_record(backend, keys, raw)
            try:
                await backend._write("planted", keys, planted)
            except Exception:  # the store cannot hold it (PostgreSQL jsonb): nothing to read
                continue
            stored = await backend._read("planted", keys)
            handle = group[keys]
            if stored != planted and await _reads_fine(handle):
                continue  # the store made it storable (jsonb keeps one of duplicate keys)
            with pytest.raises(CorruptRecordError) as caught:
                await handle.get_value()
            error = caught.value
            assert error.group == "planted", label
            assert error.keys == keys, label
            assert error.location, f"{label}: the error should say where the record is"
            assert isinstance(error, ValueError)
            with pytest.raises(CorruptRecordError):
                await handle.update(lambda current: current)
            assert await backend._read("planted", keys) == stored, f"{label}: update wrote"
            problems: list[CorruptRecordError] = []
            items = {k: v async for k, v in group.all_items(on_corrupt=problems.append)}
            assert items == {("good",): {"fine": [1, 2.5, "é"]}}, label
            assert len(problems) == 1, label
            assert problems[0].location, label
            with pytest.raises(CorruptRecordError):
                async for _ in group.all_items():
                    pass
            await handle.clear_value()
        assert await group["good"].get_value() == {"fine": [1, 2.5, "é"]}

    @case
    async def test_keys_and_names_are_checked_as_plain_str(self, store: Storage) -> None:
        """Lone surrogates are refused even from a str subclass lying in isascii()/encode()."""
        backend = store.backend
        group = store.get_group("G")
        for bad in (_LyingStr("\ud800"), "a\udc80"):
            for keys in ((bad,), ("a", bad)):
                with pytest.raises(InvalidKeyError, match="surrogate"):
                    group[keys]
                with pytest.raises(InvalidKeyError):
                    await backend.get_data("G", *keys)
                with pytest.raises(InvalidKeyError):
                    await backend.write_data("G", *keys, value=1)
                with pytest.raises(InvalidKeyError):
                    await backend.update_data("G", *keys, fn=lambda current: 1)
                with pytest.raises(InvalidKeyError):
                    await backend.clear_by_keys("G", *keys)
                with pytest.raises(InvalidKeyError):
                    await backend.clear_by_key_prefix("G", *keys)
                with pytest.raises(InvalidKeyError):
                    async for _ in group.all_items(*keys):
                        pass
            with pytest.raises(InvalidNameError, match="surrogate"):
                store.get_group(bad)
            with pytest.raises(InvalidNameError):
                await backend.write_data(bad, "k", value=1)
            with pytest.raises(InvalidNameError):
                await backend.get_data(bad, "k")
        honest = group[_LyingStr("fine"), "k"]
        assert type(honest.keys[0]) is str
        await honest.set_value(1)
        assert await group["fine", "k"].get_value() == 1
        assert await store.list_groups() == ["G"]
