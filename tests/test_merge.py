"""The structural three-way merge and its conflict text, against models of what a merge means."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rapid_dev_storage._merge import MISSING, Conflict, conflicts, merge, pick
from rapid_dev_storage._merge_text import has_conflict_markers, render_record

NAMES = st.sampled_from(["a", "b", "c", "d", "é"])
LEAVES = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3) | st.just(1.0)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(NAMES, VALUES | st.dictionaries(NAMES, VALUES, max_size=4), max_size=5)
PATHS = st.lists(NAMES, min_size=1, max_size=2).map(tuple)
EDITS = st.dictionaries(PATHS, st.just(MISSING) | VALUES, max_size=4)


def apply(document: dict[str, Any], edits: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    result = copy.deepcopy(document)
    for path, value in edits.items():
        parent = result
        for name in path[:-1]:
            if not isinstance(parent.get(name), dict):
                parent[name] = {}
            parent = parent[name]
        if value is MISSING:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = copy.deepcopy(value)
    return result


def overlaps(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
    shorter = min(len(one), len(other))
    return one[:shorter] == other[:shorter]


@settings(max_examples=400, deadline=None)  # other test runs share the 2 cores
@given(DOCUMENTS, EDITS, EDITS)
def test_edits_in_different_places_merge_to_both_applied(
    base: dict[str, Any], ours: dict[tuple[str, ...], Any], theirs: dict[tuple[str, ...], Any]
) -> None:
    theirs = {path: v for path, v in theirs.items() if not any(overlaps(path, p) for p in ours)}
    # An edit below a path creates the dicts above it; do that on the base, as one side would.
    above = [path[:-1] for path in [*ours, *theirs] if len(path) > 1]
    base = apply(base, {path: {} for path in above if not isinstance(base.get(path[0]), dict)})
    expected = apply(apply(base, ours), theirs)
    merged = merge(base, apply(base, ours), apply(base, theirs))
    assert conflicts(merged) == []
    assert merged == expected


@settings(max_examples=400, deadline=None)  # other test runs share the 2 cores
@given(DOCUMENTS, DOCUMENTS, DOCUMENTS)
def test_keeping_either_side_of_every_block_gives_valid_json_of_that_side(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> None:
    merged = merge(base, ours, theirs)
    text = render_record(["k"], merged)
    assert has_conflict_markers(text.encode()) == bool(conflicts(merged))
    for side in ("ours", "theirs"):
        assert json.loads(keep(text, side)) == {"keys": ["k"], "value": pick(merged, side)}
    if not conflicts(merged):
        record = {"keys": ["k"], "value": merged}
        assert text == json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def keep(text: str, side: str) -> str:
    """Resolve every block of ``text`` for ``side``, as a person deleting markers would."""
    kept, state = [], None
    for line in text.split("\n"):
        if line.startswith("<<<<<<<"):
            state = "ours"
        elif line.startswith("=======") and state:
            state = "theirs"
        elif line.startswith(">>>>>>>"):
            state = None
        elif state in (None, side):
            kept.append(line)
    return "\n".join(kept)


def test_the_rules_one_by_one() -> None:
    assert merge(1, 1, 2) == 2
    assert merge(1, 2, 1) == 2
    assert merge(1, 2, 2) == 2
    assert merge(1, 2, 3) == Conflict(1, 2, 3)
    assert merge(1, 1.0, True) == Conflict(1, 1.0, True)  # types count
    assert merge({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 2}) == {"a": 2, "b": 2}
    assert merge({"a": 1}, {}, {"a": 1}) == {}  # removed on one side
    assert merge({"a": 1}, {}, {"a": 2}) == {"a": Conflict(1, MISSING, 2)}  # removed vs changed
    assert merge(MISSING, {"a": 1}, {"b": 2}) == {"a": 1, "b": 2}  # both added the record
    assert merge([1], [1, 2], [1, 3]) == Conflict([1], [1, 2], [1, 3])  # lists are whole values
    assert merge([1], [1, 2], [1]) == [1, 2]
    assert merge({"x": {"y": 1, "z": 1}}, {"x": {"y": 2, "z": 1}}, {"x": {"y": 1, "z": 3}}) == {
        "x": {"y": 2, "z": 3}
    }


def test_markers_surround_the_conflicting_entries_only() -> None:
    merged = merge({"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 2, "c": 1}, {"a": 1, "b": 3, "c": 1})
    assert render_record(["u1"], merged) == (
        '{\n  "keys": [\n    "u1"\n  ],\n  "value": {\n    "a": 1,\n'
        '<<<<<<< ours\n    "b": 2,\n=======\n    "b": 3,\n>>>>>>> theirs\n'
        '    "c": 1\n  }\n}\n'
    )
    removed_last = merge({"a": 1, "z": 1}, {"a": 1}, {"a": 1, "z": 2})
    assert render_record(["u1"], removed_last, marker_size=9).endswith(
        '<<<<<<<<< ours\n    "a": 1\n=========\n    "a": 1,\n    "z": 2\n>>>>>>>>> theirs\n  }\n}\n'
    )


def test_conflict_markers_are_told_from_text_that_mentions_them() -> None:
    assert has_conflict_markers(b'{\n<<<<<<< ours\n"a": 1\n=======\n"a": 2\n>>>>>>> theirs\n}')
    assert not has_conflict_markers(b'{"a": "<<<<<<< ours"}')
    assert not has_conflict_markers(b"<<<<<<< only an opening line\n")


def test_an_entry_taken_into_a_block_brings_its_own_conflicts_settled_per_side() -> None:
    # Found by hypothesis: "d" holds a conflict and precedes a last block empty on one side.
    base = {"a": None, "b": None, "d": {"a": None}, "c": None, "é": None}
    ours = {"a": None, "d": {}, "b": {}, "é": 1.0}
    theirs = {"d": {"a": False}}
    merged = merge(base, ours, theirs)
    text = render_record(["k"], merged)
    assert text.count("<<<<<<<") == 2
    for side in ("ours", "theirs"):
        assert json.loads(keep(text, side)) == {"keys": ["k"], "value": pick(merged, side)}
