"""PostgreSQL's writes reach the server in the order they were made, wherever they overlap.

The pool runs statements on several connections at once, so a write made later could commit
first: of two writes of one record, or of a write and a clear of a group or key prefix holding
that record. Each write and clear waits, before its statement is sent, for the earlier ones it
overlaps that have not finished; writes of different records, and clears of other prefixes,
still run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

from ._types import Keys

_Entry = tuple[Keys, bool, "asyncio.Future[None]"]


def _overlap(keys: Keys, prefix: bool, other: Keys, other_prefix: bool) -> bool:
    """Whether two writes (a record's keys, or a clear's prefix) may touch the same record."""
    if prefix and other_prefix:
        shorter = min(len(keys), len(other))
        return keys[:shorter] == other[:shorter]
    if prefix:
        return other[: len(keys)] == keys
    if other_prefix:
        return keys[: len(other)] == other
    return keys == other


class WriteOrder:
    """The writes and clears of one backend not finished yet, per group, in the order made."""

    def __init__(self) -> None:
        self._running: dict[str, list[_Entry]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, group: str, keys: Keys, *, prefix: bool = False) -> AsyncIterator[None]:
        """Wait for the earlier writes overlapping ``keys`` (a prefix, if ``prefix``) to finish.

        Enter it before the operation's first suspension: the order is the one in which the
        operations were made. The turn ends when the block does, also when it is cancelled (a
        statement cancelled mid-way settles first: `Statements` waits for it).
        """
        entries = self._running.setdefault(group, [])
        earlier = [
            done for other, is_prefix, done in entries if _overlap(keys, prefix, other, is_prefix)
        ]
        entry: _Entry = (keys, prefix, asyncio.get_running_loop().create_future())
        entries.append(entry)
        try:
            if earlier:  # wait, not await: a cancelled waiter must not cancel the earlier ones
                await asyncio.wait(earlier)
            yield
        finally:
            entries.remove(entry)
            if not entries:
                del self._running[group]
            entry[2].set_result(None)
