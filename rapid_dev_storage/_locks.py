"""In-process order: per-record locks for `update` and its re-entry guards."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from typing import AsyncIterator, Callable, Hashable, Iterator

from .errors import ReentrantUpdateError

# The records whose update function is running in this task (and in tasks it starts). A write to
# one of them from inside its own update function would be overwritten, and a nested update of it
# would wait for itself forever: both fail loudly instead.
_updating: contextvars.ContextVar[frozenset[Hashable]] = contextvars.ContextVar(
    "rapid_dev_storage_updating", default=frozenset()
)


def update_running() -> bool:
    """Whether an update function runs in this context: only then can a write re-enter one."""
    return bool(_updating.get())


def check_not_updating(
    record: tuple[int, str, tuple[str, ...]], action: str, describe: Callable[[], str]
) -> None:
    """Raise if ``record`` (backend id, group, keys) is what the calling update is updating.

    ``describe()`` names the record for the message.
    """
    active = _updating.get()
    if active and record in active:
        raise ReentrantUpdateError(
            f"{action} of {describe()} from inside its own update() function: return the new "
            "value from the function instead",
            group=record[1],
            keys=record[2],
        )


@contextlib.contextmanager
def running_update_function(record: Hashable) -> Iterator[None]:
    """Mark ``record`` as being updated while its update function runs."""
    token = _updating.set(_updating.get() | {record})
    try:
        yield
    finally:
        _updating.reset(token)


class KeyLocks:
    """Asyncio locks created on demand per record and dropped when nobody holds or awaits them."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, record: Hashable) -> AsyncIterator[None]:
        """Hold ``record``'s lock."""
        lock, users = self._locks.get(record, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[record] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[record]
            if users == 1:
                del self._locks[record]
            else:
                self._locks[record] = (lock, users - 1)
