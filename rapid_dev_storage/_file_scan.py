"""FileBackend's scans: small records read on the loop a slice at a time, the rest on threads.

Measured at 100,000 records, reader threads cost more than they saved: a hop per batch, and the
GIL handed back and forth between them and the loop decoding what they read (1.7-2.4x a plain
loop over the same files, against 1.6-1.75x read on the loop). A slice stops after
`SCAN_SLICE_SECONDS`, and the loop gets a turn after each, so a scan never holds it longer than
one slice (and one cold read). A thread's system calls, and what they refuse, are
`_file_io`'s; a slice's own are `read_slice`'s.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import os
import threading
from os import SEEK_END
from time import perf_counter
from typing import TYPE_CHECKING, AsyncIterator, Callable, Iterator, cast

from ._file_errors import os_errors, unreadable
from ._file_io import READ_FLAGS, Directory, FileIO, read_in
from ._file_jobs import FileJobs, forget
from ._file_layout import is_record_name, record_name_matcher
from ._hooks import Record, ScanBatch, ScanItem

if TYPE_CHECKING:
    from ._file_scan_decode import Quick

SCAN_BATCH = 256
"""Records read per slice on the loop, or per hop on a thread (two in flight at a time)."""
SCAN_SLICE_SECONDS = 0.001
"""A scan reads on the loop for at most this long before the loop gets a turn."""
FIRST_READ = 4096
"""Bytes a slice asks for first: a file that fills them is read again whole, by its size."""
READS_BY_DESCRIPTOR = os.open in os.supports_dir_fd and hasattr(os, "pread")
"""Whether small records can be read on the loop (`read_slice`); elsewhere every scan is
read on threads, as with ``inline_limit=0``."""


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
    directory: Directory,
    entries: Iterator[os.DirEntry[str]],
    extension: str,
    limit: int,
    decoded: tuple[Quick, list[Record]] | None = None,
) -> tuple[list[ScanItem], list[str], bool]:
    """Read the record files listed by ``entries`` in the open group ``directory``, on this thread.

    Stops after `SCAN_BATCH` records or `SCAN_SLICE_SECONDS`, whichever comes first (work on
    the loop stays short). Returns the records read, the names to read on a thread instead (over
    ``limit`` bytes, not a regular file, refused on opening or reading, or grown while read:
    `read_records` reads or reports them, with an ``fstat`` each), and whether ``entries`` ran
    out. Names that are not a record file's are skipped. With ``decoded`` (a `Quick` and a
    list), each file read is decoded at once: a usual record goes to the list, decoded and
    proved, anything else is returned as its bytes.

    No ``fstat`` here (about 1 us a record), and for a file under `FIRST_READ` bytes one
    ``pread``: the listing's file type says a regular file stood there (a device or anything
    else goes to `read_records`), and what may replace it between the listing and the open is
    not read as one: a link is refused by the open (``O_NOFOLLOW``), a socket too (``ENXIO``),
    a FIFO by ``pread`` (``ESPIPE``, even one a writer filled beforehand), a directory by
    ``pread`` too (``EISDIR``). A regular file's read short of what was asked is all of it.
    Not told apart: a device node made there in that moment (only root can make one) that
    reads like a short file; one that reads nothing (``/dev/null``) or fills the first read
    (``/dev/zero``) is sent on, as an empty file is (rare, and read again on a thread).
    """
    is_record = record_name_matcher(extension)
    where = directory.path + os.sep
    descriptor_of = directory.fd
    # Looked up once a slice, not once a record (FileIO.open: a test may count the opens).
    open_file, read_at, close = FileIO.open, os.pread, os.close
    first_read = min(limit + 1, FIRST_READ)
    found: list[ScanItem] = []
    elsewhere: list[str] = []
    quick, records = decoded if decoded is not None else (None, [])
    deadline = perf_counter() + SCAN_SLICE_SECONDS
    for counted, entry in enumerate(entries, 1):  # every name counts against the slice: below
        name = entry.name
        if is_record(name) is None:
            pass
        elif not entry.is_file(follow_symlinks=False):  # the listing's d_type: no system call
            elsewhere.append(name)  # a link, a FIFO...: read_records names it
        else:
            try:
                descriptor = open_file(name, READ_FLAGS, dir_fd=descriptor_of)
            except OSError:  # a link or a socket since the listing (or gone: read_records
                elsewhere.append(name)  # leaves it out)
            else:
                try:
                    first = read_at(descriptor, first_read, 0)
                    # Short of what was asked: the whole file. Otherwise perhaps more.
                    data = (
                        first
                        if 0 < len(first) < first_read
                        else read_whole(descriptor, first, limit)
                    )
                except OSError:  # ESPIPE, EISDIR: no longer a regular file
                    data = None
                finally:
                    close(descriptor)
                if data is None:  # too large, or odd
                    elsewhere.append(name)
                elif quick is None or (record := quick(name, data)) is None:
                    found.append((None, data, where + name))
                else:
                    records.append(record)
        # A directory of large records (or of names that are not records) must not be gone
        # through in one slice, nor handed over whole.
        if counted >= SCAN_BATCH or perf_counter() > deadline:
            return found, elsewhere, False
    return found, elsewhere, True


def read_whole(descriptor: int, first: bytes, limit: int) -> bytes | None:
    """Return the bytes of the open file ``descriptor``, read by its size after ``first``.

    None, for `read_records` to read or name it: empty (an empty record file, or a device
    such as ``/dev/null``: the ``fstat`` there tells them apart), over ``limit`` bytes, or grown
    while read.
    """
    if not first:
        return None
    size = os.lseek(descriptor, 0, SEEK_END)
    if size > limit:
        return None
    data = os.pread(descriptor, size + 1, 0)
    return data if len(data) <= size else None


async def scan_group(
    jobs: FileJobs,
    path: str,
    group: str,
    extension: str,
    check_open: Callable[[], None],
    inline_limit: int,
    quick: Quick | None = None,
) -> AsyncIterator[ScanBatch]:
    """Yield the records of the group directory ``path`` in batches.

    Small records are read on the loop in slices of at most `SCAN_SLICE_SECONDS`, with a turn
    for the loop after each: measured at 100,000 records, reader threads cost more than they
    saved (each batch's hop, and the GIL handed back and forth between the threads and the
    decoding loop), 1.7-2.4x a plain loop against about 1.2x. A record over ``inline_limit``
    bytes, or anything odd standing under a record's name, is read on a thread; with
    ``inline_limit=0`` (slow network file systems), or where files do not open relative to a
    directory's descriptor, every batch is (`scan_on_threads`). With ``quick``, the usual
    records read on the loop are decoded as they are read (`_file_scan_decode`): the
    batches' records; everything else is handed over as bytes.
    ``check_open`` runs before each batch is yielded (it raises once the store is closed).
    """
    if not inline_limit or not READS_BY_DESCRIPTOR:
        async for batch in scan_on_threads(jobs, path, group, extension, check_open):
            yield [], batch
        return
    with os_errors(path):
        try:
            directory = Directory(path)  # held for the whole scan: never reopened by path
        except (FileNotFoundError, NotADirectoryError):
            return  # no such group
    with directory, os.scandir(cast(int, directory.fd)) as entries:
        exhausted = False
        while not exhausted:
            records: list[Record] = []
            with os_errors(path):
                batch, elsewhere, exhausted = read_slice(
                    directory,
                    entries,
                    extension,
                    inline_limit,
                    None if quick is None else (quick, records),
                )
            if elsewhere:
                batch += await jobs.read(
                    functools.partial(read_listed, path, group, elsewhere, extension)
                )
            check_open()
            if batch or records:
                yield records, batch
            await asyncio.sleep(0)  # the loop's turn after each slice read on it


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
