"""Shared types: the `NoValue` sentinel and the shapes of keys and values."""

from __future__ import annotations

import enum
from types import TracebackType
from typing import Any, Awaitable, Callable, Literal, Tuple, Union


class _NoValueType(enum.Enum):
    """Type of `NoValue`; an enum so that ``value is NoValue`` narrows types in mypy."""

    NoValue = "NoValue"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoValue"

    __str__ = __repr__


NoValue: Literal[_NoValueType.NoValue] = _NoValueType.NoValue
"""Returned where no value is stored: distinct from a stored ``None``, and falsy."""

Keys = Tuple[str, ...]
"""A composite key: 1 to 5 strings."""

AnyStorable = Union[
    None, bool, int, float, str, bytes, "list[Any]", "tuple[Any, ...]", "dict[str, Any]"
]
"""What a value may be. Containers nest; bytes only where the codec carries them."""

UpdateFunction = Callable[[Any], Any | Awaitable[Any]]
"""Given the current value (or `NoValue`), returns the new one, directly or as an awaitable."""


class ClosesOnExit:
    """``async with thing:`` ends with ``await thing.close()``, however the block ends."""

    async def close(self) -> None:
        """Release what the object holds; subclasses implement it."""
        raise NotImplementedError

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class NamesARecord:
    """What every record handle (async and sync) tells: its group and keys."""

    __slots__ = ()
    _group_name: str
    _keys: Keys

    @property
    def group_name(self) -> str:
        """The group this record belongs to."""
        return self._group_name

    @property
    def keys(self) -> Keys:
        """The record's keys."""
        return self._keys
