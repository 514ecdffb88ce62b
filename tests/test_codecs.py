"""Codecs: exact output of the JSON codec (it is what git shows), and the codec contract."""

from __future__ import annotations

import pytest

from rapid_dev_storage import CallableCodec, Codec, JSONCodec, MsgpackCodec
from rapid_dev_storage._codecs import resolve_codec


def test_json_output_is_pretty_sorted_utf8_with_final_newline() -> None:
    data = JSONCodec().dumps({"b": [1, 2.5, None], "a": {"é": True, "ключ": "✓"}})
    assert data.decode() == "\n".join(
        [
            "{",
            '  "a": {',
            '    "é": true,',
            '    "ключ": "✓"',
            "  },",
            '  "b": [',
            "    1,",
            "    2.5,",
            "    null",
            "  ]",
            "}",
            "",
        ]
    )


def test_equal_values_give_identical_json_bytes() -> None:
    codec = JSONCodec()
    first = {"x": 1, "y": {"b": 2, "a": 1}}
    second = {"y": {"a": 1, "b": 2}, "x": 1}
    assert codec.dumps(first) == codec.dumps(second)


def test_json_reads_hand_edits() -> None:
    assert JSONCodec().loads(b'{"a": [1,2],\n"b": "caf\\u00e9"}') == {"a": [1, 2], "b": "café"}


def test_msgpack_round_trips_bytes_and_keeps_str_apart() -> None:
    codec = MsgpackCodec()
    value = {"s": "text", "b": b"\x00bin", "l": [1, 2]}
    assert codec.loads(codec.dumps(value)) == value
    assert type(codec.loads(codec.dumps("x"))) is str


def test_codecs_satisfy_the_protocol() -> None:
    for codec in (JSONCodec(), MsgpackCodec(), CallableCodec(repr, str)):  # type: ignore[arg-type]
        assert isinstance(codec, Codec)
        assert codec.extension.startswith(".")


def test_resolve_codec() -> None:
    assert resolve_codec(None) is None
    assert isinstance(resolve_codec("json"), JSONCodec)
    custom = JSONCodec()
    assert resolve_codec(custom) is custom
    with pytest.raises(ValueError, match="unknown codec 'yaml': use one of json, msgpack"):
        resolve_codec("yaml")
    with pytest.raises(TypeError, match="codec must be"):
        resolve_codec(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        resolve_codec("json", bytes, bytes)
