"""The checks a write of records passes before anything happens, and update's per-record locks.

`StorageBackend` mixes this in (and `_original.OriginalContract`, through it): open, names and
keys, writable, and not a write of the record whose update function is running (which would be
overwritten, or wait for itself).
"""

from __future__ import annotations

import inspect
from typing import Any

from ._coding import record_label
from ._locks import KeyLocks, check_not_updating, running_update_function, update_running
from ._publishing import Publishes
from ._types import Keys, UpdateFunction
from ._validate import check_group_name, check_record

LockId = tuple[int, str, Keys]


class ChecksWrites(Publishes):
    """Checks of writes, and the locks that keep this process's updates of a record in turn."""

    _update_locks: KeyLocks | None = None  # made by the first update

    def _checked_write(
        self, group_name: str, keys: tuple[str, ...], action: str
    ) -> tuple[str, Keys]:
        """Check a write of one record: open, name and keys, writable, not from its own update."""
        self._check_open()
        group, checked = check_record(group_name, keys)
        self._check_write(group, checked, action)
        return group, checked

    def _check_write(self, group: str, keys: Keys, action: str) -> None:
        """`_checked_write` of checked names and keys (a handle's): all but their check."""
        self._check_open()
        self._check_writable()
        if update_running():  # the lock id and the label cost a set that no update runs around
            check_not_updating(
                self._lock_id(group, keys), action, lambda: record_label(group, keys)
            )

    def _record_locks(self) -> KeyLocks:
        """Return the locks that keep this process's updates of one record one at a time."""
        if self._update_locks is None:
            self._update_locks = KeyLocks()
        return self._update_locks

    def _lock_id(self, group: str, keys: Keys) -> LockId:
        return (id(self), group, keys)

    def _checked_group(self, group_name: str) -> str:
        self._check_open()
        return check_group_name(group_name)

    async def _call_update_function(self, fn: UpdateFunction, current: Any, lock_id: LockId) -> Any:
        with running_update_function(lock_id):
            new = fn(current)
            if inspect.isawaitable(new):
                new = await new
        return new
