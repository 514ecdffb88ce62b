"""Backends written for the original seven-method contract, run behind `Storage`.

Such a backend subclasses `StorageBackend`, implements none of its hooks and overrides the seven
methods of the original library instead: `write_data`, `get_data`, `clear_by_keys`,
`clear_group`, `clear_by_key_prefix`, `get_all_by_group` and `get_all_by_key_prefix`. `Storage`
runs it through `OriginalContract` (see `adapt`), which adds what that contract lacked as far as
it can: group names and keys are checked before the backend sees them; `update` is a read and a
write under an in-process lock per record (atomic within the process only: the contract has no
compare-and-swap); `list_groups` and watching raise `UnsupportedOperationError` (the contract
can neither list groups nor report changes); `close` releases nothing (it has no close).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, AsyncIterator

from ._backend import CorruptHandler, StorageBackend
from ._hooks import implements_no_hook
from ._types import AnyStorable, Keys, NoValue, UpdateFunction
from ._validate import check_prefix, check_record
from .errors import InvalidKeyError, StoreClosedError, UnsupportedOperationError

if TYPE_CHECKING:
    from ._watch import Callback, Subscription, Watch

# One adapter per backend while anything uses it, so that every handle's updates of a record
# share one lock. Keyed by id: the adapter holds its backend, so the id stays its own meanwhile.
_adapters: weakref.WeakValueDictionary[int, OriginalContract] = weakref.WeakValueDictionary()


def adapt(backend: StorageBackend) -> StorageBackend:
    """Return ``backend``, or the `OriginalContract` running it if it implements no hook."""
    if isinstance(backend, OriginalContract) or not implements_no_hook(type(backend)):
        return backend
    adapter = _adapters.get(id(backend))
    if adapter is None:
        adapter = _adapters[id(backend)] = OriginalContract(backend)
    return adapter


class OriginalContract(StorageBackend):
    """A backend of the original contract, with names and keys checked and `update` added."""

    def __init__(self, backend: StorageBackend) -> None:
        super().__init__()
        self.codec = backend.codec  # as the backend has it: the backend encodes, not us
        self._original = backend
        self._name = type(backend).__name__
        self.location = backend.location
        self.read_only = backend.read_only

    async def write_data(self, group_name: str, *keys: str, value: AnyStorable) -> None:
        """Store ``value`` through the backend's own `write_data`."""
        group, checked = self._checked_write(group_name, keys, "set_value()")
        await self._original.write_data(group, *checked, value=value)

    async def get_data(self, group_name: str, *keys: str) -> Any:
        """Return the value the backend's own `get_data` returns."""
        self._check_open()
        group, checked = check_record(group_name, keys)
        return await self._original.get_data(group, *checked)

    async def clear_by_keys(self, group_name: str, *keys: str) -> None:
        """Clear the record through the backend's own `clear_by_keys`."""
        group, checked = self._checked_write(group_name, keys, "clear_value()")
        await self._original.clear_by_keys(group, *checked)

    async def clear_group(self, group_name: str) -> None:
        """Clear the group through the backend's own `clear_group`."""
        group = self._checked_group(group_name)
        self._check_writable()
        await self._original.clear_group(group)

    async def clear_by_key_prefix(self, group_name: str, *keys: str) -> None:
        """Clear the prefix (1 to 5 keys) through the backend's own `clear_by_key_prefix`."""
        group, prefix = self._checked_prefix(group_name, keys)
        self._check_writable()
        if not prefix:
            raise InvalidKeyError(
                "clearing by prefix needs at least one key: use clear_group() to clear the whole "
                f"group {group!r}",
                group=group,
                keys=prefix,
            )
        await self._original.clear_by_key_prefix(group, *prefix)

    def get_all_by_group(
        self, group_name: str, *, on_corrupt: CorruptHandler | None = None
    ) -> AsyncIterator[tuple[Keys, Any]]:
        """Iterate the backend's own `get_all_by_group` (it reports nothing to ``on_corrupt``)."""
        return self._original.get_all_by_group(self._checked_group(group_name))

    def get_all_by_key_prefix(
        self, group_name: str, *keys: str, on_corrupt: CorruptHandler | None = None
    ) -> AsyncIterator[tuple[Keys, Any]]:
        """Iterate the backend's own `get_all_by_key_prefix` (nothing goes to ``on_corrupt``)."""
        group, prefix = self._checked_prefix(group_name, keys)
        return self._original.get_all_by_key_prefix(group, *prefix)

    async def update_data(self, group_name: str, *keys: str, fn: UpdateFunction) -> Any:
        """Replace the value with ``fn(current)``: a read and a write under this process's lock.

        Atomic only within the process: the original contract has no compare-and-swap.
        """
        group, checked = self._checked_write(group_name, keys, "update()")
        lock_id = self._lock_id(group, checked)
        async with self._record_locks().hold(lock_id):
            current = await self._original.get_data(group, *checked)
            new = await self._call_update_function(fn, current, lock_id)
            if new is NoValue:
                await self._original.clear_by_keys(group, *checked)
            else:
                await self._original.write_data(group, *checked, value=new)
            return new

    async def list_groups(self) -> list[str]:
        """Refuse: the original contract cannot list groups.

        Raises:
            UnsupportedOperationError: always, naming the backend's class.

        """
        self._check_open()
        raise UnsupportedOperationError(
            f"{self._name} implements only the original contract, which cannot list groups: "
            "implement StorageBackend's hooks to list them"
        )

    async def close(self) -> None:
        """Refuse further use; the backend has nothing to release (the contract has no close)."""
        self._closed = True

    def watch_changes(self, group_name: str | None = None, *prefix: str) -> Watch:
        """Refuse: the original contract reports no changes.

        Raises:
            UnsupportedOperationError: always, naming the backend's class.

        """
        raise self._cannot_watch()

    async def subscribe_changes(
        self, callback: Callback, group_name: str | None = None, prefix: tuple[str, ...] = ()
    ) -> Subscription:
        """Refuse, as `watch_changes` does."""
        raise self._cannot_watch()

    def _cannot_watch(self) -> UnsupportedOperationError:
        self._check_open()
        return UnsupportedOperationError(
            f"{self._name} implements only the original contract: it cannot report changes "
            "(StorageBackend's hooks can)"
        )

    def _checked_prefix(self, group_name: str, keys: tuple[str, ...]) -> tuple[str, Keys]:
        group = self._checked_group(group_name)
        return group, check_prefix(keys, group)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store over {self._name} is closed")

    def __repr__(self) -> str:
        return f"OriginalContract({self._original!r})"
