"""`FileWatcher`: turns file events in a FileBackend's directory into published changes.

A FileBackend owns one while anyone watches it. What it promises on a bad day:

- Reading and decoding run on the backend's reader threads, a slice of files per hop; the loop
  only publishes, and gives other tasks a turn about every millisecond (a checkout of thousands
  of files, or starting on a store of 20,000 records, never stalls it for long). What remains
  is watchfiles' own setup: it walks the tree holding the GIL, from any thread (measured: 58 ms
  for 20,000 files).
- It keeps per record file only the record it holds (for deletions); the hub keeps a digest of
  its bytes. Never the bytes: a watch on a store of large records would hold all of them.
- A file that does not decode (an editor half-way through, a merge's conflict markers) is read
  again in the background for half a second, all such files together, while other changes keep
  flowing; it never holds them up.
- A file that cannot be read (gone, a symlink or FIFO `read_file` refuses) is skipped, logged at
  debug: one bad file never stops the watcher. (What it reads, and how: `_file_watch_read`.)
- The OS watches an inode, not a name: when the store's directory is replaced (``rm -rf`` and
  created again, a move-swap by rsync, a restore or a deploy) the watch would go deaf. Its
  identity is checked every `DIRECTORY_CHECK_MS` and after every batch of events, which also
  tell when it was removed; then the watcher warns once, watches the new directory and reports
  the differences it finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from typing import TYPE_CHECKING, Callable

import watchfiles

from ._changes import UNDECODABLE
from ._file_events import Batch, DirectoryEvents
from ._file_jobs import FileJobs
from ._file_layout import group_of_directory
from ._file_read import HandMadeWarnings
from ._file_watch_read import SKIPPED, RecordFileReader
from ._turns import Yielder
from ._types import Keys, NoValue

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ._file import FileBackend

WATCH_STEP_MS = 10
WATCH_DEBOUNCE_MS = 100
"""File events are gathered for 10 ms of quiet, 100 ms at most, then applied together."""
WATCH_POLL_MS = 50
DIRECTORY_CHECK_MS = 500
"""How often, without events, the store's directory is checked for having been replaced."""
UNDECODABLE_RETRIES = 25
UNDECODABLE_WAIT = 0.02
"""A changed record that does not decode is read again for half a second before a warning."""
UNDECODABLE_PENDING = 1024
"""Undecodable files read again at a time; beyond, one is warned about at once."""
SORTED_INLINE = 500
"""Events of a batch looked through on the loop (about 2 ms); more go to a thread."""
AGAIN_ROUNDS = 5
"""Times a record a local write raced is read again at once; later, that write's event brings it."""


