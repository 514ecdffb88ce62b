"""Checks of group names, keys and values: the one place every backend's input passes through."""

from __future__ import annotations

import math
from typing import Any, cast

from ._types import Keys
from .errors import InvalidKeyError, InvalidNameError, InvalidValueError

MAX_KEYS = 5
MAX_DEPTH = 256
"""Deepest nesting accepted: every codec reads it back, and a value containing itself stops here."""

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""msgpack's range, kept for every codec so that a store converts to any other codec losslessly."""

_SUPPORTED = "None, bool, int, float, str, list, tuple, dict with str keys"


def _is_utf8_encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_group_name(name: object) -> str:
    """Return ``name`` as a plain `str`, or raise `InvalidNameError` saying what is wrong."""
    if type(name) is not str:
        if not isinstance(name, str):
            raise InvalidNameError(
                f"group name must be a str, not {type(name).__name__} {name!r}", name=name
            )
        name = str.__str__(name)
    if not name:
        raise InvalidNameError("group name must not be empty", name=name)
    if not _is_utf8_encodable(name):
        raise InvalidNameError(
            f"group name {name!r} holds a lone surrogate and cannot be stored as UTF-8", name=name
        )
    return name


def check_keys(keys: object, group: str | None = None) -> Keys:
    """Return ``keys`` as a tuple of 1 to 5 plain `str`, else raise `InvalidKeyError`.

    A single `str` is one key, never a sequence of characters.
    """
    if isinstance(keys, str):
        keys = (keys,)
    elif not isinstance(keys, tuple):
        raise InvalidKeyError(
            f"keys must be str or a tuple of str, not {type(keys).__name__} {keys!r}",
            group=group,
            keys=keys,
        )
    count = len(keys)
    if not 0 < count <= MAX_KEYS:
        raise InvalidKeyError(
            f"a record has 1 to {MAX_KEYS} keys, got {count}: {keys!r}", group=group, keys=keys
        )
    needs_copy = False
    for position, key in enumerate(keys):
        if type(key) is not str:
            if not isinstance(key, str):
                raise InvalidKeyError(
                    f"key {position} of {keys!r} is {type(key).__name__} {key!r}: keys must be str",
                    group=group,
                    keys=keys,
                )
            needs_copy = True  # a str subclass (StrEnum...) is stored as the plain str it holds
        if not _is_utf8_encodable(key):
            raise InvalidKeyError(
                f"key {position} of {keys!r} holds a lone surrogate and cannot be stored as UTF-8",
                group=group,
                keys=keys,
            )
    if needs_copy:
        return tuple(str.__str__(key) for key in keys)
    return cast(Keys, keys)  # checked above: every item is a str


def check_prefix(prefix: tuple[object, ...], group: str | None = None) -> Keys:
    """Like `check_keys`, but 0 keys (the whole group) are allowed."""
    if not prefix:
        return ()
    return check_keys(prefix, group)


def check_value(value: object, *, allow_bytes: bool, allow_non_finite: bool) -> None:
    """Raise `InvalidValueError` naming the first part of ``value`` a codec cannot carry faithfully.

    Codecs alone would quietly change some values (msgpack stores ``{1: 2}``, json turns the key
    into ``"1"``, both accept an IntEnum and give back an int), so we check the type of every part.
    """
    _check(value, "value", 0, allow_bytes, allow_non_finite)


def _check(value: object, path: str, depth: int, allow_bytes: bool, allow_non_finite: bool) -> None:
    kind = type(value)
    if kind is list or kind is tuple:
        _check_depth(path, depth)
        for index, item in enumerate(cast("list[Any]", value)):
            _check(item, f"{path}[{index}]", depth + 1, allow_bytes, allow_non_finite)
    elif kind is dict:
        _check_depth(path, depth)
        for key, item in cast("dict[Any, Any]", value).items():
            if type(key) is not str:
                raise InvalidValueError(
                    f"{path}: dict key {key!r} is {type(key).__name__}: dict keys must be str",
                    path=path,
                )
            _check(item, f"{path}[{key!r}]", depth + 1, allow_bytes, allow_non_finite)
    else:
        _check_scalar(value, path, allow_bytes, allow_non_finite)


def _check_depth(path: str, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise InvalidValueError(
            f"{path}: nested deeper than {MAX_DEPTH} levels (does the value contain itself?)",
            path=path,
        )


def _check_scalar(value: object, path: str, allow_bytes: bool, allow_non_finite: bool) -> None:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return
    if kind is int:
        if not INT_MIN <= cast(int, value) <= INT_MAX:
            raise InvalidValueError(
                f"{path}: int {value} is outside the storable range {INT_MIN} to {INT_MAX}",
                path=path,
            )
    elif kind is float:
        if not allow_non_finite and not math.isfinite(cast(float, value)):
            raise InvalidValueError(
                f"{path}: {value} cannot be stored by this codec (JSON has no NaN or "
                "Infinity): store a string or use the msgpack codec",
                path=path,
            )
    elif kind is bytes:
        if not allow_bytes:
            raise InvalidValueError(
                f"{path}: bytes cannot be stored by this codec: encode them (base64) or use "
                "the msgpack codec",
                path=path,
            )
    else:
        supported = _SUPPORTED + (", bytes" if allow_bytes else "")
        raise InvalidValueError(
            f"{path}: {kind.__name__} {_short_repr(value)} cannot be stored (supported: "
            f"{supported}); convert it first",
            path=path,
        )


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_store_name(name: object, unique_identifier: object) -> tuple[str, str]:
    """Return a store's ``(name, unique_identifier)`` as strings, or raise `InvalidNameError`.

    The identifier may be an int (as in the original API) or a str; ``1`` and ``"1"`` name the
    same store.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"store name must be a non-empty str, not {name!r}", name=name)
    if isinstance(unique_identifier, bool) or not isinstance(unique_identifier, (int, str)):
        raise InvalidNameError(
            f"unique_identifier must be an int or a str, not {type(unique_identifier).__name__} "
            f"{unique_identifier!r}",
            name=unique_identifier,
        )
    identifier = str(unique_identifier)
    for label, text in (("store name", name), ("unique_identifier", identifier)):
        if "\x00" in text or not _is_utf8_encodable(text):
            raise InvalidNameError(
                f"{label} {text!r} holds a NUL or a lone surrogate: use printable text", name=text
            )
    return str.__str__(name), identifier
