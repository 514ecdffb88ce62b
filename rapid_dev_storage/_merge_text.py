"""A merged JSON record as text, with git-style conflict markers around conflicting entries only.

Everything outside a conflict is written exactly as the JSON codec writes it (two-space indent,
sorted keys, UTF-8, final newline), so a merge without conflicts gives the canonical bytes and
a conflicted file differs from them only by its marked blocks::

    "value": {
      "a": 1,
    <<<<<<< ours
      "b": 2,
    =======
      "b": 3,
    >>>>>>> theirs
      "c": 4
    }

Commas are placed so that keeping either side of every block (deleting the markers and the
other side) leaves valid JSON: consecutive conflicting entries share one block, and a block that
ends an object and is empty on one side (an entry removed there) takes the entry before it in
(each side with its own version of that entry, so markers never nest).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._merge import MISSING, Conflict, conflicts, pick

MARKER_LINE = re.compile(rb"^(<{7,}|>{7,})(?: |$)", re.MULTILINE)
_Item = tuple["str | None", list[list[str]], list[list[str]]]
"""A plain entry's key, or None and a block's two sides (each a list of entries' lines)."""


def has_conflict_markers(data: bytes) -> bool:
    """Whether ``data`` holds both an opening and a closing conflict marker line."""
    found = {match.group(1)[:1] for match in MARKER_LINE.finditer(data)}
    return found == {b"<", b">"}


def render_record(keys: list[str], merged: Any, marker_size: int = 7) -> str:
    """Return the JSON record file for ``merged`` (which may hold `Conflict` values)."""
    record = {"keys": keys, "value": merged}
    return "\n".join(_value_lines(record, 0, marker_size)) + "\n"


def _value_lines(value: Any, depth: int, size: int) -> list[str]:
    if isinstance(value, dict) and conflicts(value):
        return _dict_lines(value, depth, size)
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, allow_nan=False)
    first, *rest = text.split("\n")
    return [first, *("  " * depth + line for line in rest)]


def _entry_lines(key: str, value: Any, depth: int, size: int) -> list[str]:
    first, *rest = _value_lines(value, depth + 1, size)
    return ["  " * (depth + 1) + json.dumps(key, ensure_ascii=False) + ": " + first, *rest]


def _dict_lines(value: dict[str, Any], depth: int, size: int) -> list[str]:
    items: list[_Item] = []
    for key in sorted(value):
        entry = value[key]
        if not isinstance(entry, Conflict):
            items.append((key, [], []))
            continue
        ours = [] if entry.ours is MISSING else [_entry_lines(key, entry.ours, depth, size)]
        theirs = [] if entry.theirs is MISSING else [_entry_lines(key, entry.theirs, depth, size)]
        if items and items[-1][0] is None:  # the previous item is a block: this joins it
            items[-1][1].extend(ours)
            items[-1][2].extend(theirs)
        else:
            items.append((None, ours, theirs))
    last = items[-1]
    if len(items) > 1 and last[0] is None and not (last[1] and last[2]):
        # The entry before takes the comma's place in the block, each side with its own version
        # of it (it may hold conflicts of its own: markers never nest).
        before = items[-2][0]
        assert before is not None  # blocks never follow blocks
        ours_before = _entry_lines(before, pick(value[before], "ours"), depth, size)
        theirs_before = _entry_lines(before, pick(value[before], "theirs"), depth, size)
        items[-2:] = [(None, [ours_before, *last[1]], [theirs_before, *last[2]])]
    lines = ["{"]
    for index, (plain, ours, theirs) in enumerate(items):
        more = index < len(items) - 1
        if plain is not None:
            lines += _joined([_entry_lines(plain, value[plain], depth, size)], more)
            continue
        lines.append("<" * size + " ours")
        lines += _joined(ours, more)
        lines.append("=" * size)
        lines += _joined(theirs, more)
        lines.append(">" * size + " theirs")
    lines.append("  " * depth + "}")
    return lines


def _joined(entries: list[list[str]], more: bool) -> list[str]:
    """Return the entries' lines, each entry followed by a comma unless it is the last."""
    lines: list[str] = []
    for index, entry in enumerate(entries):
        comma = "," if more or index < len(entries) - 1 else ""
        lines += [*entry[:-1], entry[-1] + comma]
    return lines
