"""Whether a value can be stored: the quick yes or no that every write and read asks.

`_validate.check_value` asks it first and walks again, building the path its error names, only
for a value it refuses. Containers are checked item by item; before msgpack's strict encoder,
large ones a level of the tree at a time, in passes of C helpers (see `_levels_fit`).
"""

from __future__ import annotations

import sys
from gc import is_tracked
from itertools import chain, compress
from math import isfinite as _isfinite
from typing import Any, Iterable, cast

MAX_DEPTH = 256
"""Deepest nesting accepted: every codec reads it back, and a value containing itself stops here."""

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""msgpack's range, kept for every codec so that a store converts to any other codec losslessly."""


LEVEL_SLICE = 32_768
"""Containers of one level checked in one set of passes: each pass is one C call holding the
GIL, a few ms for this many small rows (a level of 2,000,000 rows at once: over 100 ms)."""

BATCH = 16
"""With ``strict``, containers longer than this are checked a level at a time (`_levels_fit`),
smaller ones item by item: the level walk's few C calls cost more for a small dict."""

_CPYTHON = sys.implementation.name == "cpython"
UNTRACKED_DICTS_HOLD_NO_CONTAINER = _CPYTHON and sys.version_info < (3, 13)
"""Whether a dict the garbage collector does not track holds no list, dict or tracked object.

CPython up to 3.12 leaves a dict untracked while its keys and values cannot take part in a
reference cycle (`gc.is_tracked`'s documented example: ``{"a": 1}`` is not tracked, ``{"a":
[]}`` is), and tracks it as soon as one that can is put in: so an untracked dict's values are
scalars or (untracked) tuples of them, and a row of scalars needs no look at its values. 3.13
missed the re-tracking of an instance's materialised ``__dict__`` (CPython gh-133543) and 3.14
tracks every dict: there, every dict's values are looked at."""


def value_fits(
    value: Any,
    depth: int,
    allow_bytes: bool,
    allow_non_finite: bool,
    strict: bool = False,
    tupleless: bool = False,
) -> bool:
    """Whether `_validate.check_value` would accept ``value`` at nesting ``depth`` (0: the top).

    The same rules as its walk, without building any path: the fast answer for good values.
    ``strict``: the value goes next to an encoder that raises for an int out of range
    and for a subclass of str (msgpack's with ``strict_types``, see ``Codec.strict_dumps``), and
    if it does, to ``check_value``: large containers leave those two checks to it, and are
    checked a level at a time. ``tupleless`` (with ``strict``): the caller knows the value holds
    no tuple (the snapshot's encoder met none, or it was decoded with lists): with bytes and
    non-finite floats allowed, the values of an untracked dict then need no look (see
    `UNTRACKED_DICTS_HOLD_NO_CONTAINER`).
    """
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            return False
        if strict and len(value) > BATCH:
            leaves = (
                tupleless and allow_bytes and allow_non_finite and UNTRACKED_DICTS_HOLD_NO_CONTAINER
            )
            return _levels_fit([value], {kind}, depth, allow_bytes, allow_non_finite, leaves)
        if kind is dict:
            for key in value:  # a loop: twice as fast as all() over a generator
                if type(key) is not str:
                    return False
            value = value.values()
        return _items_fit(value, depth + 1, allow_bytes, allow_non_finite, strict, tupleless)
    return _scalar_fits(value, allow_bytes, allow_non_finite)


def _items_fit(
    items: Iterable[Any],
    depth: int,
    allow_bytes: bool,
    allow_non_finite: bool,
    strict: bool,
    tupleless: bool = False,
) -> bool:
    # The common scalars are tested inline: a call per item would double the cost.
    for item in items:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            fits = INT_MIN <= item <= INT_MAX
        elif kind is float:
            fits = allow_non_finite or _isfinite(item)
        elif kind is dict or kind is list or kind is tuple:
            fits = value_fits(item, depth, allow_bytes, allow_non_finite, strict, tupleless)
        else:
            fits = (kind is bytes or kind is bytearray or kind is memoryview) and allow_bytes
        if not fits:
            return False
    return True


def _scalar_fits(value: object, allow_bytes: bool, allow_non_finite: bool) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return INT_MIN <= cast(int, value) <= INT_MAX
    if kind is float:
        return allow_non_finite or _isfinite(cast(float, value))
    return (kind is bytes or kind is bytearray or kind is memoryview) and allow_bytes


