"""What the file watcher reads: the record files that events or listings name, a slice per hop.

Reading and decoding run on the backend's reader threads, `READ_SLICE` files per hop, while the
loop publishes the slice before. A file that cannot be read (gone, a symlink or FIFO the reader
refuses) is skipped, logged at debug: one bad file never stops the watcher. Only the record a
file holds and a digest of its bytes come back, never the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from typing import Any, AsyncIterator, Callable

from ._changes import UNDECODABLE, digest_of
from ._coding import conflict_message
from ._file_events import Batch
from ._file_jobs import FileJobs, forget
from ._file_layout import group_of_directory, is_record_name
from ._file_read import HandMadeWarnings, record_files
from ._merge_text import has_conflict_markers
from ._types import Keys, NoValue
from .errors import StorageError

logger = logging.getLogger(__name__)

READ_SLICE = 256
"""Record files read and decoded per hop to a thread."""
SKIPPED: Any = object()
"""The value of a file that could not be read: leave the record as it was."""
Read = tuple[str, str, "Keys | None", "bytes | None", Any]
"""What reading a record file found: (path, group, keys, digest, value); keys None: the file is
gone (value `NoValue`), unreadable (`SKIPPED`) or undecodable (`UNDECODABLE`)."""


class RecordFileReader:
    """Finds and reads the record files of the store in ``directory`` for its watcher.

    ``read_file`` reads a record file (None if it is gone); ``decode`` returns the keys and
    value of a group's record file from its bytes and path; both run on ``jobs``' threads.
    A directory made by hand for a group (``USER/``) is not read: ``hand_made`` warns of it.
    """

    def __init__(
        self,
        directory: str,
        extension: str,
        *,
        read_file: Callable[[str], bytes | None],
        decode: Callable[[str, bytes, str], tuple[Keys, Any]],
        jobs: FileJobs,
        hand_made: HandMadeWarnings,
    ) -> None:
        self._directory = directory
        self._hand_made = hand_made
        self._extension = extension
        self._read_file = read_file
        self._decode = decode
        self._jobs = jobs

    # --- on threads -------------------------------------------------------------------------

    def watched_directories(self) -> list[str]:
        """Return the store's directory and each group directory in it (no symlinks)."""
        directories = [self._directory]
        with contextlib.suppress(OSError), os.scandir(self._directory) as entries:
            for entry in entries:
                if group_of_directory(entry.name) is None:
                    self._hand_made.look(entry.name)
                elif entry.is_dir(follow_symlinks=False):
                    directories.append(entry.path)
        return directories

    def list_record_files(self) -> list[str]:
        """Return every record file of the store (none if its directory is gone)."""
        return [path for group in self.watched_directories()[1:] for path in self._files_of(group)]

    def records_behind(self, events: Batch) -> tuple[set[str], list[str]]:
        """Return the record files that changed paths stand for, and group directories changed.

        A group directory created, moved in, removed or moved out stands for every record file
        in it now (listed here) and every one the index holds under it (the caller adds those).
        """
        records: set[str] = set()
        groups: list[str] = []
        for _change, path in events:
            parts = os.path.relpath(path, self._directory).split(os.sep)
            if group_of_directory(parts[0]) is None:
                if len(parts) == 1:  # a person's USER/, say: warned of once
                    self._hand_made.look(parts[0])
                continue  # bookkeeping (.locks, the marker, temp files) or not ours
            if len(parts) == 1:
                groups.append(path)
                if os.path.isdir(path):
                    records.update(self._files_of(path))
            elif len(parts) == 2 and is_record_name(parts[1], self._extension):
                records.add(path)
        return records, groups

    def _files_of(self, directory: str) -> list[str]:
        """Return a group directory's record files; none if it cannot be listed."""
        try:
            return list(record_files(directory, self._extension))
        except (OSError, StorageError) as exc:
            logger.debug("watcher skipped %s: %s", directory, exc)
            return []

    def _read_records(self, paths: list[str]) -> list[Read]:
        return [self._read_record(path) for path in paths]

    def _read_record(self, path: str) -> Read:
        group = group_of_directory(os.path.basename(os.path.dirname(path))) or ""
        try:
            data = self._read_file(path)
        except (OSError, StorageError) as exc:  # a symlink, a FIFO, no permission...
            logger.debug("watcher skipped %s: %s", path, exc)
            return path, group, None, None, SKIPPED
        if data is None:
            return path, group, None, None, NoValue
        try:
            keys, value = self._decode(group, data, path)
        except Exception:  # an editor may be half-way through rewriting it: look again
            if has_conflict_markers(data):  # git's merge, not a save half-way: say so once
                logger.warning("%s", conflict_message(path))
                return path, group, None, None, SKIPPED
            return path, group, None, None, UNDECODABLE
        return path, group, keys, digest_of(data), value

    # --- on the loop ------------------------------------------------------------------------

    async def read_slices(
        self, find: Callable[[], list[str]], stop: asyncio.Event
    ) -> AsyncIterator[list[Read]]:
        """Yield the records in the files ``find`` names, a slice at a time, until ``stop``.

        ``find`` runs on a thread, in one hop with the first slice's reads; while the loop
        publishes a slice, a thread reads the next.
        """

        def first() -> tuple[list[str], list[Read]]:
            paths = find()
            return paths, self._read_records(paths[:READ_SLICE])

        paths, found = await self._jobs.read(first)
        pending: asyncio.Future[list[Read]] | None = None
        try:
            for start in range(READ_SLICE, len(paths), READ_SLICE):
                part = paths[start : start + READ_SLICE]
                pending = asyncio.ensure_future(
                    self._jobs.read(functools.partial(self._read_records, part))
                )
                yield found
                if stop.is_set():
                    return
                found, pending = await pending, None
            yield found
        finally:
            if pending is not None:
                forget(pending)
