"""The quick check of values (`_value_fits`) and msgpack's strict encode against the full walk.

Large containers (over `BATCH` items) are checked a level at a time, and msgpack writes leave
out-of-range ints and str-subclass keys to msgpack's strict encoder: every value must still get
exactly the verdict, message and path of the reporting walk (`_validate._check`, the rule as it
always was), and every accepted value exactly the bytes msgpack gave it before.
"""

from __future__ import annotations

import enum
import gc
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapid_dev_storage import InvalidValueError, MemoryBackend
from rapid_dev_storage._snapshots import SNAPSHOTS
from rapid_dev_storage._validate import _check, check_value, lone_surrogate_path, unwritable_reason
from rapid_dev_storage._value_fits import (
    BATCH,
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    UNTRACKED_DICTS_HOLD_NO_CONTAINER,
    value_fits,
)


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


class Ratio(float):
    pass


EDGE_INTS = [INT_MIN - 1, INT_MIN, INT_MAX, INT_MAX + 1, -(2**80), 2**80, 0, -1]
ODD_SCALARS = [
    Color.RED,
    Name("n"),
    Ratio(0.5),
    True,
    math.nan,
    math.inf,
    -math.inf,
    b"bytes",
    bytearray(b"x"),
    memoryview(b"x"),
    msgpack.ExtType(1, b"x"),
    "\ud800",  # a lone surrogate: no check refuses it, the encoder does
    {1, 2},
    object(),
]
ODD_KEYS = [1, b"k", None, 1.5, True, (1, 2), Name("k"), Color.RED, "\udfff"]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(EDGE_INTS),
    st.floats(),
    st.text(max_size=3),
    st.sampled_from(ODD_SCALARS),
)
keys = st.text(max_size=3) | st.sampled_from(ODD_KEYS)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=BATCH * 2)
        | st.lists(children, max_size=BATCH * 2).map(tuple)
        | st.dictionaries(keys, children, max_size=BATCH * 2)
    ),
    max_leaves=120,
)


def reporting_walk(value: Any, allow_bytes: bool, allow_non_finite: bool) -> str | None:
    """The rule as it always was: the path-building walk's refusal, or None."""
    try:
        _check(value, "value", 0, allow_bytes, allow_non_finite)
    except InvalidValueError as error:
        return str(error)
    return None


def wide(depth: int, leaf: Any = 0) -> Any:
    """A value nested ``depth`` containers deep, each level wider than `BATCH`."""
    value: Any = leaf
    for level in range(depth):
        value = (
            [value, *range(BATCH)]
            if level % 2
            else {"k": value, **{str(i): i for i in range(BATCH)}}
        )
    return value


@settings(max_examples=400, deadline=None)
@given(values, st.booleans(), st.booleans())
def test_quick_check_agrees_with_the_reporting_walk(
    value: Any, allow_bytes: bool, allow_non_finite: bool
) -> None:
    refusal = reporting_walk(value, allow_bytes, allow_non_finite)
    assert value_fits(value, 0, allow_bytes, allow_non_finite) == (refusal is None)
    options = {"allow_bytes": allow_bytes, "allow_non_finite": allow_non_finite}
    assert unwritable_reason(value, **options) == refusal
    if refusal is None:
        check_value(value, **options)
    else:
        with pytest.raises(InvalidValueError) as caught:
            check_value(value, **options)
        assert str(caught.value) == refusal


def old_encode(value: Any) -> tuple[str, Any]:
    """What a msgpack write did before the encoder took over part of the check."""
    try:
        check_value(value, allow_bytes=True, allow_non_finite=True)
    except InvalidValueError as error:
        return "refused", (str(error), error.path)
    try:
        return "stored", msgpack.packb(value, use_bin_type=True, datetime=False)
    except UnicodeEncodeError as error:  # named by its path since the review of issue 17
        found = lone_surrogate_path(value)
        assert found is not None
        path, where = found
        surrogate = error.object[error.start : error.end]
        message = f"{where} holds a lone surrogate ({surrogate!r}), which UTF-8 cannot carry"
        return "refused", (f"{message}: use valid Unicode text", path)
    except Exception as error:
        return "codec failed", f"the msgpack codec failed: {error}"


def new_encode(value: Any, at_call: bool = False) -> tuple[str, Any]:
    """What a msgpack write does now: ``_encode``, or (``at_call``) the write's first step."""
    backend = MemoryBackend("msgpack")
    try:
        if at_call:  # the snapshot, checked as a get decodes it, or its copy checked
            return "stored", backend._encode_at_call("G", ("k",), value)
        return "stored", backend._encode("G", ("k",), value)
    except InvalidValueError as error:
        message = str(error)
        prefix = "cannot store group 'G' keys ('k',): "
        assert message.startswith(prefix), message
        message = message[len(prefix) :]
        if message.startswith("the msgpack codec failed"):
            return "codec failed", message
        return "refused", (message, error.path)


@settings(max_examples=400, deadline=None)
@given(values)
def test_msgpack_writes_refuse_and_store_as_before(value: Any) -> None:
    assert new_encode(value) == new_encode(value, at_call=True) == old_encode(value)


