"""`FileBackend`: one file per record, one directory per group; the format is in docs/format.md.

Reads of small records run inline on the event loop: opening and reading a warm file takes a few
microseconds, a hop to a thread about 130. Anything that may take long (a large record, a write
with its fsyncs, a lock wait, a directory scan) runs on threads, one whole operation per hop.
Every write is a new temp file in the group's directory, written, fsynced, renamed over the
record under the record's lock stripe and followed by an fsync of the directory (at
``durability="full"``), so a reader or a crash only ever sees a whole record, and sets and
updates of one record are linearizable across processes. The system calls themselves, and the
rules that keep them inside the store (no links followed, no FIFO opened blocking), are in
`_file_io`; the locks in `_file_locks`.

Order: the operations of one record go to the same writer thread (writes never run on the loop:
a rename can block for long in the kernel), and a clear waits for the writes before it and
holds back the writes after it that it covers. What decides "still running" is the job itself,
never the task that awaited it: a cancelled caller does not let later writes overtake its job.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import itertools
import json
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Generator, Iterator, TypeVar

from ._backend import ScanItem, StorageBackend
from ._codecs import Codec, codec_by_name, codec_for_existing_store
from ._file_io import (
    DIGEST_LENGTH,
    READ_FLAGS,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    Directory,
    DirectorySync,
    FileIO,
    TempFile,
    UnsafeEntryError,
    group_directory,
    read_file,
    read_in,
    read_rest,
    record_name_pattern,
)
from ._file_locks import (
    LOCK_DIRECTORY,
    StripeLocks,
    abandoned_temp,
    stripe_of,
)
from ._file_watch import FileWatcher
from ._locks import UnfinishedJobs
from ._names import decode_name, encode_name, key_digest
from ._record_keys import HEAD, leading_keys
from ._settings import (
    Durability,
    StoreOptions,
    resolve_force_polling,
    resolve_inline_limit,
    resolve_store_options,
)
from ._types import Keys
from ._validate import MAX_KEYS, stored_keys_fit
from .errors import (
    CorruptRecordError,
    IncompatibleStoreError,
    StorageError,
    StorageIOError,
)

__all__ = ["MARKER", "TEMP_PREFIX", "TEMP_SUFFIX", "FileBackend", "FileIO", "read_file"]

T = TypeVar("T")

FORMAT_NAME = "rapid_dev_storage"
FORMAT_VERSION = 1
MARKER = ".rapid-dev-storage.json"
GITIGNORE = ".gitignore"
WRITER_THREADS = 16
FAST_WRITER_THREADS = 4
"""Writes of one record always use the same thread. At durability ``full`` many threads let
concurrent fsyncs overlap and share directory fsyncs (measured: 2,180 sets/s with 4, 2,860 with
16, at 64 tasks); at ``fast`` there is no fsync to overlap and the threads' Python work contends
for the GIL (64 tasks: about 1,200 sets/s with 16 threads, 1,700-1,950 with 4, 1,900-2,200 with
2), so four."""
SCAN_BATCH = 128
"""Records read per hop while iterating; two batches are in flight at a time."""
SETTLE_SECONDS = 0.25
"""A record that does not decode but changed within the last quarter second may be half-way
through a non-atomic save (nano, ``cp`` over it): reads look again while it keeps changing (see
StorageBackend._read_value); a file left alone that long is what it is."""

READ_CACHE_ENTRIES = 16384
READ_CACHE_RECORD_BYTES = 16 * 1024
RACY_SECONDS = 0.05
"""A file changed this recently may change again within the same timestamp tick: not cached."""

_GITIGNORE_TEXT = (
    "# Written by rapid_dev_storage: lock files and unfinished writes are not data.\n"
    f"/{LOCK_DIRECTORY}/\n"
    f"{TEMP_PREFIX}*{TEMP_SUFFIX}\n"
)
_LARGE = object()
"""What an inline read returns for a record over the inline limit: read it on a thread."""


class _ReadCache:
    """Recently read small records, trusted only while the file's identity is unchanged.

    An atomic replace gives the record a new inode and an in-place edit a new mtime or size, so
    one ``stat`` (about 2.5 us) proves an entry current, where opening and reading the file costs
    about 7. Like git's index, it never trusts a file modified within `RACY_SECONDS` of being
    read: a second edit within the same timestamp tick could otherwise go unseen. The inode
    proves it is the very file read before, which was inside the store.
    """

    def __init__(self) -> None:
        # Used on the event loop's thread only, like inline reads. An entry: the file's inode,
        # size and mtime, its group directory's path and inode, and the bytes.
        self._entries: dict[str, tuple[int, int, int, str, int, bytes]] = {}

    def get(self, path: str) -> bytes | None:
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
        del self._entries[path]  # replaced, edited or removed since: read it again
        return None

    @staticmethod
    def worth_keeping(status: os.stat_result, data: bytes) -> bool:
        """Whether a read is small enough to keep, and old enough to trust (see the class)."""
        return (
            len(data) <= READ_CACHE_RECORD_BYTES and time.time() - status.st_mtime >= RACY_SECONDS
        )

    def put(self, path: str, status: os.stat_result, directory: int, data: bytes) -> None:
        """Keep ``data`` read from ``path`` (``status``) in group directory inode ``directory``."""
        if len(self._entries) >= READ_CACHE_ENTRIES:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[path] = (
            status.st_ino, status.st_size, status.st_mtime_ns, os.path.dirname(path), directory,
            data,
        )  # fmt: skip


@contextlib.contextmanager
def _os_errors(location: str, *, reading: tuple[str, Keys] | None = None) -> Iterator[None]:
    """Turn OS and lock errors into ours, naming the file and keeping the original as the cause.

    ``location`` is the record (or directory) the operation is about: the system's own file
    name may be a bare temp file name. With ``reading`` (group, keys), something that is not a
    regular file where the record should be is a `CorruptRecordError`, as a bad record is.
    """
    try:
        yield
    except StorageError:
        raise  # ours already (LockTimeoutError is an OSError too, through TimeoutError)
    except UnsafeEntryError as exc:
        where = exc.filename or location
        if reading is not None and exc.expected == "regular file":
            raise CorruptRecordError(
                f"{where} {exc.strerror}", group=reading[0], keys=reading[1], location=where
            ) from exc
        raise _io_error(where, exc) from exc
    except OSError as exc:
        named = (
            exc.filename if isinstance(exc.filename, str) and os.path.isabs(exc.filename) else None
        )
        raise _io_error(named or location, exc) from exc


def _io_error(path: str, exc: OSError) -> StorageIOError:
    error = StorageIOError(f"{path}: {exc.strerror or exc}")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, path
    return error


def _remove_if_empty(directory: str) -> None:
    with contextlib.suppress(OSError):  # not empty, already gone, a link: all fine
        os.rmdir(directory)


def namespace_directory(root: Path | str, name: str, identifier: str) -> str:
    """Return the absolute directory of store ``(name, identifier)`` under ``root``."""
    return os.path.join(os.path.abspath(root), f"{encode_name(name)}~{encode_name(identifier)}")


class FileBackend(StorageBackend):
    """Stores each record as a file in a directory per group: friendly to git and hand edits.

    ``path`` is a directory that may hold several stores, each in its own directory named from
    ``(name, unique_identifier)``. Several processes may share a store: writes are atomic
    renames under a lock file, and readers never see a partial record.
    """

    def __init__(
        self,
        *,
        directory: str,
        codec: Codec,
        durability: Durability,
        lock_timeout: float,
        inline_limit: int,
        force_polling: bool = False,
        io: type[FileIO] | FileIO = FileIO,
        marker: bytes = b"",
        read_only: bool = False,
    ) -> None:
        """Use `create_backend_instance`; this only assembles what it opened."""
        super().__init__(codec)
        self.location = directory
        self.durability = durability
        self.read_only = read_only
        self._directory = directory
        self._durable = durability == "full"
        self._inline_limit = inline_limit
        self._force_polling = force_polling
        self._marker = marker
        self._marker_path = os.path.join(directory, MARKER)
        self._watcher: FileWatcher | None = None  # while anyone watches
        self._io = io
        self._extension = codec.extension
        self._record_name = record_name_pattern(codec.extension)
        self._stripes = StripeLocks(directory, lock_timeout, self._recreate_bookkeeping)
        self._group_directories: dict[str, str] = {}
        self._record_paths: dict[tuple[str, Keys], str] = {}
        self._cache = _ReadCache()
        self._directory_sync = DirectorySync()
        # The unfinished jobs, and the clears not finished yet: what orders later operations.
        # Both are the jobs' own futures, done when the job is.
        self._jobs = UnfinishedJobs()
        self._clears: list[tuple[str, Keys, concurrent.futures.Future[Any]]] = []
        self._writer_count = WRITER_THREADS if self._durable else FAST_WRITER_THREADS
        self._writers = [
            ThreadPoolExecutor(1, thread_name_prefix="rapid-dev-storage-write")
            for _ in range(self._writer_count)
        ]
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="rapid-dev-storage-read")

    @classmethod
    async def create_backend_instance(
        cls,
        path: Path | str,
        name: str,
        unique_identifier: int | str,
        *,
        serializer: Any = None,
        deserializer: Any = None,
        codec: str | Codec | None = None,
        durability: str | None = None,
        lock_timeout: float | None = None,
        inline_limit: int | None = None,
        force_polling: bool | None = None,
        sweep_orphans: bool = True,
        read_only: bool = False,
    ) -> FileBackend:
        """Open (creating if needed) the store ``(name, unique_identifier)`` under ``path``.

        ``codec``: ``"msgpack"`` (the default for a new store), ``"json"`` (for git and hand
        edits) or a `Codec`; left out, an existing store opens with its own. ``durability``:
        ``"full"`` (default; fsync file and directory) or ``"fast"`` (no fsync: atomic against a
        crash of the process, not against power loss). ``lock_timeout``: seconds to wait for
        another process's lock (default 10). ``inline_limit``: records up to this many bytes
        are read on the event loop's thread (default 65536; 0 sends every read to a thread, for
        slow network file systems). ``force_polling``: the change watcher polls the directory
        instead of using the OS's file events (for mounts without them: WSL, Docker volumes,
        network shares). Each also reads ``RAPID_DEV_STORAGE_<NAME>``.
        Opening sweeps temp files left by killed writers (a temp file whose writer's lock is
        gone), unless ``sweep_orphans=False`` (fsck uses that, to report them).
        ``read_only=True`` opens an existing store without changing a byte of its directory
        (no sweep, no lock directory) and refuses writes.

        Raises:
            IncompatibleStoreError: the store exists with another codec or a newer format, or the
                directory holds something that is not a store.
            InvalidNameError: the names are unusable, or too long for a file name.

        """
        options = resolve_store_options(
            name, unique_identifier, codec=codec, serializer=serializer,
            deserializer=deserializer, durability=durability, lock_timeout=lock_timeout,
        )  # fmt: skip
        inline_limit = resolve_inline_limit(inline_limit)
        directory = namespace_directory(path, options.name, options.identifier)

        def open_store() -> tuple[Codec, bytes]:
            with _os_errors(directory):
                if read_only:
                    data = _read_marker(directory)
                    if data is None:
                        raise IncompatibleStoreError(f"{directory} is not a store: no {MARKER}")
                    chosen = _check_marker(
                        directory, data, options.name, options.identifier, options.codec
                    )
                    return chosen, data
                chosen, data = _open_marker(directory, options)
                if sweep_orphans:
                    _sweep_orphans(directory)
            return chosen, data

        chosen, marker = await asyncio.get_running_loop().run_in_executor(None, open_store)
        return cls(
            directory=directory,
            codec=chosen,
            durability=options.durability,
            lock_timeout=options.lock_timeout,
            inline_limit=inline_limit,
            force_polling=resolve_force_polling(force_polling),
            marker=marker,
            read_only=read_only,
        )

    # --- paths, threads and order -----------------------------------------------------------

    def record_path(self, group: str, keys: Keys) -> str:
        """Return the file that holds (or would hold) the record ``keys`` of ``group``."""
        path = self._record_paths.get((group, keys))
        if path is None:
            if len(self._record_paths) >= 65536:  # bounded: a digest costs only a microsecond
                self._record_paths.clear()
            path = f"{self._group_directory(group)}{os.sep}{key_digest(keys)}{self._extension}"
            self._record_paths[group, keys] = path
        return path

    def _group_directory(self, group: str) -> str:
        directory = self._group_directories.get(group)
        if directory is None:
            if len(self._group_directories) >= 4096:  # bounded: group names may come from users
                self._group_directories.clear()
            directory = os.path.join(self._directory, encode_name(group))
            self._group_directories[group] = directory
        return directory

    def _recreate_bookkeeping(self) -> None:
        """Make the store's directory, marker, .gitignore and .locks again, if removed.

        ``git clean -fdx``, ``rsync --delete`` or a person may remove them under a running
        process; the store's data is the records, and this keeps writing them possible.
        """
        os.makedirs(os.path.join(self._directory, LOCK_DIRECTORY), exist_ok=True)
        for name, text in ((MARKER, self._marker), (GITIGNORE, _GITIGNORE_TEXT.encode())):
            target = os.path.join(self._directory, name)
            if text and not os.path.lexists(target):
                _create_once(self._directory, target, text, self._durable)

    async def _run(
        self,
        executor: ThreadPoolExecutor,
        function: Callable[[], T],
        *,
        reading: tuple[str, Keys] | None = None,
    ) -> T:
        """Run ``function`` on ``executor``, its OS errors made ours (see `_os_errors`)."""
        location = self._directory if reading is None else self.record_path(*reading)

        def call() -> T:
            with _os_errors(location, reading=reading):
                return function()

        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def _record_operation(
        self, group: str, keys: Keys, operation: Callable[[threading.Event], T]
    ) -> T:
        """Run a write, swap or delete of one record on the record's writer thread.

        Never on the loop, at any durability: a rename or an unlink can block for hundreds of
        milliseconds in the kernel (measured: 100-425 ms for single inline renames while 64
        tasks wrote at ``fast``, on ext4 under its journal's commits), and the loop must never
        stall that long. The record's operations keep their order on its thread; the job first
        waits for the clears covering the record that were started before it.

        Cancellation follows the work: a caller cancelled before the job started cancels it; one
        cancelled while it runs sets ``abandon`` (the job gives up if it has not renamed yet)
        and waits until the job has given up or landed. So when the caller hears of its
        cancellation, the write will never land later, in this process or for any other.
        """
        path = self.record_path(group, keys)
        index = int(path[-len(self._extension) - DIGEST_LENGTH :][:8], 16) % self._writer_count
        clears = self._unfinished_clears(group, keys)
        abandon = threading.Event()

        def job() -> T:
            concurrent.futures.wait(clears)
            with _os_errors(path):
                return operation(abandon)

        future = self._writers[index].submit(job)
        self._jobs.add(future)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            abandon.set()
            await _settled(future)
            raise

    def _unfinished_clears(self, group: str, keys: Keys) -> list[concurrent.futures.Future[Any]]:
        if not self._clears:
            return []
        self._clears = [clear for clear in self._clears if not clear[2].done()]
        return [
            future
            for cleared_group, prefix, future in self._clears
            if cleared_group == group and keys[: len(prefix)] == prefix
        ]

    # --- hooks ------------------------------------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        path = self.record_path(group, keys)
        if self._inline_limit:
            cached = self._cache.get(path)
            if cached is not None:
                return cached
            with _os_errors(path, reading=(group, keys)):
                data = self._read_inline(path)
            if data is not _LARGE:
                return data  # type: ignore[return-value]  # bytes or None
        # A large record (or no inline reads): opened, read and closed in one job on a thread.
        return await self._run(self._readers, lambda: read_file(path), reading=(group, keys))

    def _read_inline(self, path: str) -> bytes | object | None:
        """Read a small record on the loop; return `_LARGE` (having read nothing) for a big one."""
        try:
            directory = Directory(os.path.dirname(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        with directory:
            try:
                descriptor = directory.open(FileIO, os.path.basename(path), READ_FLAGS)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError:
                return read_in(directory, os.path.basename(path))  # raises the precise error
            try:
                status = os.fstat(descriptor)
                if status.st_size > self._inline_limit or not _is_regular(status):
                    return _LARGE  # a FIFO or a device too: the thread's read names it
                data = read_rest(descriptor, status.st_size)
            finally:
                os.close(descriptor)
            if self._cache.worth_keeping(status, data):
                self._cache.put(path, status, directory.identity()[1], data)
        return data

    def _changed_recently(self, group: str, keys: Keys) -> bool:
        try:
            status = os.stat(self.record_path(group, keys), follow_symlinks=False)
        except OSError:
            return False
        return time.time() - status.st_mtime < SETTLE_SECONDS

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        await self._record_operation(
            group,
            keys,
            lambda abandon: self._replace(group, keys, None, data, abandon),
        )

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        return await self._record_operation(
            group,
            keys,
            lambda abandon: self._replace(group, keys, (expected,), new, abandon),
        )

    async def _delete(self, group: str, keys: Keys) -> None:
        await self._record_operation(
            group, keys, lambda abandon: self._replace(group, keys, None, None, abandon)
        )

    def _replace(
        self,
        group: str,
        keys: Keys,
        expected: tuple[bytes | None] | None,
        new: bytes | None,
        abandon: threading.Event,
    ) -> bool:
        """Write ``new`` (None: delete) over the record, if it holds ``expected`` (when given).

        Once ``abandon`` is set, the write gives up if it has not renamed yet (raising
        `Abandoned`).

        The temp file is written and fsynced before the lock is taken, so the lock is held only
        for the compare and the rename: sets and updates of one record, in any process, take
        effect in one order (the order of their renames under the lock).
        """
        directory_path, name = os.path.split(self.record_path(group, keys))
        for attempt in itertools.count(1):
            with group_directory(
                self._io,
                directory_path,
                create=new is not None,
                durable=self._durable,
                make_parent=self._recreate_bookkeeping,
            ) as directory:
                if directory is None:  # no group directory: the record is absent
                    return expected is None or expected[0] is None
                try:
                    landed, removed = self._replace_in(directory, name, expected, new, abandon)
                except FileNotFoundError:
                    # The group directory (another process's clear, `git clean`, `rm -rf`) or
                    # our temp file (`git clean -x`) was removed under us: nothing landed, so
                    # write again, into a directory made again.
                    if attempt < 100:
                        continue
                    raise
                if not landed:
                    return False
                if self._durable and (new is not None or removed):
                    self._directory_sync.sync(self._io, directory)
            if removed:
                _remove_if_empty(directory_path)
            return True
        raise AssertionError("unreachable")  # for mypy: the loop returns or raises

    def _replace_in(
        self,
        directory: Directory,
        name: str,
        expected: tuple[bytes | None] | None,
        new: bytes | None,
        abandon: threading.Event,
    ) -> tuple[bool, bool]:
        """`_replace` in an open group directory: return (landed, a file was removed)."""
        if new is not None and not os.path.lexists(self._marker_path):
            self._recreate_bookkeeping()  # removed by a checkout, a clean, a person
        temp = None if new is None else TempFile(self._io, directory, new, self._durable)
        stripe = stripe_of(os.path.basename(directory.path), name)
        try:
            with self._stripes.hold(stripe, abandon):
                if expected is not None and read_in(directory, name) != expected[0]:
                    return False, False
                if temp is None:
                    return True, _unlink(directory, name)
                temp.commit(name)
                temp = None
                return True, False
        finally:
            if temp is not None:
                temp.discard()

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        directory = self._group_directory(group)
        # A clear lands after every write started before it, and holds back the writes it
        # covers that start after it (they wait for it on their thread).
        earlier = self._jobs.unfinished()

        abandon = threading.Event()

        def job() -> None:
            concurrent.futures.wait(earlier)
            with _os_errors(directory):
                self._delete_matching(group, directory, prefix, abandon)

        future = self._readers.submit(job)
        self._clears.append((group, prefix, future))
        try:
            await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            abandon.set()  # it stops before its next lock stripe; what it removed stays removed
            await _settled(future)
            raise

    def _delete_matching(
        self, group: str, directory_path: str, prefix: Keys, abandon: threading.Event
    ) -> None:
        """Remove the group's records whose keys start with ``prefix``, a lock stripe at a time.

        Only record files (by their exact name) are removed: a person's notes beside them stay.
        A link or FIFO under a record's name is removed as a name (its target is never
        touched); a directory under one is left alone.
        """
        with group_directory(
            self._io, directory_path, create=False, durable=self._durable
        ) as directory:
            if directory is None:
                return
            by_stripe: dict[int, list[str]] = {}
            for name in directory.names():
                if self._record_name.fullmatch(name) is None:
                    continue
                if prefix:
                    keys = self._keys_in(group, directory, name)
                    if keys is None or keys[: len(prefix)] != prefix:
                        continue
                stripe = stripe_of(os.path.basename(directory_path), name)
                by_stripe.setdefault(stripe, []).append(name)
            removed = False
            for stripe, names in by_stripe.items():
                with self._stripes.hold(stripe, abandon):
                    for name in names:
                        with contextlib.suppress(UnsafeEntryError):  # a directory: left alone
                            removed = _unlink(directory, name) or removed
            if removed and self._durable:
                self._directory_sync.sync(self._io, directory)
        if removed:
            _remove_if_empty(directory_path)

    def _keys_in(self, group: str, directory: Directory, name: str) -> Keys | None:
        """Return the keys of record file ``name``, or None if it is unreadable or undecodable.

        Read from the start of the file when the record is laid out as the library writes it
        (a large record is neither read nor decoded whole); otherwise decoded whole.
        """
        try:
            head = read_in(directory, name, limit=HEAD)
            keys = None if head is None else leading_keys(self._extension, head)
            if keys is not None and key_digest(keys) + self._extension == name:
                return keys
            data = head if head is None or len(head) < HEAD else read_in(directory, name)
            if data is None:
                return None
            return self._decode_record(group, None, data, name)[0]
        except Exception:  # unreadable or undecodable: it is no record's file
            return None

    def _record_files(self, directory: str) -> Generator[str, None, None]:
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
            if self._record_name.fullmatch(name) is not None:
                yield os.path.join(directory, name)

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        path = self._group_directory(group)
        with _os_errors(path):
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
            records = [name for name in batch if self._record_name.fullmatch(name) is not None]
            found: list[ScanItem] = []
            if not records:
                return len(batch) < SCAN_BATCH, found
            try:
                directory = Directory(path)
            except (FileNotFoundError, NotADirectoryError):
                return True, found  # the group was removed meanwhile
            with directory:
                for name in records:
                    where = os.path.join(path, name)
                    try:
                        data = read_in(directory, name)
                    except OSError as exc:  # unreadable, or not a regular file: not a record
                        found.append((None, _unreadable(group, where, exc), where))
                        continue
                    if data is not None:  # None: removed since it was listed
                        found.append((None, data, where))
            return len(batch) < SCAN_BATCH, found

        def start() -> asyncio.Future[tuple[bool, list[ScanItem]]]:
            return asyncio.ensure_future(self._run(self._readers, next_batch))

        # Two batches in flight: the threads read ahead while the caller decodes.
        pending = collections.deque([start(), start()])
        exhausted = False
        try:
            while pending:
                done, batch = await pending.popleft()
                exhausted = exhausted or done
                self._check_open()
                if not exhausted:
                    pending.append(start())
                if batch:
                    yield batch
        finally:
            for future in pending:
                if not future.cancel() and not future.cancelled():
                    future.exception()  # retrieve it: an error in a batch nobody reads is no news
            with listing:
                if entries is not None:
                    entries.close()

    async def _list_groups(self) -> list[str]:
        def list_groups() -> list[str]:
            names: list[str] = []
            try:
                entries = os.scandir(self._directory)
            except FileNotFoundError:
                return names  # the store's directory was removed: the next write makes it again
            with entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                        continue
                    try:
                        name = decode_name(entry.name)
                    except ValueError:
                        continue  # not a directory of ours
                    files = self._record_files(entry.path)
                    if next(files, None) is not None:
                        names.append(name)
                    files.close()
            return names

        return await self._run(self._readers, list_groups)

    # --- watching other writers: a FileWatcher (_file_watch.py), while anyone watches ---------

    async def _start_watching(self) -> None:
        self._watcher = FileWatcher(self, read_file)
        await self._watcher.start()

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.stop()

    def _published(self, group: str, keys: Keys, data: bytes | None) -> None:
        if self._watcher is not None:
            self._watcher.published(group, keys, data)
        super()._published(group, keys, data)

    async def _close(self) -> None:
        def shut_down() -> None:
            for executor in (*self._writers, self._readers):
                executor.shutdown(wait=True)

        await asyncio.get_running_loop().run_in_executor(None, shut_down)

    # --- records ----------------------------------------------------------------------------

    def _encode_record(self, keys: Keys, value: Any) -> bytes:
        return self.codec.dumps({"keys": list(keys), "value": value})

    def _decode_record(
        self, group: str, keys: Keys | None, data: bytes, source: str | None
    ) -> tuple[Keys, Any]:
        record = self.codec.loads(data)
        if (
            type(record) is not dict
            or len(record) != 2
            or "keys" not in record
            or "value" not in record
            # A msgpack map holding a key twice decodes to a smaller dict, one of them lost:
            # our records are a map of exactly two entries (JSON's decoder refuses duplicates).
            or (self.codec.name == "msgpack" and data[:1] != b"\x82")
        ):
            raise ValueError('a record is a map of exactly "keys" and "value", each once')
        found = record["keys"]
        if type(found) is not list or not stored_keys_fit(found):
            raise ValueError(
                f'"keys" must be a list of 1 to {MAX_KEYS} strings of valid Unicode, not {found!r}'
            )
        found_keys = tuple(found)
        # Read by keys, the file was named from them; found by listing, its name must match.
        if keys is not None:
            misplaced = found_keys != keys
        else:
            expected_name = key_digest(found_keys) + self._extension
            misplaced = source is not None and os.path.basename(source) != expected_name
        if misplaced:
            where = source or self.record_path(group, keys or found_keys)
            raise CorruptRecordError(
                f"{where} holds the record of keys {found_keys!r}, whose file is "
                f"{key_digest(found_keys) + self._extension}: it was copied or renamed by hand "
                "(fsck --repair renames it)",
                group=group,
                keys=found_keys,
                location=where,
            )
        return found_keys, record["value"]

    def _describe_record(self, group: str, keys: Keys | None) -> str:
        # Errors name the record's file, where a person can look at it.
        return self.record_path(group, keys) if keys is not None else self._directory

    def __repr__(self) -> str:
        return f"FileBackend({self._directory!r}, codec={self.codec.name!r})"


def _open_marker(directory: str, options: StoreOptions) -> tuple[Codec, bytes]:
    """Create the store's directory and marker, or check an existing marker.

    Return the codec and the marker's bytes (kept, to make the marker again if it is removed).
    """
    marker_path = os.path.join(directory, MARKER)
    os.makedirs(directory, exist_ok=True)
    data = _read_marker(directory)
    if data is None:
        unknown = [entry for entry in os.listdir(directory) if not entry.startswith(".")]
        if unknown:
            raise IncompatibleStoreError(
                f"{directory} has no {MARKER} but holds {sorted(unknown)[:3]}: it is not a "
                "rapid_dev_storage store; choose another path or name"
            )
        codec = options.codec if options.codec is not None else codec_by_name("msgpack")
        marker = {
            "codec": codec.name,
            "extension": codec.extension,
            "format": FORMAT_NAME,
            "key_digest": "sha256-128 of length-prefixed UTF-8 keys",
            "name": options.name,
            "unique_identifier": options.identifier,
            "version": FORMAT_VERSION,
        }
        text = json.dumps(marker, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        durable = options.durability == "full"
        _create_once(directory, marker_path, text.encode("utf-8"), durable)
        gitignore = os.path.join(directory, GITIGNORE)
        if not os.path.lexists(gitignore):
            _create_once(directory, gitignore, _GITIGNORE_TEXT.encode(), durable)
        data = _read_marker(directory) or b""
    codec = _check_marker(directory, data, options.name, options.identifier, options.codec)
    locks = os.path.join(directory, LOCK_DIRECTORY)
    with contextlib.suppress(FileExistsError):
        os.mkdir(locks)
    try:
        Directory(locks).close()  # a link or a file there is refused now, not at the first lock
    except UnsafeEntryError as exc:
        raise IncompatibleStoreError(
            f"{locks} is a {exc.kind}, not the store's lock directory: rapid_dev_storage keeps "
            "its lock files there and never follows links; remove it (it is made again)"
        ) from exc
    return codec, data


def _read_marker(directory: str) -> bytes | None:
    """Read the marker; a link or FIFO in its place is refused, never followed or waited on."""
    try:
        root = Directory(directory, follow=True)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with root:
        try:
            return read_in(root, MARKER)
        except UnsafeEntryError as exc:
            raise IncompatibleStoreError(
                f"{root.join(MARKER)} is a {exc.kind}, not the store's marker (a regular file): "
                "rapid_dev_storage never follows links inside a store; if it is this store's "
                "marker, put the file itself there"
            ) from exc


def _create_once(directory: str, target: str, data: bytes, durable: bool) -> None:
    """Create ``target`` whole, unless another process created it first."""
    with Directory(directory, follow=True) as root:
        temp = TempFile(FileIO, root, data, durable)
        try:
            os.link(root.join(temp.name), target)  # atomic "create if absent": the first wins
        except FileExistsError:
            pass
        except OSError:
            if not os.path.lexists(target):  # a file system without hard links
                temp.commit(os.path.basename(target))
        finally:
            temp.discard()
        if durable:
            root.sync(FileIO)


def _check_marker(
    directory: str, data: bytes, name: str, identifier: str, requested: Codec | None
) -> Codec:
    """Return the codec of the store whose marker holds ``data``, checking every field.

    Raises:
        IncompatibleStoreError: naming the field that is wrong, what it holds and what is
            expected; or the store is another one, or needs another codec or a newer reader.

    """
    where = os.path.join(directory, MARKER)

    def invalid(problem: str, field: str | None = None) -> IncompatibleStoreError:
        return IncompatibleStoreError(
            f"{where} is not a valid store marker: {problem}; restore it (from git or a "
            "backup) or fix it by hand (docs/format.md describes it)",
            location=where,
            field=field,
        )

    try:
        marker = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_marker_fields)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a field twice
        raise invalid(f"it does not decode as JSON: {exc}") from exc
    if type(marker) is not dict:
        raise invalid(f"it holds {type(marker).__name__} {marker!r}, expected a JSON object")
    for field, expected in _MARKER_FIELDS.items():
        if field not in marker:
            raise invalid(f'field "{field}" is missing (expected {expected})', field)
        found = marker[field]
        # bool is an int in Python, but a marker's version true is no version.
        if type(found) is not (int if field == "version" else str) or found in ("", False):
            raise invalid(
                f'field "{field}" is {type(found).__name__} {found!r}, expected {expected}', field
            )
    if marker["format"] != FORMAT_NAME:
        raise invalid(f'field "format" is {marker["format"]!r}, expected {FORMAT_NAME!r}', "format")
    if marker["version"] < 1:
        raise invalid(
            f'field "version" is {marker["version"]}, expected a version from 1 to '
            f"{FORMAT_VERSION}",
            "version",
        )
    stored_names = (marker["name"], marker["unique_identifier"])
    if stored_names != (name, identifier):
        raise IncompatibleStoreError(
            f"{where} belongs to store {stored_names!r}, not {(name, identifier)!r}",
            location=where,
        )
    codec = codec_for_existing_store(
        where, marker["codec"], marker["version"], FORMAT_VERSION, requested
    )
    if marker["extension"] != codec.extension:
        raise invalid(
            f'field "extension" is {marker["extension"]!r}, but codec {codec.name!r} names '
            f"record files {codec.extension!r}",
            "extension",
        )
    return codec


_MARKER_FIELDS = {
    "format": f"the string {FORMAT_NAME!r}",
    "version": f"an integer from 1 to {FORMAT_VERSION}",
    "codec": 'a codec name such as "json" or "msgpack"',
    "extension": 'the record files\' extension, such as ".json"',
    "name": "the store's name, a string",
    "unique_identifier": "the store's identifier, a string",
}
"""The marker's fields and what each must hold (``key_digest`` is a reminder for people)."""