_CONTAINERS = frozenset({dict, list, tuple})
_STORABLE = frozenset({str, bool, type(None), int, float, *_CONTAINERS})
_STORABLE_WITH_BYTES = _STORABLE | {bytes, bytearray, memoryview}  # read back as bytes
_is_container = _CONTAINERS.__contains__
_is_float = frozenset({float}).__contains__
_flatten = chain.from_iterable


def _levels_fit(
    level: list[Any],
    kinds: set[type],
    depth: int,
    allow_bytes: bool,
    allow_non_finite: bool,
    leaves: bool = False,
) -> bool:
    """`value_fits` with ``strict`` of the containers ``level`` (of the types ``kinds``).

    Each level of the tree is checked in a few passes of C helpers (``map(type, ...)`` into a
    set, `itertools.chain`, `str.join` over the keys) over all its items at once, where a loop
    of Python per item cost 2.8x msgpack's encode (1,000 rows: 0.5 ms against 0.18 ms); this
    costs 1.4-1.7x. No pure-Python walk gets under the encode: msgpack spends about 20 ns per
    item, one C pass of ours 17-33 ns. Without ``strict`` the range check of ints (a filter,
    a min and a max) made this no faster than the loop, which is kept for that. ``leaves``:
    untracked dicts hold only scalars (see `value_fits`' ``tupleless``): their values are
    not looked at, which leaves rows of scalars to the pass over their keys (0.4-0.6x the
    encode).
    """
    storable = _STORABLE_WITH_BYTES if allow_bytes else _STORABLE
    while True:
        if depth >= MAX_DEPTH:
            return False
        if len(level) <= LEVEL_SLICE:
            found = _next_level(level, kinds, storable, allow_non_finite, leaves)
            if found is None:
                return False
            level, kinds = found
        else:  # a slice at a time: each pass holds the GIL (see LEVEL_SLICE)
            below: list[Any] = []
            below_kinds: set[type] = set()
            for start in range(0, len(level), LEVEL_SLICE):
                part = level[start : start + LEVEL_SLICE]
                found = _next_level(part, set(map(type, part)), storable, allow_non_finite, leaves)
                if found is None:
                    return False
                below += found[0]
                below_kinds |= found[1]
            level, kinds = below, below_kinds
        if not kinds:
            return True
        depth += 1


SHARED_KEYS_SAMPLE = 4
"""Dicts of a level whose keys are compared first: rows mostly share them (`_keys_are_str`)."""


def _keys_are_str(dicts: list[dict[Any, Any]]) -> bool:
    """Whether every key of ``dicts`` is a `str` (or a subclass: see `value_fits`' ``strict``).

    `str.join` refuses anything else. Rows that share their keys are joined as the set of
    their keys (`set.union` of dicts reuses the hashes they keep: half the cost of a pass over
    every key); dicts whose keys differ are joined key by key (their set would cost twice).
    A key of a type the strict encoder takes equals no `str` unless it is one, so the set
    keeps every such key; a key of any other type is refused by that encoder.
    """
    sample = dicts[:SHARED_KEYS_SAMPLE]
    keys: Iterable[Any] = _flatten(dicts)
    if len(dicts) > 1 and len(set().union(*sample)) < sum(map(len, sample)):
        keys = set().union(*dicts)
    try:
        "".join(keys)
    except TypeError:
        return False
    return True


def _next_level(
    level: list[Any],
    kinds: set[type],
    storable: frozenset[object],
    allow_non_finite: bool,
    leaves: bool = False,
) -> tuple[list[Any], set[type]] | None:
    """Check the items of the containers ``level`` (of the types ``kinds``).

    Return the containers among them and their types, or None if one cannot be stored.
    ``leaves``: the values of untracked dicts are left out (see `_levels_fit`).
    """
    if dict in kinds:
        dicts = level if len(kinds) == 1 else [item for item in level if type(item) is dict]
        if not _keys_are_str(dicts):
            return None
        if leaves:
            dicts = list(filter(is_tracked, dicts))
        items = list(_flatten(map(dict.values, dicts)))
        if len(kinds) > 1:
            items += _flatten([item for item in level if type(item) is not dict])
    else:
        items = list(_flatten(level))
    types = set(map(type, items))
    if not types <= storable:
        return None
    if (
        float in types
        and not allow_non_finite
        and not all(map(_isfinite, compress(items, map(_is_float, map(type, items)))))
    ):
        return None
    kinds = types & _CONTAINERS
    if kinds and not types <= _CONTAINERS:
        items = list(compress(items, map(_is_container, map(type, items))))
    return (items if kinds else []), kinds
