"""A scan's bytes decoded by the policy: the records a backend hands over undecoded.

`StorageBackend.get_all_by_key_prefix` yields the records a backend decoded as it read them
(``_scan_records``) as they come; the rest, bytes (every record of most backends), are decoded
here a bounded part at a time, let settle if they may be half-way through a save, and reported
to ``on_corrupt``.
"""

from __future__ import annotations

from typing import Any, Callable

from ._hooks import ScanItem
from ._settling import SettlesReads
from ._slices import LARGE_RECORD
from ._types import Keys
from .errors import CorruptRecordError

CorruptHandler = Callable[[CorruptRecordError], object]
"""What ``on_corrupt`` is given: called with each record that does not decode."""


class DecodesScans(SettlesReads):
    """Decodes the bytes a scan yields, giving the loop its turns."""

    async def _scanned(
        self,
        group: str,
        prefix: Keys,
        batch: list[ScanItem],
        record_of: Callable[[Keys | None, bytes, str | None], tuple[Keys, Any]],
        on_corrupt: CorruptHandler | None,
    ) -> tuple[list[tuple[Keys, Any]], list[ScanItem]]:
        """Return the records under ``prefix`` of a scan's ``batch`` of bytes, and the items left.

        Decoded values are held until yielded: no more than about `LARGE_RECORD` bytes' worth
        (or one large record) is decoded at once; the items after it are left for next time.

        A record that does not decode is let settle (`_settled_record`), then raised or passed
        to ``on_corrupt``; one removed meanwhile is left out.
        """
        width = len(prefix)
        records: list[tuple[Keys, Any]] = []
        decoding = 0
        for index, (known_keys, data, source) in enumerate(batch, 1):
            if decoding > LARGE_RECORD:
                return records, batch[index - 1 :]
            # A batch is decoded on the loop: without turns, a task iterating a group whose
            # batches are already read would hold the loop for the whole group.
            if self._turn_due():
                await self._give_turn()
            try:
                if isinstance(data, CorruptRecordError):
                    raise data
                decoding += len(data)
                try:
                    record = (
                        record_of(known_keys, data, source) if len(data) <= LARGE_RECORD else None
                    )
                except CorruptRecordError:
                    record = None
                if record is None:  # large (decoded on a thread), or perhaps mid-save
                    record = (await self._settled_record(group, known_keys, data, source))[1]
                    if record is None:
                        continue  # removed meanwhile
            except CorruptRecordError as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(exc)
                continue
            # A backend that learns keys only by decoding leaves the prefix test to us.
            if known_keys is None and record[0][:width] != prefix:
                continue
            records.append(record)
        return records, []
