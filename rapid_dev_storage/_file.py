"""`FileBackend`: one file per record, one directory per group; the format is in docs/format.md.

Reads of small records run inline on the event loop: opening and reading a warm file takes a few
microseconds, a hop to a thread about 130. Anything that may take long (a large record, a write
with its fsyncs, a lock wait, a directory scan) runs on threads, one whole operation per hop.
Writes of one record always go to the same writer thread, so they land in the order they were
made. Every write is a new temp file in the group's directory, written, fsynced, renamed over the
record and followed by an fsync of the directory (at ``durability="full"``), so a reader or a
crash only ever sees a whole record.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import itertools
import json
import os
import secrets
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Generator, Iterator, TypeVar

import filelock
import watchfiles

try:
    import fcntl
except ImportError:  # Windows: filelock locks with msvcrt there
    fcntl = None  # type: ignore[assignment]

from ._backend import ScanItem, StorageBackend
from ._codecs import Codec, codec_by_name, codec_for_existing_store
from ._names import decode_name, encode_name, key_digest
from ._settings import (
    Durability,
    StoreOptions,
    resolve_force_polling,
    resolve_inline_limit,
    resolve_store_options,
)
from ._types import Keys
from ._validate import MAX_KEYS, stored_keys_fit
from ._watch import logger
from .errors import (
    CorruptRecordError,
    IncompatibleStoreError,
    LockTimeoutError,
    StorageError,
    StorageIOError,
)

T = TypeVar("T")

FORMAT_NAME = "rapid_dev_storage"
FORMAT_VERSION = 1
MARKER = ".rapid-dev-storage.json"
LOCK_DIRECTORY = ".locks"
GITIGNORE = ".gitignore"
TEMP_PREFIX = ".rds-"
TEMP_SUFFIX = ".tmp"
DIGEST_LENGTH = 32
LOCK_STRIPES = 64
"""Lock files per store: records share them by hash, so their number stays fixed."""
WRITER_THREADS = 16
"""Writes of one record always use the same thread; many threads let concurrent fsyncs overlap
and share directory fsyncs (measured: 2,180 sets/s with 4, 2,860 with 16, at 64 tasks)."""
SCAN_BATCH = 128
"""Records read per hop while iterating; two batches are in flight at a time."""
ORPHAN_AGE = 3600.0
"""Seconds after which a temp file is swept even if a process with its pid is alive (pid reuse)."""

WATCH_STEP_MS = 10
WATCH_DEBOUNCE_MS = 100
"""File events are gathered for 10 ms of quiet, 100 ms at most, then applied together."""
WATCH_POLL_MS = 50
UNDECODABLE_RETRIES = 25
UNDECODABLE_WAIT = 0.02
"""A changed record that does not decode is read again for half a second before a warning."""
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
READ_CACHE_ENTRIES = 16384
READ_CACHE_RECORD_BYTES = 16 * 1024
RACY_SECONDS = 0.05
"""A file changed this recently may change again within the same timestamp tick: not cached."""

_GITIGNORE_TEXT = (
    "# Written by rapid_dev_storage: lock files and unfinished writes are not data.\n"
    f"/{LOCK_DIRECTORY}/\n"
    f"{TEMP_PREFIX}*{TEMP_SUFFIX}\n"
)


class _ReadCache:
    """Recently read small records, trusted only while the file's identity is unchanged.

    An atomic replace gives the record a new inode and an in-place edit a new mtime or size, so
    one ``stat`` (about 2.5 us) proves an entry current, where opening and reading the file costs
    about 7. Like git's index, it never trusts a file modified within `RACY_SECONDS` of being
    read: a second edit within the same timestamp tick could otherwise go unseen.
    """

    def __init__(self) -> None:
        # Used on the event loop's thread only, like inline reads.
        self._entries: dict[str, tuple[int, int, int, bytes]] = {}

    def get(self, path: str) -> bytes | None:
        entry = self._entries.get(path)
        if entry is None:
            return None
        try:
            status = os.stat(path)
        except OSError:
            status = None
        if status is not None and entry[:3] == (status.st_ino, status.st_size, status.st_mtime_ns):
            return entry[3]
        del self._entries[path]  # replaced, edited or removed since: read it again
        return None

    def put(self, path: str, status: os.stat_result, data: bytes) -> None:
        if len(data) > READ_CACHE_RECORD_BYTES or time.time() - status.st_mtime < RACY_SECONDS:
            return
        if len(self._entries) >= READ_CACHE_ENTRIES:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[path] = (status.st_ino, status.st_size, status.st_mtime_ns, data)


def _is_record_name(name: str, extension: str) -> bool:
    return len(name) == DIGEST_LENGTH + len(extension) and name.endswith(extension)


class _WouldWait(Exception):
    """An inline operation met a held lock: run it on a thread, where waiting is harmless."""


class _FlockUnsupported(Exception):
    """The file system has no flock(2): use filelock's fallback."""


