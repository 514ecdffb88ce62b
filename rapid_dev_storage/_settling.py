"""Reads that let a save settle: a record that does not decode but changed a moment ago.

A tool that writes a record file in place (nano, ``cp`` over it) leaves it half-written for a
moment; a read meeting it then would call it corrupt. `SettlesReads._settled_record` reads it
again while the backend says it may be half-way through such a save (`_changed_recently`),
before it reports it. Gets, updates and scans share the loop; the decoding itself is
`_coding.RecordCoding`'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._coding import RecordCoding
from ._slices import LARGE_RECORD
from ._types import Keys, NoValue
from .errors import CorruptRecordError

SETTLE_WAIT = 0.02
SETTLE_ATTEMPTS = 100
"""A record that changed a moment ago and does not decode is read again every 20 ms while it
keeps changing, for up to two seconds: long enough for an editor's in-place save to finish, also
on a loaded machine where the saving process waits for a core or the disk's journal."""


class SettlesReads(RecordCoding):
    """Reads of records that may be half-way through a save by a tool writing in place."""

    # --- optional hooks ---------------------------------------------------------------------

    def _changed_recently(self, group: str, keys: Keys | None, source: str | None = None) -> bool:
        """Whether the record was written within the last moment (by default never).

        A backend whose records people and tools edit in place (files) says so, so that a read
        racing a non-atomic save is retried instead of reported as corrupt. ``source``: where
        a scan found it (its keys may be None then).
        """
        return False

    async def _read_again(self, group: str, keys: Keys | None, source: str | None) -> bytes | None:
        """Read again a record that may be half-way through a save (see `_changed_recently`).

        ``source`` is where a scan found it; by default it is read by its keys.
        """
        if keys is None:  # a backend whose _scan yields no keys must override this hook
            raise self._missing_hook("_read_again")
        return await self._read(group, keys)

    # --- reading ----------------------------------------------------------------------------

    async def _read_value(self, group: str, keys: Keys) -> tuple[bytes | None, Any]:
        """Return a record's bytes and value (None and `NoValue` when absent).

        A record that does not decode but changed a moment ago may be half-way through a save
        by a tool that writes in place (nano, ``cp`` over it): it is read again for a moment
        (`_settled_record`) before it is called corrupt. A large record decodes off the loop.
        """
        data = await self._read(group, keys)
        data, record = await self._settled_record(group, keys, data, None)
        return data, NoValue if record is None else record[1]

    async def _settled_record(
        self, group: str, keys: Keys | None, data: bytes | None, source: str | None
    ) -> tuple[bytes | None, tuple[Keys, Any] | None]:
        """Return ``data`` and the record it holds, reading it again while a save settles.

        Gets and scans alike: while the record does not decode and `_may_settle` says it may be
        half-way through a save, it is read again (`_read_again`) every `SETTLE_WAIT`, at most
        `SETTLE_ATTEMPTS` times. Returns the bytes last read and their record; (None, None)
        when there is no record (any more).

        Raises:
            CorruptRecordError: it still does not decode once it has settled.

        """
        attempts = 0
        while data is not None:
            try:
                if len(data) > LARGE_RECORD:
                    return data, await self._off_loop(self._decode, group, keys, data, source)
                return data, self._record_of(group, keys, data, source)
            except CorruptRecordError:
                attempts += 1
                if attempts > SETTLE_ATTEMPTS or not self._may_settle(group, keys, data, source):
                    raise
            await asyncio.sleep(SETTLE_WAIT)
            data = await self._read_again(group, keys, source)
        return None, None

    def _may_settle(
        self, group: str, keys: Keys | None, data: bytes, source: str | None = None
    ) -> bool:
        """Whether a record that does not decode may be half-way through a save: read it again.

        git's conflict markers are no save half-way through: no use waiting.
        """
        from ._merge_text import has_conflict_markers  # noqa: PLC0415  (errors only)

        return self._changed_recently(group, keys, source) and not has_conflict_markers(data)
