"""FileBackend's reads: small records on the loop (cached; scans in slices), the rest on threads.

Reads of small records run inline on the event loop: opening and reading a warm file takes a few
microseconds, a hop to a thread about 130. Each read opens, reads and closes its file within one
call, inline or in one thread job: a descriptor never crosses a hop, so a read cancelled before
its job starts leaves nothing open. The system calls, and what they refuse, are `_file_io`'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import os
import stat
import threading
import time
from time import perf_counter
from typing import AsyncIterator, Callable, Generator, Iterator

from ._file_errors import os_errors, unreadable
from ._file_io import READ_FLAGS, Directory, FileIO, read_in, read_rest
from ._file_jobs import FileJobs, forget
from ._file_layout import (
    group_of_directory,
    hand_made_group,
    hand_made_message,
    is_record_name,
    record_name_matcher,
)
from ._hooks import ScanItem

logger = logging.getLogger(__name__)

READ_CACHE_ENTRIES = 16384
READ_CACHE_RECORD_BYTES = 16 * 1024
RACY_SECONDS = 0.05
"""A file changed this recently may change again within the same timestamp tick: not cached."""
SCAN_BATCH = 256
"""Records read per slice on the loop, or per hop on a thread (two in flight at a time)."""
SCAN_SLICE_SECONDS = 0.001
"""A scan reads on the loop for at most this long before the loop gets a turn."""


class ReadCache:
    """Recently read small records, trusted only while the file's identity is unchanged.

    An atomic replace gives the record a new inode and an in-place edit a new mtime or size, so
    one ``stat`` (about 2.5 us) proves an entry current, where opening and reading the file costs
    about 7. Like git's index, it never trusts a file modified within `RACY_SECONDS` of being
    read: a second edit within the same timestamp tick could otherwise go unseen. The inode
    proves it is the very file read before, which was inside the store.
    """

    def __init__(self) -> None:
        # Used on the event loop's thread and by synchronous callers' threads (inline reads run
        # on both). An entry: the file's inode, size and mtime, its group directory's path and
        # inode, and the bytes. Each use is one dict operation, safe between threads, except
        # finding the oldest entry (see keep).
        self._entries: dict[str, tuple[int, int, int, str, int, bytes]] = {}

    def get(self, path: str) -> bytes | None:
        """Return the bytes kept for ``path`` if the file is still the one read; else None."""
        entry = self._entries.get(path)
        if entry is None:
            return None
        try:
            status = os.stat(path, follow_symlinks=False)
            # The group directory too: one replaced by a link is no longer read from.
            directory = os.lstat(entry[3])
        except OSError:
            pass
        else:
            if (status.st_ino, status.st_size, status.st_mtime_ns, directory.st_ino) == (
                entry[0],
                entry[1],
                entry[2],
                entry[4],
            ) and not stat.S_ISLNK(directory.st_mode):
                return entry[5]
        self._entries.pop(path, None)  # replaced, edited or removed since: read it again
        return None

    def keep(self, path: str, status: os.stat_result, directory: Directory, data: bytes) -> None:
        """Keep ``data``, read from ``path`` (``status``) in the open group ``directory``.

        Only if it is small enough to keep, and old enough to trust (see the class).
        """
        if len(data) > READ_CACHE_RECORD_BYTES or time.time() - status.st_mtime < RACY_SECONDS:
            return
        if len(self._entries) >= READ_CACHE_ENTRIES:
            # Another thread changing the dict meanwhile breaks next(iter()): evict next time.
            with contextlib.suppress(RuntimeError, StopIteration):
                self._entries.pop(next(iter(self._entries)), None)  # the oldest
        file = (status.st_ino, status.st_size, status.st_mtime_ns)
        self._entries[path] = (*file, directory.path, directory.identity()[1], data)


class HandMadeWarnings:
    """Warns once per directory of the store in ``root`` that a person made for a group.

    Reads never look in ``USER/`` (see `hand_made_group`), so the store says so: the first
    time its listing, a scan of that group or its watcher meets such a directory, and never
    again for that directory (a watcher's every event would otherwise repeat it).
    """

    def __init__(self, root: str) -> None:
        self._root = root
        self._warned: set[str] = set()  # added to from threads: a set's add is atomic

    def look(self, name: str, *, listed: bool = True) -> None:
        """Warn if the entry ``name`` of the store's directory is such a directory, once.

        ``listed=False``: ``name`` is a group's, not an entry listed; on a case-insensitive
        file system ``Users`` finds the group directory ``users``, so the listing decides.
        """
        if name in self._warned or hand_made_group(name) is None:
            return
        path = os.path.join(self._root, name)
        if not os.path.isdir(path) or os.path.islink(path):
            return
        try:
            if not listed and name not in os.listdir(self._root):
                return
        except OSError:
            return  # the store's directory went meanwhile
        self._warned.add(name)
        logger.warning("%s", hand_made_message(self._root, name))


def read_small(path: str, limit: int, cache: ReadCache) -> tuple[bool, bytes | None]:
    """Read the record file ``path`` on the loop if it holds at most ``limit`` bytes.

    Return (True, its bytes, or None if there is no such file), or (False, None) having read
    nothing when it is larger (or not a regular file): read it on a thread then. What it reads
    goes into ``cache``, if worth keeping (look there first).
    """
    try:
        directory = Directory(os.path.dirname(path))
    except (FileNotFoundError, NotADirectoryError):
        return True, None
    with directory:
        try:
            descriptor = directory.open(FileIO, os.path.basename(path), READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            return True, None
        except OSError:
            return True, read_in(directory, os.path.basename(path))  # raises the precise error
        try:
            status = os.fstat(descriptor)
            if status.st_size > limit or not stat.S_ISREG(status.st_mode):
                return False, None  # a FIFO or a device too: the thread's read names it
            data = read_rest(descriptor, status.st_size)
        finally:
            os.close(descriptor)
        cache.keep(path, status, directory, data)
    return True, data


def record_files(directory: str, extension: str) -> Generator[str, None, None]:
    """Yield the paths of record files in a group directory (not temp or unknown files).

    A group directory that is a link yields nothing (fsck reports it).
    """
    try:
        handle = Directory(directory)
    except OSError:  # gone, a link, unreadable: no records to list here (fsck reports it)
        return
    with handle:
        names = handle.names()
    for name in names:
        if is_record_name(name, extension):
            yield os.path.join(directory, name)


def group_names(root: str, extension: str, hand_made: HandMadeWarnings) -> list[str]:
    """Return the groups of the store in ``root`` that hold at least one record file.

    A directory made by hand for a group is not one of them: ``hand_made`` warns of it.
    """
    names: list[str] = []
    try:
        entries = os.scandir(root)
    except FileNotFoundError:
        return names  # the store's directory was removed: the next write makes it again
    with entries:
        for entry in entries:
            name = group_of_directory(entry.name)
            if name is None:
                hand_made.look(entry.name)
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            files = record_files(entry.path, extension)
            if next(files, None) is not None:
                names.append(name)
            files.close()
    return names


def read_records(path: str, group: str, names: list[str], extension: str) -> list[ScanItem] | None:
    """Return the records among the files ``names`` of the group directory ``path``.

    A file that cannot be read (permissions, a FIFO) is reported as a corrupt record; one gone
    since it was listed, and any name that is not a record file's, is left out. None: the
    group directory is gone.
    """
    records = [name for name in names if is_record_name(name, extension)]
    found: list[ScanItem] = []
    if not records:
        return found
    try:
        directory = Directory(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # the group was removed meanwhile
    with directory:
        for name in records:
            where = os.path.join(path, name)
            try:
                data = read_in(directory, name)
            except OSError as exc:  # unreadable, or not a regular file: not a record
                found.append((None, unreadable(group, where, exc), where))
                continue
            if data is not None:  # None: removed since it was listed
                found.append((None, data, where))
    return found


def read_slice(
    directory: Directory, names: Iterator[str], group: str, extension: str, limit: int
) -> tuple[list[ScanItem], list[str], bool]:
    """Read record files named by ``names`` in the open group ``directory``, on this thread.

    Stops after `SCAN_BATCH` records or `SCAN_SLICE_SECONDS`, whichever comes first (work on
    the loop stays short). Returns the records read, the names to read on a thread instead (over
    ``limit`` bytes, not a regular file, or refused on opening: `read_records` reads or reports
    them), and whether ``names`` ran out. Names that are not a record file's are skipped.
    """
    is_record = record_name_matcher(extension)
    where = directory.path + os.sep
    found: list[ScanItem] = []
    elsewhere: list[str] = []
    deadline = perf_counter() + SCAN_SLICE_SECONDS
    for name in names:
        if is_record(name) is None:
            continue
        try:
            descriptor = directory.open(FileIO, name, READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed since it was listed
        except OSError:
            elsewhere.append(name)  # a link, a socket...: read_in names it
            continue
        try:
            status = os.fstat(descriptor)
            if status.st_size > limit or not stat.S_ISREG(status.st_mode):
                elsewhere.append(name)
                continue
            found.append((None, read_rest(descriptor, status.st_size), where + name))
        finally:
            os.close(descriptor)
        if len(found) >= SCAN_BATCH or perf_counter() > deadline:
            return found, elsewhere, False
    return found, elsewhere, True


async def scan_group(
    jobs: FileJobs,
    path: str,
    group: str,
    extension: str,
    check_open: Callable[[], None],
    inline_limit: int,
) -> AsyncIterator[list[ScanItem]]:
    """Yield the records of the group directory ``path`` in batches.

    Small records are read on the loop in slices of at most `SCAN_SLICE_SECONDS`, with a turn
    for the loop after each: measured at 100,000 records, reader threads cost more than they
    saved (each batch's hop, and the GIL handed back and forth between the threads and the
    decoding loop), 1.7-2.4x a plain loop against about 1.2x. A record over ``inline_limit``
    bytes, or anything odd standing under a record's name, is read on a thread; with
    ``inline_limit=0`` (slow network file systems) every batch is (`scan_on_threads`).
    ``check_open`` runs before each batch is yielded (it raises once the store is closed).
    """
    if not inline_limit:
        async for batch in scan_on_threads(jobs, path, group, extension, check_open):
            yield batch
        return
    with os_errors(path):
        try:
            directory = Directory(path)  # held for the whole scan: never reopened by path
        except (FileNotFoundError, NotADirectoryError):
            return  # no such group
    with directory:
        entries = os.scandir(directory.fd) if directory.fd is not None else None
        names = (
            (entry.name for entry in entries) if entries is not None else iter(directory.names())
        )
        try:
            exhausted = False
            while not exhausted:
                with os_errors(path):
                    batch, elsewhere, exhausted = read_slice(
                        directory, names, group, extension, inline_limit
                    )
                if elsewhere:
                    batch += await jobs.read(
                        functools.partial(read_listed, path, group, elsewhere, extension)
                    )
                check_open()
                if batch:
                    yield batch
                await asyncio.sleep(0)  # the loop's turn after each slice read on it
        finally:
            if entries is not None:
                entries.close()


def read_listed(path: str, group: str, names: list[str], extension: str) -> list[ScanItem]:
    """`read_records`, with a group directory gone meanwhile read as no records."""
    return read_records(path, group, names, extension) or []


async def scan_on_threads(
    jobs: FileJobs, path: str, group: str, extension: str, check_open: Callable[[], None]
) -> AsyncIterator[list[ScanItem]]:
    """Yield the records of the group directory ``path`` in batches read on ``jobs``' threads.

    ``check_open`` runs as each batch arrives (it raises once the store is closed).
    """
    with os_errors(path):
        try:
            directory = Directory(path)  # one open: inline
        except (FileNotFoundError, NotADirectoryError):
            return  # no such group
        with directory:
            entries = os.scandir(directory.fd) if directory.fd is not None else None
    # The listing (its own descriptor) is shared by the reading threads; each batch opens
    # the directory again, never through a link, so nothing is shared across a hop.
    listing = threading.Lock()
    names: Iterator[str] = (
        (entry.name for entry in entries) if entries is not None else iter(os.listdir(path))
    )

    def next_batch() -> tuple[bool, list[ScanItem]]:
        with listing:
            batch = list(itertools.islice(names, SCAN_BATCH))
        found = read_records(path, group, batch, extension)
        return found is None or len(batch) < SCAN_BATCH, found or []

    def start() -> asyncio.Future[tuple[bool, list[ScanItem]]]:
        return asyncio.ensure_future(jobs.read(next_batch))

    # Two batches in flight: the threads read ahead while the caller decodes.
    pending = collections.deque([start(), start()])
    exhausted = False
    try:
        while pending:
            done, batch = await pending.popleft()
            exhausted = exhausted or done
            check_open()
            if not exhausted:
                pending.append(start())
            if batch:
                yield batch
    finally:
        for future in pending:
            forget(future)
        with listing:
            if entries is not None:
                entries.close()