@contextlib.contextmanager
def _flocked(path: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock(2) on ``path``.

    Each call opens its own descriptor, so two threads of one process exclude each other too.

    Raises:
        _WouldWait: held elsewhere and ``timeout`` is 0.
        LockTimeoutError: held elsewhere for longer than ``timeout``.

    """
    assert fcntl is not None
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, delay = time.monotonic() + timeout, 0.0005
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if timeout == 0:
                    raise _WouldWait from None
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"{path}: another process held the lock past the timeout (raise "
                        "lock_timeout= or RAPID_DEV_STORAGE_LOCK_TIMEOUT)"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
            except OSError as exc:
                if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise _FlockUnsupported from exc
                raise
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


class FileIO:
    """The system calls a write makes, gathered so a test can make any one of them fail."""

    open = staticmethod(os.open)
    write = staticmethod(os.write)
    fsync = staticmethod(os.fsync)
    close = staticmethod(os.close)
    replace = staticmethod(os.replace)


@contextlib.contextmanager
def _os_errors(location: str) -> Iterator[None]:
    """Turn OS and lock errors into ours, naming the file and keeping the original as the cause."""
    try:
        yield
    except StorageError:
        raise  # ours already (LockTimeoutError is an OSError too, through TimeoutError)
    except filelock.Timeout as exc:
        raise LockTimeoutError(
            f"{exc.lock_file}: another process held the lock past the timeout (raise "
            "lock_timeout= or RAPID_DEV_STORAGE_LOCK_TIMEOUT)"
        ) from exc
    except OSError as exc:
        raise StorageIOError(f"{exc.filename or location}: {exc.strerror or exc}") from exc


def read_file(path: str) -> bytes | None:
    """Return a file's bytes, or None if it does not exist."""
    try:
        descriptor = os.open(path, os.O_RDONLY | _O_BINARY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return _read_rest(descriptor, os.fstat(descriptor).st_size)
    finally:
        os.close(descriptor)


def _read_rest(descriptor: int, size: int) -> bytes:
    """Read to the end; ``size`` (from fstat) makes one read enough for a file not growing."""
    data = os.read(descriptor, size + 1)
    if len(data) <= size:
        return data
    chunks = [data]
    while chunk := os.read(descriptor, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def fsync_directory(io: type[FileIO] | FileIO, directory: str) -> None:
    """Make a rename or unlink in ``directory`` durable (no-op where directories do not open)."""
    if os.name == "nt":
        return
    descriptor = io.open(directory, os.O_RDONLY)
    try:
        io.fsync(descriptor)
    finally:
        io.close(descriptor)


def _replace(io: type[FileIO] | FileIO, source: str, target: str) -> None:
    # Windows refuses to replace a file another process has open; readers close within
    # milliseconds, so retry briefly rather than fail the write.
    for attempt in range(50):
        try:
            io.replace(source, target)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 49:
                raise
            time.sleep(0.01)


class DirectorySync:
    """Coalesces directory fsyncs: one fsync covers every rename that finished before it began.

    Writes that finish together (64 tasks setting records of one group) then share one
    directory fsync instead of queueing for one each.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._directories: dict[str, _DirectoryState] = {}

    def sync(self, io: type[FileIO] | FileIO, directory: str) -> None:
        """Return once a directory fsync that began after this call has succeeded."""
        with self._lock:
            state = self._directories.setdefault(directory, _DirectoryState())
            state.renamed += 1
            ticket = state.renamed
        with state.changed:
            while state.synced < ticket:
                if state.syncing:
                    state.changed.wait()
                    continue
                state.syncing, covered = True, state.renamed
                state.changed.release()
                synced = False
                try:
                    fsync_directory(io, directory)
                    synced = True
                finally:
                    state.changed.acquire()
                    state.syncing = False
                    if synced:
                        state.synced = max(state.synced, covered)
                    state.changed.notify_all()


@dataclasses.dataclass
class _DirectoryState:
    renamed: int = 0  # tickets handed out, one per rename
    synced: int = 0  # every ticket up to this one is durable
    syncing: bool = False
    changed: threading.Condition = dataclasses.field(default_factory=threading.Condition)


def write_atomically(
    io: type[FileIO] | FileIO,
    directory: str,
    target: str,
    data: bytes,
    durable: bool,
    directory_sync: DirectorySync | None = None,
) -> None:
    """Replace ``target`` with ``data``: temp file, write, fsync, rename, fsync the directory.

    On any failure before the rename the old file is untouched and the temp file is removed.
    A failure of the final directory fsync is raised too, though the new file is in place.
    """
    while True:
        temp = os.path.join(
            directory, f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{TEMP_SUFFIX}"
        )
        try:
            descriptor = io.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o644)
            break
        except FileNotFoundError:
            # A new group, or a clear removed its emptied directory just now: make it.
            try:
                os.mkdir(directory)
            except FileExistsError:
                continue
            if durable:
                fsync_directory(io, os.path.dirname(directory))
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[io.write(descriptor, view) :]
            if durable:
                io.fsync(descriptor)
        finally:
            io.close(descriptor)
        _replace(io, temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        if directory_sync is None:
            fsync_directory(io, directory)
        else:
            directory_sync.sync(io, directory)


def _stripe(directory: str, file_name: str) -> int:
    """Return the lock stripe of a record: see docs/format.md."""
    return zlib.crc32(f"{os.path.basename(directory)}/{file_name}".encode()) % LOCK_STRIPES


def _remove_if_empty(directory: str) -> None:
    with contextlib.suppress(OSError):  # not empty, already gone: both fine
        os.rmdir(directory)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but not ours to signal
    return True


def is_orphan_temp(name: str, path: str, now: float) -> bool:
    """Return whether ``name`` is a temp file no live writer will finish."""
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
        return False
    pid_text = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    try:
        age = now - os.stat(path).st_mtime
    except FileNotFoundError:
        return False
    if not pid_text.isdigit():
        return age > ORPHAN_AGE
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    return not _pid_alive(pid) or age > ORPHAN_AGE


def namespace_directory(root: Path | str, name: str, identifier: str) -> str:
    """Return the absolute directory of store ``(name, identifier)`` under ``root``."""
    return os.path.join(os.path.abspath(root), f"{encode_name(name)}~{encode_name(identifier)}")


class FileBackend(StorageBackend):
    """Stores each record as a file in a directory per group: friendly to git and hand edits.

    ``path`` is a directory that may hold several stores, each in its own directory named from
    ``(name, unique_identifier)``. Several processes may share a store: writes are atomic
    renames, `update` and clears take a lock file, and readers never see a partial record.
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
    ) -> None:
        """Use `create_backend_instance`; this only assembles what it opened."""
        super().__init__(codec)
        self.location = directory
        self.durability = durability
        self._directory = directory
        self._durable = durability == "full"
        self._lock_timeout = lock_timeout
        self._inline_limit = inline_limit
        self._force_polling = force_polling
        self._index: dict[str, tuple[str, Keys]] = {}  # while watched: record file -> its record
        self._watch_task: asyncio.Future[None] | None = None
        self._watch_stop = asyncio.Event()
        self._index_ready = asyncio.Event()
        self._io = io
        self._extension = codec.extension
        self._locks: dict[int, filelock.FileLock] = {}
        self._group_directories: dict[str, str] = {}
        self._record_paths: dict[tuple[str, Keys], str] = {}
        self._cache = _ReadCache()
        self._directory_sync = DirectorySync()
        self._queued = [0] * WRITER_THREADS  # operations waiting on or running in each writer
        self._flock_unsupported = False
        self._writers = [
            ThreadPoolExecutor(1, thread_name_prefix="rapid-dev-storage-write")
            for _ in range(WRITER_THREADS)
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
        Opening sweeps temp files left by killed processes, unless ``sweep_orphans=False``
        (fsck uses that, to report them). ``read_only=True`` opens an existing store without
        changing a byte of its directory (no sweep, no lock directory) and refuses writes.

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

        def open_store() -> Codec:
            with _os_errors(directory):
                if read_only:
                    data = read_file(os.path.join(directory, MARKER))
                    if data is None:
                        raise IncompatibleStoreError(f"{directory} is not a store: no {MARKER}")
                    return _check_marker(
                        directory, data, options.name, options.identifier, options.codec
                    )
                chosen = _open_marker(directory, options)
                if sweep_orphans:
                    _sweep_orphans(directory)
            return chosen

        chosen = await asyncio.get_running_loop().run_in_executor(None, open_store)
        backend = cls(
            directory=directory,
            codec=chosen,
            durability=options.durability,
            lock_timeout=options.lock_timeout,
            inline_limit=inline_limit,
            force_polling=resolve_force_polling(force_polling),
        )
        backend.read_only = read_only
        return backend

    # --- paths, threads and locks ------------------------------------------------------------

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

    @contextlib.contextmanager
    def _locked(self, directory: str, file_name: str, *, wait: bool) -> Iterator[None]:
        """Hold the lock stripe of a record; without ``wait``, raise `_WouldWait` if it is held.

        Where flock(2) works, it is taken directly: the same lock filelock takes on Unix, without
        its 80 us of bookkeeping per acquisition (update would cost 2.5x a set instead of 1.5x).
        Elsewhere (Windows, a file system without flock) filelock does it.
        """
        stripe = _stripe(directory, file_name)
        path = os.path.join(self._directory, LOCK_DIRECTORY, f"{stripe:02d}.lock")
        timeout = self._lock_timeout if wait else 0.0
        if fcntl is not None and not self._flock_unsupported:
            try:
                with _flocked(path, timeout):
                    yield
                return
            except _FlockUnsupported:
                self._flock_unsupported = True
        lock = self._locks.get(stripe)
        if lock is None:
            # thread_local (the default): two threads of this process exclude each other too.
            lock = self._locks[stripe] = filelock.FileLock(path, timeout=self._lock_timeout)
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            if wait:
                raise
            raise _WouldWait from None
        try:
            yield
        finally:
            lock.release()

    async def _run(self, executor: ThreadPoolExecutor, function: Callable[[], T]) -> T:
        def call() -> T:
            with _os_errors(self._directory):
                return function()

        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def _record_operation(
        self, file_name: str, operation: Callable[[bool], T], *, size: int = 0
    ) -> T:
        """Run a write, swap or delete of one record, inline or on the record's writer thread.

        ``operation(inline)`` runs inline (on the loop) only at durability ``fast`` (no fsync),
        for a record within ``inline_limit``, when no earlier operation on that record's thread
        is still queued (so one record's writes land in the order they were made); it raises
        `_WouldWait` rather than wait for a lock, and then runs on the thread instead.
        """
        index = int(file_name[:8], 16) % WRITER_THREADS
        if not self._durable and size <= self._inline_limit and not self._queued[index]:
            try:
                with _os_errors(self._directory):
                    return operation(True)
            except _WouldWait:
                pass
        self._queued[index] += 1
        try:
            return await self._run(self._writers[index], lambda: operation(False))
        finally:
            self._queued[index] -= 1

    # --- hooks ------------------------------------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        path = self.record_path(group, keys)
        if self._inline_limit == 0:
            return await self._run(self._readers, lambda: read_file(path))
        try:
            cached = self._cache.get(path)
            if cached is not None:
                return cached
            try:
                descriptor = os.open(path, os.O_RDONLY | _O_BINARY)
            except (FileNotFoundError, NotADirectoryError):
                return None
            inline = False
            try:
                status = os.fstat(descriptor)
                inline = status.st_size <= self._inline_limit
                if inline:
                    data = _read_rest(descriptor, status.st_size)
                    self._cache.put(path, status, data)
                    return data
            finally:
                if inline:
                    os.close(descriptor)
        except OSError as exc:
            raise StorageIOError(f"{path}: {exc.strerror or exc}") from exc

        def read_large() -> bytes:
            try:
                return _read_rest(descriptor, status.st_size)
            finally:
                os.close(descriptor)

        return await self._run(self._readers, read_large)

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        path = self.record_path(group, keys)
        directory, file_name = os.path.split(path)

        def write(inline: bool) -> None:
            write_atomically(self._io, directory, path, data, self._durable, self._directory_sync)

        await self._record_operation(file_name, write, size=len(data))

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        path = self.record_path(group, keys)
        directory, file_name = os.path.split(path)

        def swap(inline: bool) -> bool:
            with self._locked(directory, file_name, wait=not inline):
                if read_file(path) != expected:
                    return False
                if new is None:
                    self._unlink_records(directory, [path])
                else:
                    durable, sync = self._durable, self._directory_sync
                    write_atomically(self._io, directory, path, new, durable, sync)
            return True

        return await self._record_operation(file_name, swap, size=len(new or b""))

    async def _delete(self, group: str, keys: Keys) -> None:
        path = self.record_path(group, keys)
        directory, file_name = os.path.split(path)

        def delete(inline: bool) -> None:
            with self._locked(directory, file_name, wait=not inline):
                self._unlink_records(directory, [path])

        await self._record_operation(file_name, delete)

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        directory = os.path.join(self._directory, encode_name(group))
        await self._run(self._readers, lambda: self._delete_matching(group, directory, prefix))

    def _delete_matching(self, group: str, directory: str, prefix: Keys) -> None:
        """Remove the group's records whose keys start with ``prefix``, a lock stripe at a time."""
        by_stripe: dict[int, list[str]] = {}
        for path in self._record_files(directory):
            if prefix:
                data = read_file(path)
                try:
                    keys = self._decode_record(group, None, data or b"", path)[0]
                except Exception:  # an undecodable record matches no prefix
                    continue
                if keys[: len(prefix)] != prefix:
                    continue
            by_stripe.setdefault(_stripe(directory, os.path.basename(path)), []).append(path)
        for paths in by_stripe.values():
            with self._locked(directory, os.path.basename(paths[0]), wait=True):
                self._unlink_records(directory, paths, remove_directory=False)
        if by_stripe:
            if self._durable:
                self._directory_sync.sync(self._io, directory)
            _remove_if_empty(directory)

    def _unlink_records(
        self, directory: str, paths: list[str], *, remove_directory: bool = True
    ) -> None:
        removed = False
        for path in paths:
            try:
                os.unlink(path)
                removed = True
            except (FileNotFoundError, NotADirectoryError):
                pass
        if removed and remove_directory:
            if self._durable:
                self._directory_sync.sync(self._io, directory)
            _remove_if_empty(directory)

    def _record_files(self, directory: str) -> Generator[str, None, None]:
        """Yield the paths of record files in a group directory (not temp or unknown files)."""
        length = DIGEST_LENGTH + len(self._extension)
        try:
            entries = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            for entry in entries:
                name = entry.name
                if len(name) == length and name.endswith(self._extension) and name[0] != ".":
                    yield entry.path

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        files = self._record_files(os.path.join(self._directory, encode_name(group)))
        listing = threading.Lock()  # the listing is shared by the reading threads

        def next_batch() -> tuple[bool, list[tuple[str, bytes]]]:
            with listing:
                paths = list(itertools.islice(files, SCAN_BATCH))
            # Files are read outside the lock, so both reader threads read at once.
            found = [(path, data) for path in paths if (data := read_file(path)) is not None]
            return len(paths) < SCAN_BATCH, found  # (listing exhausted, records not cleared)

        def start() -> asyncio.Future[tuple[bool, list[tuple[str, bytes]]]]:
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
                    yield [(None, data, path) for path, data in batch]
        finally:
            for future in pending:
                if not future.cancel() and not future.cancelled():
                    future.exception()  # retrieve it: an error in a batch nobody reads is no news
            with listing:
                files.close()

    async def _list_groups(self) -> list[str]:
        def list_groups() -> list[str]:
            names = []
            with os.scandir(self._directory) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_dir():
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

    # --- watching other writers -------------------------------------------------------------

    async def _start_watching(self) -> None:
        self._watch_stop = asyncio.Event()
        self._index_ready = asyncio.Event()
        # The watcher starts before the index is read, so nothing written meanwhile is missed;
        # it applies its first events once the index is there.
        self._watch_task = asyncio.ensure_future(self._watch_files())
        records = await self._run(self._readers, self._read_all_records)
        hub = self._active_hub()
        self._index = {}
        for path, group, keys, data in records:
            self._index[path] = (group, keys)
            if hub is not None:
                hub.remember(group, keys, data)
        self._index_ready.set()

    async def _stop_watching(self) -> None:
        if self._watch_task is None:
            return
        self._watch_stop.set()
        self._index_ready.set()
        await asyncio.gather(self._watch_task, return_exceptions=True)
        self._watch_task = None
        self._index = {}

    def _published(self, group: str, keys: Keys, data: bytes | None) -> None:
        if self._watch_task is not None:  # keep the index current: a later deletion needs it
            path = self.record_path(group, keys)
            if data is None:
                self._index.pop(path, None)
            else:
                self._index[path] = (group, keys)
        super()._published(group, keys, data)

    def _read_all_records(self) -> list[tuple[str, str, Keys, bytes]]:
        """Return every decodable record as (path, group, keys, bytes): the watcher's index."""
        found = []
        with os.scandir(self._directory) as entries:
            for entry in entries:
                group = self._group_of_directory(entry.name)
                if group is None or not entry.is_dir():
                    continue
                for path in self._record_files(entry.path):
                    data = read_file(path)
                    with contextlib.suppress(Exception):  # undecodable: a read reports it
                        if data is not None:
                            keys = self._decode_record(group, None, data, path)[0]
                            found.append((path, group, keys, data))
        return found

    @staticmethod
    def _group_of_directory(name: str) -> str | None:
        if name.startswith("."):
            return None
        try:
            return decode_name(name)
        except ValueError:
            return None  # not a directory of ours

    async def _watch_files(self) -> None:
        """Turn file events (ours, other processes', hand edits, git) into published changes."""
        polling = self._force_polling
        while not self._watch_stop.is_set():
            try:
                async for events in watchfiles.awatch(
                    self._directory, watch_filter=None, step=WATCH_STEP_MS,
                    debounce=WATCH_DEBOUNCE_MS, stop_event=self._watch_stop,
                    force_polling=polling, poll_delay_ms=WATCH_POLL_MS, recursive=True,
                    ignore_permission_denied=True,
                ):  # fmt: skip
                    await self._index_ready.wait()
                    await self._apply_events({path for _, path in events})
                return
            except Exception as exc:
                if polling:
                    logger.exception("rapid_dev_storage: the file watcher failed; retrying")
                    await asyncio.sleep(1)
                    continue
                # The OS's watch limit, or its event queue overflowed: poll, and rescan once,
                # since events may have been lost.
                logger.warning("rapid_dev_storage: file events failed (%s): polling instead", exc)
                polling = True
                await self._index_ready.wait()
                await self._apply_events(set(self._index) | {
                    path for path, *_ in await self._run(self._readers, self._read_all_records)
                })  # fmt: skip

    async def _apply_events(self, paths: set[str]) -> None:
        indexed = list(self._index)
        records = await self._run(self._readers, lambda: self._records_behind(paths, indexed))
        for count, path in enumerate(records, start=1):
            await self._refresh(path)
            if count % 100 == 0:
                await asyncio.sleep(0)  # a checkout of thousands of records: let others run

    def _records_behind(self, paths: set[str], indexed: list[str]) -> list[str]:
        """Return the record files that changed paths stand for (a group directory: all of its)."""
        records: set[str] = set()
        for path in paths:
            parts = os.path.relpath(path, self._directory).split(os.sep)
            if self._group_of_directory(parts[0]) is None:
                continue  # bookkeeping (.locks, the marker, temp files) or not ours
            if len(parts) == 1:  # a group directory: created, moved in, removed or moved out
                if os.path.isdir(path):
                    records.update(self._record_files(path))
                prefix = path + os.sep
                records.update(known for known in indexed if known.startswith(prefix))
            elif len(parts) == 2 and _is_record_name(parts[1], self._extension):
                records.add(path)
        return sorted(records)

    async def _refresh(self, path: str) -> None:
        """Publish the current state of one record file, retrying a half-written hand edit."""
        hub = self._active_hub()
        group = self._group_of_directory(os.path.basename(os.path.dirname(path)))
        if hub is None or group is None:
            return
        for _attempt in range(UNDECODABLE_RETRIES):
            data = read_file(path)
            if data is None:
                gone = self._index.pop(path, None)
                if gone is not None:
                    hub.publish(gone[0], gone[1], None, "external")
                return
            try:
                keys = self._decode_record(group, None, data, path)[0]
            except Exception:  # an editor may be half-way through rewriting it: look again
                await asyncio.sleep(UNDECODABLE_WAIT)
                continue
            self._index[path] = (group, keys)
            hub.publish(group, keys, data, "external")
            return
        logger.warning("rapid_dev_storage: %s changed and stays undecodable", path)

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


def _open_marker(directory: str, options: StoreOptions) -> Codec:
    """Create the store's directory and marker, or check an existing marker; return the codec."""
    marker_path = os.path.join(directory, MARKER)
    os.makedirs(directory, exist_ok=True)
    data = read_file(marker_path)
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
        if not os.path.exists(gitignore):
            _create_once(
                directory, gitignore, _GITIGNORE_TEXT.encode(), options.durability == "full"
            )
        data = read_file(marker_path) or b""
    codec = _check_marker(directory, data, options.name, options.identifier, options.codec)
    os.makedirs(os.path.join(directory, LOCK_DIRECTORY), exist_ok=True)
    return codec


def _create_once(directory: str, target: str, data: bytes, durable: bool) -> None:
    """Create ``target`` whole, unless another process created it first."""
    temp = os.path.join(
        directory, f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{TEMP_SUFFIX}"
    )
    write_atomically(FileIO, directory, temp, data, durable)
    try:
        os.link(temp, target)  # atomic "create if absent": the first opener's marker wins
    except FileExistsError:
        pass
    except OSError:
        if not os.path.exists(target):  # a file system without hard links
            os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


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
    """Remove temp files whose writer died; then remove group directories they left empty."""
    now = time.time()
    with os.scandir(directory) as groups:
        for group in groups:
            if group.name.startswith(".") or not group.is_dir():
                continue
            swept = False
            with os.scandir(group.path) as entries:
                for entry in entries:
                    if is_orphan_temp(entry.name, entry.path, now):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                        swept = True
            if swept:
                _remove_if_empty(group.path)
