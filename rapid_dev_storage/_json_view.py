"""The JSON view of a value: one reversible JSON form for everything a store can hold.

People read and write values as JSON (``show``, ``get``, ``dump``, ``load``, ``edit``, git's
textconv), but msgpack stores also hold bytes, which JSON has no type for. In the view, bytes
are a one-entry object ``{"$bytes": "<base64>"}``; a real dict that would read as such a tag
(exactly one entry, named ``$bytes`` or ``$dict``) is written ``{"$dict": {...}}``. Every other
dict, including dicts with other ``$`` names or with several entries, stands for itself, so a
person's ``{"$ref": "x"}`` means just that. ``from_view(to_view(v)) == v`` for every storable
value, and the text tells bytes from a string that looks like them.

NaN and the infinities (msgpack stores carry them) are written the way Python's json module
writes and reads them (``NaN``, ``Infinity``). A number too large for a float (``1e400``) is an
error, not an infinity nobody typed.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

BYTES_TAG = "$bytes"
DICT_TAG = "$dict"
_TAGS = frozenset((BYTES_TAG, DICT_TAG))


TOO_DEEP = "nested too deeply (a value has at most 256 levels)"


def to_view(value: Any) -> Any:
    """Return ``value`` with bytes as ``{"$bytes": ...}`` and tag-shaped dicts escaped.

    Raises:
        ValueError: ``value`` is nested deeper than Python's recursion allows.

    """
    try:
        return _to_view(value)
    except RecursionError:
        raise ValueError(f"value: {TOO_DEEP}") from None


def _to_view(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_TAG: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        viewed = {key: _to_view(item) for key, item in value.items()}
        return {DICT_TAG: viewed} if len(value) == 1 and next(iter(value)) in _TAGS else viewed
    if isinstance(value, (list, tuple)):
        return [_to_view(item) for item in value]
    return value


def from_view(view: Any, where: str = "value") -> Any:
    """Return the value ``view`` stands for (the inverse of `to_view`).

    ``where`` names the place in error messages (``value["a"][0]``).

    Raises:
        ValueError: a ``$bytes`` tag whose content is not base64 text, a ``$dict`` tag whose
            content is not an object, or nesting deeper than Python's recursion allows.

    """
    try:
        return _from_view(view, where)
    except RecursionError:
        raise ValueError(f"{where}: {TOO_DEEP}") from None


def _from_view(view: Any, where: str) -> Any:
    if isinstance(view, dict):
        if len(view) == 1:
            ((name, content),) = view.items()
            if name == BYTES_TAG:
                return _bytes_of(content, where)
            if name == DICT_TAG:
                if not isinstance(content, dict):
                    raise ValueError(
                        f'{where}: {{"$dict": ...}} holds an object (a dict written literally), '
                        f"not {json.dumps(content)[:60]}"
                    )
                return {key: _from_view(item, f"{where}[{key!r}]") for key, item in content.items()}
        return {key: _from_view(item, f"{where}[{key!r}]") for key, item in view.items()}
    if isinstance(view, list):
        return [_from_view(item, f"{where}[{index}]") for index, item in enumerate(view)]
    return view


def _bytes_of(content: Any, where: str) -> bytes:
    if not isinstance(content, str):
        raise ValueError(
            f'{where}: {{"$bytes": ...}} holds base64 text, not {json.dumps(content)[:60]}'
        )
    try:
        return base64.b64decode(content.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f'{where}: {{"$bytes": ...}} is not valid base64 ({exc})') from None


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Return the JSON text of ``value``'s view: sorted keys, non-ASCII kept as is."""
    viewed = to_view(value)
    try:
        return json.dumps(viewed, ensure_ascii=False, sort_keys=True, indent=indent)
    except RecursionError:
        raise ValueError(f"value: {TOO_DEEP}") from None


def loads(text: str, where: str = "value") -> Any:
    """Return the value the JSON text ``text`` stands for.

    Raises:
        ValueError: the text is not JSON (`json.JSONDecodeError`, with line and column), or a
            tag in it is malformed.

    """
    return from_view(parse(text, where), where)


def parse(text: str, where: str = "value") -> Any:
    """Return `json.loads` of ``text``; nesting deeper than recursion allows is a ValueError.

    Raises:
        ValueError: not JSON (`json.JSONDecodeError`), a number beyond a float's range, or
            nested too deeply.

    """

    def finite_float(number: str) -> float:
        # json.loads would read 1e400 as inf: a value nobody typed (a msgpack store keeps it).
        parsed = float(number)
        if math.isinf(parsed):
            raise ValueError(
                f"{where}: the number {number[:40]} is beyond the range of a float; write it as "
                "a string to keep it, or Infinity if infinity is meant (a msgpack store holds it)"
            )
        return parsed

    try:
        return json.loads(text, parse_float=finite_float)
    except RecursionError:
        raise ValueError(f"{where}: {TOO_DEEP}") from None
