"""Three-way merge of values by their structure (the git merge driver's core).

The rule, applied at every level:

- both sides hold the same value (compared exactly: ``1``, ``1.0`` and ``true`` differ): take it;
- one side left the base value alone: take the other side (this is how a change, an addition or
  a removal on one side wins);
- all three are dicts (or the base is absent and both sides are dicts): merge them entry by
  entry, each entry by this same rule, so two branches changing *different* entries of one
  object, at any depth, merge cleanly;
- anything else is a `Conflict`: both sides changed one leaf (or one list, or one value's type)
  differently, or one side removed an entry the other changed.

Lists merge as whole values: a list changed on one side only takes that side; changed on both
sides differently, it conflicts as a whole (merging elements by position would turn two
appends into a silent overwrite, and lists have no keys to match elements by).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from ._json_view import dumps


class _Missing:
    """An entry (or a whole base) that is not there."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclasses.dataclass(frozen=True)
class Conflict:
    """Both sides changed one value differently; ``MISSING`` stands for a removed entry."""

    base: Any
    ours: Any
    theirs: Any


def same(one: Any, other: Any) -> bool:
    """Whether two values (or ``MISSING``) are equal, exactly: types count, NaN equals NaN."""
    if one is MISSING or other is MISSING:
        return one is other
    return type(one) is type(other) and dumps(one) == dumps(other)


def merge(base: Any, ours: Any, theirs: Any) -> Any:
    """Merge ``ours`` and ``theirs``, both changed from ``base`` (any may be ``MISSING``).

    Returns the merged value, ``MISSING`` if both sides removed it, or a value in which every
    place both sides changed differently holds a `Conflict` (the whole value may be one).
    """
    if same(ours, theirs):
        return ours
    if same(base, ours):
        return theirs
    if same(base, theirs):
        return ours
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if base is MISSING:
            base = {}
        if isinstance(base, dict):
            merged = {}
            for key in sorted({*base, *ours, *theirs}):
                entry = merge(
                    base.get(key, MISSING), ours.get(key, MISSING), theirs.get(key, MISSING)
                )
                if entry is not MISSING:
                    merged[key] = entry
            return merged
    return Conflict(base, ours, theirs)


def conflicts(merged: Any, path: str = "value") -> list[str]:
    """Return where ``merged`` holds conflicts, as paths (``value['a']['b']``)."""
    if isinstance(merged, Conflict):
        return [path]
    if isinstance(merged, dict):
        found = []
        for key, entry in merged.items():
            found += conflicts(entry, f"{path}[{key!r}]")
        return found
    return []


def pick(merged: Any, side: str) -> Any:
    """Return ``merged`` with every conflict settled for ``side`` (``"ours"`` or ``"theirs"``)."""
    if isinstance(merged, Conflict):
        return getattr(merged, side)
    if isinstance(merged, dict):
        picked = {key: pick(entry, side) for key, entry in merged.items()}
        return {key: entry for key, entry in picked.items() if entry is not MISSING}
    return merged
