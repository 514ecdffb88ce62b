"""JSON stores' encoder: byte for byte what ``json.dumps`` (and the newline) gave, errors too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapid_dev_storage._json_dumps import JSON_PIECES, LONG_TEXT, QUOTE_SLICE, json_dumps


def standard(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, allow_nan=False)
    return (text + "\n").encode("utf-8")


def outcome(encode: Any, value: Any) -> Any:
    try:
        return encode(value)
    except Exception as exc:  # the same exception, the same message
        return type(exc), str(exc)


TEXT = st.one_of(
    st.text(max_size=20),
    # long text, with and without characters to escape (quotes, backslashes, controls)
    st.builds(lambda part, times: part * times, st.text(min_size=1, max_size=8), st.just(200)),
    st.sampled_from(["x" * LONG_TEXT, "é€\u2028" * 300, "a\x7fb" * 300, '"' * 600, "\ud800" * 600]),
)
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXT, inner, max_size=5)),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_the_bytes_are_json_dumps_bytes(value: Any) -> None:
    assert outcome(json_dumps, value) == outcome(standard, value)


@pytest.mark.parametrize("count", [JSON_PIECES // 8 - 1, JSON_PIECES, 3 * JSON_PIECES])
def test_documents_of_many_pieces(count: int) -> None:
    value = {f"k{index}": [index, "text" * (index % 200), None] for index in range(count)}
    assert json_dumps(value) == standard(value)


@pytest.mark.parametrize("odd", ['"', "\\", "\n", "\x00", "\x1f", "\ud800", "é", "\u2028"])
@pytest.mark.parametrize("where", [0, QUOTE_SLICE - 1, QUOTE_SLICE, 2 * QUOTE_SLICE + 5, -1])
def test_long_text_looked_at_in_slices(odd: str, where: int) -> None:
    """A character to escape (or a lone surrogate) in any slice of a long text: as json.dumps."""
    chars = list("a" * (3 * QUOTE_SLICE))
    chars[where] = odd
    value = {"text": "".join(chars)}
    assert outcome(json_dumps, value) == outcome(standard, value)


@pytest.mark.parametrize("odd", ['"', "\\", "\n", "\x00", "\ud800", "ÿ"])
@pytest.mark.parametrize("wider", [0, QUOTE_SLICE - 1, QUOTE_SLICE + 3, None])
def test_latin1_text_then_wider_characters(odd: str, wider: int | None) -> None:
    """Latin-1 slices, then (from ``wider`` on) UTF-8 ones: a character to escape in the last."""
    chars = list("é" * (3 * QUOTE_SLICE))
    if wider is not None:
        chars[wider] = "€"
    chars[2 * QUOTE_SLICE + 5] = odd
    value = "".join(chars)
    assert outcome(json_dumps, value) == outcome(standard, value)
    assert outcome(json_dumps, value[: 2 * QUOTE_SLICE]) == outcome(
        standard, value[: 2 * QUOTE_SLICE]
    )
