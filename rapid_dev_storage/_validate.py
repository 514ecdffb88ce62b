"""Checks of group names, keys and values: the one place every backend's input passes through."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

from ._slices import LARGE_RECORD
from ._types import Keys
from ._value_fits import INT_MAX, INT_MIN, MAX_DEPTH, value_fits
from .errors import InvalidKeyError, InvalidNameError, InvalidValueError

if TYPE_CHECKING:
    from ._codecs import Codec

MAX_KEYS = 5
_SUPPORTED = "None, bool, int, float, str, list, tuple, dict with str keys"


def _is_utf8_encodable(text: str) -> bool:
    """Whether ``text`` (a plain `str`: a subclass could lie in its methods) is valid UTF-8."""
    if str.isascii(text):
        return True
    try:
        str.encode(text, "utf-8")
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
    if type(keys) is str and str.isascii(keys):  # a handle's usual key: plain, and UTF-8
        return (keys,)
    if isinstance(keys, str):
        keys = (keys,)
    elif not isinstance(keys, tuple):
        raise InvalidKeyError(
            f"keys must be str or a tuple of str, not {type(keys).__name__} {keys!r}",
            group=group,
            keys=keys,
        )
    elif type(keys) is not tuple:
        keys = tuple(keys)  # a tuple subclass, materialised once: what is checked is what is kept
    count = len(keys)
    if not 0 < count <= MAX_KEYS:
        raise InvalidKeyError(
            f"a record has 1 to {MAX_KEYS} keys, got {count}: {keys!r}", group=group, keys=keys
        )
    needs_copy = False
    for position, given in enumerate(keys):
        key = given
        if type(key) is not str:
            if not isinstance(key, str):
                raise InvalidKeyError(
                    f"key {position} of {keys!r} is {type(key).__name__} {key!r}: keys must be str",
                    group=group,
                    keys=keys,
                )
            # A str subclass (StrEnum...) is stored as the plain str it holds; the copy is made
            # before any check, so that a subclass overriding isascii() or encode() cannot lie.
            key = str.__str__(key)
            needs_copy = True
        if not _is_utf8_encodable(key):
            raise InvalidKeyError(
                f"key {position} of {keys!r} holds a lone surrogate and cannot be stored as UTF-8: "
                "use valid Unicode text",
                group=group,
                keys=keys,
            )
    if needs_copy:
        return tuple(str.__str__(key) for key in keys)
    return cast(Keys, keys)  # checked above: every item is a plain str


def check_record(group: object, keys: tuple[object, ...]) -> tuple[str, Keys]:
    """Return a record's group name and keys as `check_group_name` and `check_keys` do.

    Names and keys of plain ASCII `str` (nearly all: every handle's) pass a quick look, a
    third of the full checks' cost on every get and set.
    """
    if (
        type(group) is str
        and group
        and str.isascii(group)
        and type(keys) is tuple
        and 0 < len(keys) <= MAX_KEYS
    ):
        for key in keys:
            if type(key) is not str or not str.isascii(key):
                break
        else:
            return group, cast(Keys, keys)
    name = check_group_name(group)
    return name, check_keys(keys, name)


def stored_keys_fit(keys: list[Any]) -> bool:
    """Whether keys read from a record are 1 to 5 plain `str` that `check_keys` would accept."""
    if not 0 < len(keys) <= MAX_KEYS:
        return False
    for key in keys:  # a loop, no all() over a generator: every record a scan reads asks
        if type(key) is not str or not (str.isascii(key) or _is_utf8_encodable(key)):
            return False
    return True


def check_prefix(prefix: tuple[object, ...], group: str | None = None) -> Keys:
    """Like `check_keys`, but 0 keys (the whole group) are allowed."""
    if not prefix:
        return ()
    return check_keys(prefix, group)


def check_value(value: object, *, allow_bytes: bool, allow_non_finite: bool) -> None:
    """Raise `InvalidValueError` naming the first part of ``value`` a codec cannot carry faithfully.

    Codecs alone would quietly change some values (msgpack stores ``{1: 2}``, json turns the key
    into ``"1"``, both accept an IntEnum and give back an int), so we check the type of every part.
    A fast walk answers yes or no; only a value it refuses is walked again, building the path
    (``value['a'][2]``) the error names: paths cost more than the whole check of a good value.
    """
    if not value_fits(value, 0, allow_bytes, allow_non_finite):
        _check(value, "value", 0, allow_bytes, allow_non_finite)
        raise InvalidValueError("value: cannot be stored")  # not reached: both walks agree


def unwritable_reason(value: object, *, allow_bytes: bool, allow_non_finite: bool) -> str | None:
    """Return why a value read from a store could not be written back (None: it could).

    Reads apply the same rule as writes, so that ``update(lambda v: v)`` never fails on a value
    ``get_value`` returned: what a write would refuse is reported as a corrupt record instead.
    """
    if value_fits(value, 0, allow_bytes, allow_non_finite):
        return None
    try:
        _check(value, "value", 0, allow_bytes, allow_non_finite)
    except InvalidValueError as exc:
        return str(exc)
    return "value: cannot be stored"  # not reached: both walks agree


def lone_surrogate_path(value: object, path: str = "value") -> tuple[str, str] | None:
    r"""Return where ``value`` holds a str (or dict key) with a lone surrogate, or None.

    As (its path, how a message names it): a dict key's path is its dict's, named
    ``value['a']: dict key '\udc00'``. No codec writes one (UTF-8 cannot carry it), but a
    JSON ``"\ud800"`` escape reads as one.
    """
    kind = type(value)
    if kind is str:
        return None if _is_utf8_encodable(cast(str, value)) else (path, path)
    if kind is dict:
        for key, item in cast("dict[Any, Any]", value).items():
            if type(key) is str and not _is_utf8_encodable(key):
                return path, f"{path}: dict key {key!r}"
            found = lone_surrogate_path(item, f"{path}[{key!r}]")
            if found is not None:
                return found
    elif kind is list or kind is tuple:
        for index, item in enumerate(cast("list[Any]", value)):
            found = lone_surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


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
        shown = path if len(path) <= 80 else f"{path[:40]}...{path[-20:]}"
        raise InvalidValueError(
            f"{shown}: nested deeper than {MAX_DEPTH} levels (does the value contain itself?)",
            path=path,
        )


def _shown_int(value: int) -> str:
    """Show an int in a message; one of thousands of digits by its size (str() refuses them)."""
    if value.bit_length() <= 256:
        return str(value)
    return f"{'-' if value < 0 else ''}2**{value.bit_length() - 1} or more in size"


def _check_scalar(value: object, path: str, allow_bytes: bool, allow_non_finite: bool) -> None:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return
    if kind is int:
        if not INT_MIN <= cast(int, value) <= INT_MAX:
            raise InvalidValueError(
                f"{path}: int {_shown_int(cast(int, value))} is outside the storable range "
                f"{INT_MIN} to {INT_MAX}",
                path=path,
            )
    elif kind is float:
        if not allow_non_finite and not math.isfinite(cast(float, value)):
            raise InvalidValueError(
                f"{path}: {value} cannot be stored by this codec (JSON has no NaN or "
                "Infinity): store a string or use the msgpack codec",
                path=path,
            )
    elif kind is bytes or kind is bytearray or kind is memoryview:  # read back as bytes
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
    # Plain copies first: a subclass could lie in __contains__, __str__ or encode().
    name = str.__str__(name)
    if isinstance(unique_identifier, int):
        identifier = int.__repr__(unique_identifier)
    else:
        identifier = str.__str__(unique_identifier)
    for label, text in (("store name", name), ("unique_identifier", identifier)):
        if "\x00" in text or not _is_utf8_encodable(text):
            raise InvalidNameError(
                f"{label} {text!r} holds a NUL or a lone surrogate: use printable text", name=text
            )
    return name, identifier


def unstorable_reason(codec: Codec, data: bytes, value: Any) -> str | None:
    """Why a get refuses the record ``data``, which decoded to ``value``; None: it does not.

    The rule a read shares with a write (what a write refuses a read refuses too), once:
    `_coding.RecordCoding._decode` asks it, and so does fsck, so that it reports every record a get
    refuses (an ext type such as msgpack's Timestamp, a bytes dict key, nesting over
    `MAX_DEPTH`...). The codec's proof from the bytes first (not for a large record, whose
    C pass would hold the GIL), then the walk.
    """
    proof = getattr(codec, "surely_storable", None)
    if proof is not None and len(data) <= LARGE_RECORD and proof(data):
        return None
    return unwritable_reason(
        value, allow_bytes=codec.allows_bytes, allow_non_finite=codec.allows_non_finite
    )