@pytest.mark.parametrize(
    "value",
    [
        {1: 2},
        {"a": [{None: 1}]},
        [{"a": 1}, ({(1, 2): 3},)],
        {"a": {b"k": 1}},
        {"a": {True: 1}},
        {"a": [1.5, {1.5: 2}]},
        {"a": msgpack.ExtType(1, b"x")},
        [msgpack.ExtType(1, b"x"), {"k": b"bytes"}],
        {"ok": {"fine": ["yes", 1, None, 2.5, {"deeper": []}]}},
    ],
    ids=repr,
)
def test_small_writes_checked_by_their_keys_refuse_as_before(value: Any) -> None:
    """A small snapshot whose bytes prove all but the dict keys is checked by a get's decode."""
    assert new_encode(value, at_call=True) == old_encode(value)


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
@pytest.mark.parametrize("shape", ["narrow", "wide"])
def test_depth_edges(depth: int, shape: str) -> None:
    """Containers nested 256 deep are stored, 257 are not: item by item and level by level."""
    value: Any = 0
    if shape == "narrow":
        for _ in range(depth):
            value = [value]
    else:
        value = wide(depth)
    fits = depth <= MAX_DEPTH
    for allow_bytes in (False, True):
        assert value_fits(value, 0, allow_bytes, allow_bytes) == fits
        assert value_fits(value, 0, allow_bytes, allow_bytes, True) == fits
        assert (reporting_walk(value, allow_bytes, allow_bytes) is None) == fits
    assert (new_encode(value)[0] == "stored") == fits
    assert new_encode(value) == new_encode(value, at_call=True) == old_encode(value)


@pytest.mark.parametrize("bad", [*EDGE_INTS, *ODD_SCALARS], ids=repr)
@pytest.mark.parametrize("where", ["value", "key"])
def test_each_odd_part_of_a_large_value(bad: Any, where: str) -> None:
    """One odd part among many rows: refused with the same path, or stored the same."""
    rows: dict[Any, Any] = {f"r{i}": {"id": i, "name": f"u{i}", "ok": True} for i in range(100)}
    if where == "value":
        rows["r57"]["bad"] = bad
    else:
        try:
            rows["r57"][bad] = 1
        except TypeError:  # unhashable: no key
            pytest.skip("unhashable")
    assert new_encode(rows) == old_encode(rows)
    for options in ((False, False), (True, True)):
        refusal = reporting_walk(rows, *options)
        assert value_fits(rows, 0, *options) == (refusal is None)


def test_the_level_walk_is_what_checks_large_containers() -> None:
    """With strict, a container over BATCH items goes to the level walk, which leaves ints."""
    small = [2**64] * BATCH
    large = [2**64] * (BATCH + 1)
    assert not value_fits(small, 0, True, True)
    assert not value_fits(large, 0, True, True)
    # With the encoder left to check ints, only the level walk skips them.
    assert not value_fits(small, 0, True, True, True)
    assert value_fits(large, 0, True, True, True)


def nested_tuple(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = (value,)
    return value


@pytest.mark.skipif(
    not UNTRACKED_DICTS_HOLD_NO_CONTAINER, reason="every dict's values are looked at here"
)
def test_untracked_dicts_hold_only_scalars_and_tuples() -> None:
    """What the level walk takes on trust: a dict holding anything it checks further is tracked.

    Lists and dicts (their keys), and every type msgpack's strict encoder takes that the check
    refuses (ExtType, Timestamp, memoryview-backed...), make a dict tracked; only scalars and
    tuples of them leave it untracked.
    """
    for inside in (
        [],
        {},
        {1: 2},
        msgpack.ExtType(1, b"x"),
        msgpack.Timestamp(1),
        memoryview(b"x"),
    ):
        assert gc.is_tracked({"a": 1, "b": inside}), inside
        row = {"a": 1}
        row["b"] = inside  # put in later: the dict starts being tracked then
        assert gc.is_tracked(row), inside
    for scalar in (None, True, 1, 2**64 - 1, 1.5, math.nan, "s", b"b", bytearray(b"x"), (1, "t")):
        assert not gc.is_tracked({"a": scalar}), scalar


@pytest.mark.parametrize("depth", [MAX_DEPTH - 2, MAX_DEPTH + 10])
def test_deep_untracked_tuples_in_rows_are_refused_as_before(depth: int) -> None:
    """Tuples nested past MAX_DEPTH in rows the collector untracked: the snapshot met a tuple,
    so the rows' values are looked at, and refused as the reporting walk refuses them."""
    rows = {f"r{i}": {"id": i, "name": f"u{i}"} for i in range(BATCH * 3)}
    rows["r7"]["deep"] = nested_tuple(depth)
    for _ in range(depth + 5):  # each collection untracks the tuples holding untracked ones
        if not gc.is_tracked(rows["r7"]):
            break
        gc.collect()
    assert not gc.is_tracked(rows["r7"]) or not UNTRACKED_DICTS_HOLD_NO_CONTAINER
    snapshot, tuples = SNAPSHOTS.take(rows)
    assert tuples
    assert snapshot == msgpack.packb(rows, use_bin_type=True)
    assert SNAPSHOTS.take(list(rows.values()))[1]
    assert not SNAPSHOTS.take({"a": [1, {"b": 2}]})[1]
    outcome = new_encode(rows, at_call=True)
    assert outcome == new_encode(rows) == old_encode(rows)
    assert (outcome[0] == "stored") == (depth + 2 <= MAX_DEPTH)
    refusal = reporting_walk(rows, True, True)
    assert value_fits(rows, 0, True, True, True, tupleless=False) == (refusal is None)


rows_keys = st.text(max_size=2) | st.sampled_from(ODD_KEYS)
row = st.dictionaries(rows_keys, leaves | st.lists(leaves, max_size=3), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(row, min_size=BATCH + 1, max_size=BATCH * 4), st.booleans(), st.booleans())
def test_rows_refuse_and_store_as_before(rows: list[Any], as_dict: bool, collect: bool) -> None:
    """Many small rows (the level walk, most of them untracked): the same verdicts and bytes."""
    value: Any = {f"r{i}": one for i, one in enumerate(rows)} if as_dict else rows
    if collect:
        gc.collect()  # untracks the tuples among the leaves
    assert new_encode(value, at_call=True) == new_encode(value) == old_encode(value)
