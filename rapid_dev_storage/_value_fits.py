"""Whether a value can be stored: the quick yes or no that every write and read asks.

`_validate.check_value` asks it first and walks again, building the path its error names, only
for a value it refuses. Containers are checked item by item; before msgpack's strict encoder,
large ones a level of the tree at a time, in passes of C helpers (see `_levels_fit`).
"""

from __future__ import annotations

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


def value_fits(
    value: Any, depth: int, allow_bytes: bool, allow_non_finite: bool, strict: bool = False
) -> bool:
    """Whether `_validate.check_value` would accept ``value`` at nesting ``depth`` (0: the top).

    The same rules as its walk, without building any path: the fast answer for good values.
    ``strict``: the value goes next to an encoder that raises for an int out of range
    and for a subclass of str (msgpack's with ``strict_types``, see ``Codec.strict_dumps``), and
    if it does, to ``check_value``: large containers leave those two checks to it, and are
    checked a level at a time.
    """
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            return False
        if strict and len(value) > BATCH:
            return _levels_fit([value], {kind}, depth, allow_bytes, allow_non_finite)
        if kind is dict:
            for key in value:  # a loop: twice as fast as all() over a generator
                if type(key) is not str:
                    return False
            value = value.values()
        return _items_fit(value, depth + 1, allow_bytes, allow_non_finite, strict)
    return _scalar_fits(value, allow_bytes, allow_non_finite)


def keys_fit(value: Any) -> bool:
    """Whether every dict key in ``value`` is a plain `str`: what msgpack's strict encoder leaves.

    For a value that encoder took (every part of a type we store, ints in range, no subclass)
    and whose bytes the codec's ``surely_storable`` passed (no bytes, no ext type, nesting within
    `MAX_DEPTH`), the dict keys are all `value_fits` has left to ask. Walks containers only:
    half the cost of `value_fits` for a small record, the most common write.
    """
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        value = value.values()
    elif kind is not list and kind is not tuple:
        return True
    for item in value:
        kind = type(item)
        if (kind is dict or kind is list or kind is tuple) and not keys_fit(item):
            return False
    return True


def _items_fit(
    items: Iterable[Any], depth: int, allow_bytes: bool, allow_non_finite: bool, strict: bool
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
            fits = value_fits(item, depth, allow_bytes, allow_non_finite, strict)
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
) -> bool:
    """`value_fits` with ``strict`` of the containers ``level`` (of the types ``kinds``).

    Each level of the tree is checked in a few passes of C helpers (``map(type, ...)`` into a
    set, `itertools.chain`, `str.join` over the keys) over all its items at once, where a loop
    of Python per item cost 2.8x msgpack's encode (1,000 rows: 0.5 ms against 0.18 ms); this
    costs 1.4-1.7x. No pure-Python walk gets under the encode: msgpack spends about 20 ns per
    item, one C pass of ours 17-33 ns. Without ``strict`` the range check of ints (a filter,
    a min and a max) made this no faster than the loop, which is kept for that.
    """
    storable = _STORABLE_WITH_BYTES if allow_bytes else _STORABLE
    while True:
        if depth >= MAX_DEPTH:
            return False
        if len(level) <= LEVEL_SLICE:
            found = _next_level(level, kinds, storable, allow_non_finite)
            if found is None:
                return False
            level, kinds = found
        else:  # a slice at a time: each pass holds the GIL (see LEVEL_SLICE)
            below: list[Any] = []
            below_kinds: set[type] = set()
            for start in range(0, len(level), LEVEL_SLICE):
                part = level[start : start + LEVEL_SLICE]
                found = _next_level(part, set(map(type, part)), storable, allow_non_finite)
                if found is None:
                    return False
                below += found[0]
                below_kinds |= found[1]
            level, kinds = below, below_kinds
        if not kinds:
            return True
        depth += 1


def _next_level(
    level: list[Any], kinds: set[type], storable: frozenset[object], allow_non_finite: bool
) -> tuple[list[Any], set[type]] | None:
    """Check the items of the containers ``level`` (of the types ``kinds``).

    Return the containers among them and their types, or None if one cannot be stored.
    """
    if dict in kinds:
        dicts = level if len(kinds) == 1 else [item for item in level if type(item) is dict]
        try:  # str.join refuses anything but str (subclasses: see value_fits' strict)
            "".join(_flatten(dicts))
        except TypeError:
            return None
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