class FileWatcher:
    """Publishes what other writers do to a FileBackend's files, while anyone watches."""

    def __init__(
        self,
        backend: FileBackend,
        *,
        read_file: Callable[[str], bytes | None],
        jobs: FileJobs,
        force_polling: bool,
        hand_made: HandMadeWarnings,
    ) -> None:
        """Watch ``backend``'s directory, reading record files with ``read_file`` on ``jobs``.

        A directory a person makes for a group (``USER/``) is not watched: ``hand_made``
        warns of it, once, when the watch starts or the directory appears.
        """
        self._backend = backend
        self._jobs = jobs
        self._force_polling = force_polling
        self._directory = backend.location
        self._files = RecordFileReader(
            backend.location,
            backend.codec.extension,
            read_file=read_file,
            decode=lambda group, data, path: backend._decode_record(group, None, data, path),
            jobs=jobs,
            hand_made=hand_made,
        )
        self._index: dict[str, tuple[str, Keys]] = {}  # record file -> the record it holds
        self._task: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._watching = asyncio.Event()  # the first watch is set up (or the watcher ended)
        self._identity: tuple[int, int] | None = None
        self._retrying: dict[str, float] = {}  # undecodable record file -> when to give up
        self._retry_task: asyncio.Future[None] | None = None
        self._applying = asyncio.Lock()  # one reader of record files publishes at a time

    async def start(self) -> None:
        """Start watching, then read the index; events meanwhile are applied after it.

        Returns once the OS watches the directories: a write after that is reported.
        """
        self._stop, self._ready = asyncio.Event(), asyncio.Event()
        self._watching = asyncio.Event()
        self._identity = self._current_identity()
        # The watch is set up before the index is read, so nothing written meanwhile is missed.
        self._task = asyncio.ensure_future(self._watch())
        try:
            await self._watching.wait()
            await self._build_index()
        except BaseException:
            await self.stop()
            raise
        self._ready.set()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        self._ready.set()
        tasks = [task for task in (self._task, self._retry_task) if task is not None]
        if self._retry_task is not None:
            self._retry_task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = self._retry_task = None
        self._index = {}
        self._retrying = {}

    def published(self, group: str, keys: Keys, data: bytes | None) -> None:
        """Keep the index current after a local write: a later deletion needs it."""
        if self._task is not None:
            path = self._backend.record_path(group, keys)
            if data is None:
                self._index.pop(path, None)
            else:
                self._index[path] = (group, keys)

    # --- on the loop ------------------------------------------------------------------------

    async def _build_index(self) -> None:
        hub = self._backend._active_hub()
        self._index = {}
        pause = Yielder()
        async for found in self._files.read_slices(self._files.list_record_files, self._stop):
            for path, group, keys, digest, _value in found:
                await pause()
                if keys is not None:  # undecodable or unreadable: a read reports it
                    self._index[path] = (group, keys)
                    if hub is not None:
                        hub.know(group, keys, digest)

    async def _apply_records(self, find: Callable[[], list[str]], *, again: bool = False) -> None:
        """Read the record files ``find`` names (on a thread) and publish what changed.

        A record a local write raced (it began after the read was sent) is read again. A file
        that does not decode is retried for half a second from now, unless this is a retry
        (``again``).
        """
        hub = self._backend._active_hub()
        for _round in range(AGAIN_ROUNDS):
            if hub is None:
                return
            raced: list[str] = []
            mark = hub.mark()
            pause = Yielder()
            async with self._applying:
                async for found in self._files.read_slices(find, self._stop):
                    for path, group, keys, digest, value in found:
                        await pause()
                        if value is SKIPPED:
                            continue
                        if value is UNDECODABLE:
                            if not again:
                                self._retry_later(path)
                            continue
                        self._retrying.pop(path, None)
                        if keys is None:  # gone
                            gone = self._index.pop(path, None)
                            if gone is not None and not hub.offer(*gone, None, NoValue, mark):
                                self._index[path] = gone
                                raced.append(path)
                        else:
                            self._index[path] = (group, keys)
                            if not hub.offer(group, keys, digest, value, mark):
                                raced.append(path)
            if not raced:
                return
            find = raced.copy

    def _retry_later(self, path: str) -> None:
        """Read ``path`` again until it decodes: for half a second from its latest change."""
        if path not in self._retrying and len(self._retrying) >= UNDECODABLE_PENDING:
            logger.warning("%s changed and does not decode", path)
            return
        self._retrying[path] = time.monotonic() + UNDECODABLE_RETRIES * UNDECODABLE_WAIT
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.ensure_future(self._retry())

    async def _retry(self) -> None:
        """Read undecodable files again, all together, until they decode or time is up."""
        while self._retrying and not self._stop.is_set():
            await asyncio.sleep(UNDECODABLE_WAIT)
            began = time.monotonic()
            try:
                await self._apply_records(list(self._retrying).copy, again=True)
            except Exception:  # the store's directory gone, say: warn below, never stop
                logger.debug("reading undecodable files again failed", exc_info=True)
            # Still undecodable, and half a second has passed since the latest change to it.
            for path in [path for path, give_up in self._retrying.items() if give_up <= began]:
                del self._retrying[path]
                logger.warning("%s changed and stays undecodable", path)

    async def _apply_events(self, events: Batch) -> None:
        records, groups = await self._jobs.read(lambda: self._files.records_behind(events))
        if groups:
            under = tuple(group + os.sep for group in groups)
            records.update(path for path in self._index if path.startswith(under))
        await self._apply_records(lambda: sorted(records))

    async def _rescan(self) -> None:
        """Publish every difference between the index and the files there now."""
        indexed = list(self._index)
        await self._apply_records(
            lambda: sorted(set(self._files.list_record_files()).union(indexed))
        )

    async def _apply(self, events: Batch, rescan: bool) -> bool:
        """Apply a batch of events (first rescan, if asked); return whether to rescan next."""
        try:
            if rescan:  # after the new watch began: nothing written since is missed
                await self._rescan()
            if events:
                await self._apply_events(events)
        except Exception:  # never stop watching: look at everything again at the next batch
            logger.exception("applying file events failed; rescanning")
            return True
        return False

    def _current_identity(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self._directory)
        except OSError:
            return None
        return status.st_dev, status.st_ino

    async def _watch(self) -> None:
        """Turn file events (ours, other processes', hand edits, git) into published changes."""
        events = DirectoryEvents(
            self._files.watched_directories,
            stop=self._stop,
            quiet_ms=DIRECTORY_CHECK_MS,
            step_ms=WATCH_STEP_MS,
            debounce_ms=WATCH_DEBOUNCE_MS,
            poll_delay_ms=WATCH_POLL_MS,
        )
        events.begin(polling=self._force_polling)
        rescan = False  # events may have been lost: compare everything once a watch is set up
        groups: set[str] = set()  # group directories that came or went: list them again then
        try:
            while True:
                try:
                    batch = await events.next()
                except Exception as exc:
                    if self._stop.is_set():
                        return
                    rescan = True
                    events.end()
                    if events.polling:
                        logger.exception("the file watcher failed; retrying")
                        await self._await_directory()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._stop.wait(), 1)
                    else:
                        # The OS's watch limit, or its event queue overflowed: poll instead.
                        logger.warning("file events failed (%s): polling instead", exc)
                    events.begin(polling=True)
                    continue
                if batch is None:
                    return  # stopped
                self._watching.set()
                await self._ready.wait()
                # A checkout's batch of thousands of events is looked through on a thread.
                look = functools.partial(self._group_directories_in, batch)
                changed = look() if len(batch) <= SORTED_INLINE else await self._jobs.read(look)
                if changed:  # watch the group directories there are now
                    groups |= changed
                    events.begin()
                settled = events.settled
                if settled and groups:  # files written before the new watch began
                    batch = batch | {(watchfiles.Change.added, group) for group in groups}
                    groups = set()
                failed = await self._apply(batch, rescan and settled)
                rescan = failed or (rescan and not settled)
                # The directory itself deleted: maybe created again since, with the same inode
                # number (ext4 hands a freed one out again at once).
                removed = (watchfiles.Change.deleted, self._directory) in batch
                if removed or self._current_identity() != self._identity:
                    logger.warning(
                        "%s was replaced (removed and created again, or "
                        "moved): watching the new directory and reporting what changed",
                        self._directory,
                    )
                    events.end()
                    if self._current_identity() is None:  # gone: so are its records, for now
                        await self._rescan()
                    await self._await_directory()
                    rescan = True
                    events.begin()
        finally:
            self._watching.set()
            await events.close()

    def _group_directories_in(self, batch: Batch) -> set[str]:
        """Return the group directories of the store that came or went in ``batch``.

        20,000 events take 55-90 ms: a large batch is looked through on a thread.
        """
        return {
            path
            for _, path in batch
            if os.path.dirname(path) == self._directory
            and group_of_directory(os.path.basename(path)) is not None
        }

    async def _await_directory(self) -> None:
        """Wait until the store's directory exists (again), and take its new identity."""
        while not self._stop.is_set():
            self._identity = self._current_identity()
            if self._identity is not None:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), DIRECTORY_CHECK_MS / 1000)
