"""What a change is, and where a watch keeps the changes it has not delivered yet.

`Change` and `Filter` are what watchers, the hub (`_watch.ChangeHub`) and consumers share;
`digest_of` stands for a record's bytes wherever a watcher remembers what it saw; `ChangeQueue`
is a watch's bounded backlog. Loaded with the first watch, never at import.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
from typing import Any, Literal

from ._types import Keys

Kind = Literal["set", "cleared"]
Origin = Literal["local", "external"]
UNDECODABLE: Any = object()
"""The value a watcher offers for bytes that do not decode: warned about, never delivered."""
WATCH_BACKLOG = 256
"""Undelivered changes a watch keeps as they came; beyond, a record's pending change is
replaced by its newest, so a consumer that falls behind costs memory per record, not per write."""


def digest_of(data: bytes) -> bytes:
    """Return 16 bytes that stand for a record's bytes: all the hub and the file index keep."""
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to one record.

    ``value`` is the new value for ``"set"``, `NoValue` for ``"cleared"``. ``origin`` is
    ``"local"`` for writes through this backend instance and ``"external"`` for anything else
    (another process, another instance, a person editing a file, ``git checkout``).
    """

    kind: Kind
    group: str
    keys: Keys
    value: Any
    origin: Origin


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which changes a watch or subscription receives: a group (None: all) and a key prefix."""

    group: str | None
    prefix: Keys

    def matches(self, group: str, keys: Keys) -> bool:
        if self.group is not None and group != self.group:
            return False
        return keys[: len(self.prefix)] == self.prefix


class ChangeQueue:
    """A watch's undelivered changes: in the order they came, bounded by records, not writes.

    Up to `WATCH_BACKLOG` changes are kept as they came. Beyond that, a change to a record that
    already has one pending replaces it, and goes to the end: the consumer then receives each
    record's latest state, in the order those states were made. A record rewritten 20,000
    times while the consumer looks away costs one pending change, not 20,000.
    """

    def __init__(self) -> None:
        self._changes: collections.OrderedDict[int, Change] = collections.OrderedDict()
        self._newest: dict[tuple[str, Keys], int] = {}  # record -> its newest pending change
        self._serial = 0
        self._ended = False
        self._arrived = asyncio.Event()

    def put(self, change: Change) -> None:
        record = (change.group, change.keys)
        if len(self._changes) >= WATCH_BACKLOG:
            superseded = self._newest.get(record)
            if superseded is not None:
                del self._changes[superseded]
        self._serial += 1
        self._changes[self._serial] = change
        self._newest[record] = self._serial
        self._arrived.set()

    def end(self) -> None:
        """No more changes: `get` returns None once the pending ones are delivered."""
        self._ended = True
        self._arrived.set()

    def empty(self) -> bool:
        return not self._changes

    async def get(self) -> Change | None:
        while not self._changes:
            if self._ended:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        serial, change = self._changes.popitem(last=False)
        record = (change.group, change.keys)
        if self._newest.get(record) == serial:
            del self._newest[record]
        return change