def _marker_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields = dict(pairs)
    if len(fields) != len(pairs):
        twice = sorted({key for key, _ in pairs if [k for k, _ in pairs].count(key) > 1})
        raise ValueError(f"field {twice[0]!r} appears twice")
    return fields


def _sweep_orphans(directory: str) -> None:
    """Remove temp files whose writer is gone; then remove group directories they left empty.

    Group directories that are links are not entered: nothing outside the store is touched.
    """
    now = time.time()
    with os.scandir(directory) as groups:
        for group in groups:
            if group.name.startswith(".") or not group.is_dir(follow_symlinks=False):
                continue
            try:
                handle = Directory(group.path)
            except OSError:
                continue  # gone meanwhile, or replaced by a link: fsck reports it
            with handle:
                swept = False
                for name in handle.names():
                    swept = abandoned_temp(handle, name, now, remove=True) or swept
            if swept:
                _remove_if_empty(group.path)


async def _settled(job: concurrent.futures.Future[Any]) -> None:
    """Wait until a job whose caller was cancelled has landed or given up (or never started)."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.shield(asyncio.wrap_future(job))


def _unlink(directory: Directory, name: str) -> bool:
    """Remove the record ``name``; return whether it existed.

    Raises:
        UnsafeEntryError: a directory stands under the record's name.

    """
    try:
        directory.unlink(name)
    except FileNotFoundError:
        return False
    except (IsADirectoryError, PermissionError) as exc:
        if not os.path.isdir(directory.join(name)):
            raise
        raise UnsafeEntryError(
            directory.join(name), "directory", "regular file", errno.EISDIR
        ) from exc
    return True


def _unreadable(group: str, path: str, exc: OSError) -> CorruptRecordError:
    """Return the error a scan reports for a record file it cannot read (permissions, FIFO)."""
    error = CorruptRecordError(
        f"{path} cannot be read as a record: {exc.strerror or exc}", group=group, location=path
    )
    error.__cause__ = exc
    return error


def _is_regular(status: os.stat_result) -> bool:
    return stat.S_ISREG(status.st_mode)
