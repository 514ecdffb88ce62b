"""Writes that wait: a record's writes still land in the order they were made.

A write is normally handed to the backend's ``_write`` at once, and every backend keeps one
record's writes in the order it receives them. A write of a large value cannot be: its check
and encode run on a thread first (`_snapshots.LargeValue`). While it does, a later write of that
record (or a clear of a prefix holding it) waits behind it, in a task of its own (`WaitingWrites`);
the record's next write waits behind that one, and so on. Once no write of a record waits,
its writes go straight to the backend again: the bookkeeping costs one dict lookup.

Cancelling the caller cancels its write's task, and the caller hears of it once the write has
settled, as for one handed to the backend at once: a write cancelled before it reached the
backend (still waiting, or encoding: the thread's bytes are dropped) never lands; one that
reached it follows the backend's rule (it lands, or never will, before the caller hears). The
writes waiting behind it wait until then. Closing the store waits for every waiting write.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Hashable, TypeVar

from ._types import Keys

Job = Callable[[], Awaitable[None]]
K = TypeVar("K", bound=Hashable)


class WaitingWrites:
    """The writes of one backend that wait for an earlier one: the last per record and group."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, Keys], asyncio.Task[None]] = {}
        self._groups: dict[str, asyncio.Task[None]] = {}  # clears of a prefix that wait

    def __bool__(self) -> bool:
        return bool(self._records or self._groups)

    def ahead_of_record(self, group: str, keys: Keys) -> list[asyncio.Task[None]]:
        """Return the waiting writes a write of ``keys`` made now must land after.

        Each is done once its write and every write ahead of it have settled (see `_add`).
        """
        ahead = []
        if (task := self._records.get((group, keys))) is not None:
            ahead.append(task)
        if (task := self._groups.get(group)) is not None:
            ahead.append(task)
        return ahead

    def ahead_of_prefix(self, group: str, prefix: Keys) -> list[asyncio.Task[None]]:
        """Return the waiting writes a clear of ``prefix`` (empty: the group) must land after."""
        width = len(prefix)
        ahead = [
            task
            for (task_group, keys), task in self._records.items()
            if task_group == group and keys[:width] == prefix
        ]
        if (task := self._groups.get(group)) is not None:
            ahead.append(task)
        return ahead

    def add_record_write(
        self, group: str, keys: Keys, ahead: list[asyncio.Task[None]], job: Job
    ) -> asyncio.Task[None]:
        """Run ``job``, a write of ``keys``, once ``ahead`` landed; later writes wait for it."""
        return self._add(self._records, (group, keys), ahead, job)

    def add_prefix_clear(
        self, group: str, ahead: list[asyncio.Task[None]], job: Job
    ) -> asyncio.Task[None]:
        """Run ``job``, a clear in ``group``, once ``ahead`` landed; later writes wait for it.

        Every later write of the group waits, not only those under the prefix: simpler, and rare.
        """
        return self._add(self._groups, group, ahead, job)

    def _add(
        self,
        last: dict[K, asyncio.Task[None]],
        key: K,
        ahead: list[asyncio.Task[None]],
        job: Job,
    ) -> asyncio.Task[None]:
        async def in_turn() -> None:
            if ahead:
                await asyncio.wait(ahead)  # their outcome is their callers' to see
            await job()

        async def settle() -> None:
            await asyncio.wait([task, *ahead])

        loop = asyncio.get_running_loop()
        task = loop.create_task(in_turn())
        # Later writes wait for this write *and* those ahead of it: a write cancelled before
        # its turn (even before its task first ran) is done at once, and a write behind it
        # waiting for it alone would overtake the ones it waited for.
        settled = loop.create_task(settle())
        last[key] = settled

        def done(finished: asyncio.Task[None]) -> None:
            if last.get(key) is finished:
                del last[key]

        settled.add_done_callback(done)
        return task

    async def drain(self) -> None:
        """Wait until no write waits (closing: every write made before lands first)."""
        while self:
            await asyncio.wait([*self._records.values(), *self._groups.values()])
