"""What the conformance suite's checks share: tricky keys and values, comparisons, listings.

Part of `rapid_dev_storage.testing` (which re-exports `storable_values` and `BAD_VALUES`); each
``_conformance_*`` module holds the checks of one concern, as mixins of `BackendConformance`.
"""

from __future__ import annotations

import datetime
import enum
import math
import unicodedata
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from hypothesis import strategies as st

from ._api import Storage, StorageGroup
from ._types import Keys
from ._value_fits import INT_MAX, INT_MIN

if TYPE_CHECKING:
    from pathlib import Path

Case = Callable[[Any, Storage], Awaitable[None]]


def case(body: Case) -> Callable[[Any, str, Path], None]:
    """Turn ``async def check(self, store)`` into a pytest test of ``codec`` and ``tmp_path``."""

    def test(self: Any, codec: str, tmp_path: Path) -> None:
        self.run_case(body, codec, tmp_path)

    test.__name__ = body.__name__
    test.__qualname__ = body.__qualname__
    test.__doc__ = body.__doc__
    return test


# Key tuples that a naive encoding (joining with a separator, padding with "", normalising
# Unicode, folding case) would confuse. Every one must be its own record.
DISTINCT_KEYS: tuple[Keys, ...] = (
    ("a/b",),
    ("a", "b"),
    ("ab", ""),
    ("a",),
    ("a", ""),
    ("a", "", ""),
    ("", "a"),
    ("",),
    ("A",),
    ("a\x00b",),
    ("a:b",),
    ("a%3Ab",),
    ("a\\b",),
    ("..",),
    (".",),
    (unicodedata.normalize("NFC", "é"),),
    (unicodedata.normalize("NFD", "é"),),
    ("ключ", "键", "🔑"),
    ("a", "b", "c", "d", "e"),
    ("a", "b", "c", "d", ""),
)


class _Color(enum.IntEnum):
    RED = 1


def _self_containing_list() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


BAD_VALUES: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("set", lambda: {1, 2}),
    ("datetime", lambda: datetime.datetime(2024, 1, 1)),  # any datetime is refused
    ("object", object),
    ("int dict key", lambda: {1: "a"}),
    ("nested int dict key", lambda: {"a": [{"b": {2: 3}}]}),
    ("too large int", lambda: INT_MAX + 1),
    ("too small int", lambda: INT_MIN - 1),
    ("IntEnum", lambda: _Color.RED),
    ("self-containing list", _self_containing_list),
    ("complex", lambda: 1j),
)
"""Values no codec may accept, each with a label saying what makes it wrong; each a function
returning a fresh one (some contain themselves)."""


def storable_values(*, allow_bytes: bool, allow_non_finite: bool) -> st.SearchStrategy[Any]:
    """Hypothesis strategy for values a codec with these capabilities must round-trip."""
    scalars: st.SearchStrategy[Any] = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=INT_MIN, max_value=INT_MAX),
        st.floats(allow_nan=False, allow_infinity=allow_non_finite),
        st.text(max_size=8),
    )
    if allow_bytes:
        scalars = scalars | st.binary(max_size=8)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=4), children, max_size=4)
        ),
        max_leaves=12,
    )


def as_stored(value: Any) -> Any:
    """Return what reading ``value`` back gives: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [as_stored(item) for item in value]
    if isinstance(value, dict):
        return {key: as_stored(item) for key, item in value.items()}
    return value


def same(actual: Any, expected: Any) -> bool:
    """Return whether both are equal and of the same types throughout (``True`` is not ``1``)."""
    if type(actual) is not type(expected):
        return False
    if isinstance(actual, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(
            same(actual[key], expected[key]) for key in actual
        )
    if isinstance(actual, float) and math.isnan(actual):
        return math.isnan(expected)
    if isinstance(actual, float) and actual == 0.0:
        return math.copysign(1, actual) == math.copysign(1, expected)
    return bool(actual == expected)


async def contents(group: StorageGroup, *prefix: str) -> dict[Keys, Any]:
    """Return the group's records as a dict, checking that no key is yielded twice."""
    seen: dict[Keys, Any] = {}
    async for keys, value in group.all_items(*prefix):
        assert keys not in seen, f"all_items yielded {keys!r} twice"
        seen[keys] = value
    return seen


async def distinct_records(store: Storage) -> StorageGroup:
    """Return group ``G`` holding a record per `DISTINCT_KEYS`, its value a list of its keys."""
    group = store.get_group("G")
    for keys in DISTINCT_KEYS:
        await group[keys].set_value(list(keys))
    return group


async def snapshot(store: Storage) -> dict[str, dict[Keys, Any]]:
    """Return every record of every group."""
    return {name: await contents(store.get_group(name)) for name in await store.list_groups()}
