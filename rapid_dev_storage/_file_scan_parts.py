"""FileBackend's scans, made at a store's first scan: a process that never scans loads none.

`FileBackend`'s scan hooks only hand over to the `ScanParts` its first scan makes (loading this
module, `_file_scan` and `_file_scan_decode` with forks held off: `_threads.loading`), as
`_file_parts` makes the write machinery at the first write. Start-up is measured
(tools/bench_startup.py): the command line's ``get`` never scans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator

from ._file_errors import unreadable
from ._file_io import read_file
from ._file_layout import group_directory_name
from ._file_scan import scan_group
from ._file_scan_decode import RecordOf, quick_decoder, scan_decoder
from ._hooks import ScanBatch, ScanItem

if TYPE_CHECKING:
    from ._file import FileBackend
    from ._file_scan_decode import Quick


class ScanParts:
    """A file store's scans: its records read a slice at a time, its usual ones decoded as read.

    A ``backend`` that decodes records as FileBackend does (no subclass's own
    ``_decode_record``: its ``_usual_records``) has its usual records decoded in one step
    (`_file_scan_decode`); any other's take the policy's long path. (One scanning its own way,
    its own ``_scan``, is not asked for `records`.)
    """

    def __init__(self, backend: FileBackend) -> None:
        self._backend = backend
        usual = backend._usual_records
        self._quick = quick_decoder(backend.codec, backend._extension) if usual else None

    def items(self, group: str) -> AsyncIterator[list[ScanItem]]:
        """Yield every record of ``group`` as its bytes, in batches: the ``_scan`` hook."""
        return _bytes_only(self._batches(group, None))

    def records(self, group: str) -> AsyncIterator[ScanBatch]:
        """Yield ``group``'s usual records decoded as read, the rest as bytes: ``_scan_records``."""
        return self._batches(group, self._quick)

    def decoder(self, long_path: RecordOf) -> RecordOf:
        """Return what the policy decodes a scan's bytes with: the ``_scan_decoder`` hook."""
        return scan_decoder(self._quick, long_path)

    async def read_again(self, group: str, source: str) -> bytes | None:
        """Read again a record a scan found (perhaps mid-save): the ``_read_again`` hook.

        By its path (a misnamed file's keys name another), on a thread (a rare path).
        """

        def read_again() -> bytes | None:
            try:
                return read_file(source)
            except OSError as exc:  # a FIFO or a link there now: reported as the scan's read would
                raise unreadable(group, source, exc) from exc

        return await self._backend._jobs.read(read_again, location=source)

    def _batches(self, group: str, quick: Quick | None) -> AsyncIterator[ScanBatch]:
        backend = self._backend
        if group_directory_name(group) != group:  # USER/ beside ^user/? One lstat, if so.
            backend._hand_made.look(group, listed=False)
        return scan_group(
            backend._jobs,
            backend._group_directory(group),
            group,
            backend._extension,
            backend._check_open,
            backend._inline_limit,
            quick,
        )


async def _bytes_only(batches: AsyncIterator[ScanBatch]) -> AsyncIterator[list[ScanItem]]:
    async for _, batch in batches:  # no records: decoded by no one
        yield batch
