"""FileBackend's system calls: reading and atomically replacing files, never through a link.

A store may come from anywhere (a clone, a tarball, a colleague's rsync), so nothing inside it is
trusted: a group directory may be a symbolic link to somewhere else, a record may be a FIFO that
blocks whoever opens it, a directory may stand where a record should. Every name inside a group
is therefore resolved relative to a descriptor of the group directory opened with ``O_NOFOLLOW``
(a link there fails instead of being followed), files open with ``O_NOFOLLOW | O_NONBLOCK`` and
are read only once ``fstat`` says they are regular files. The store's own directory, and the path
the application gave, may be links: those are the application's choice, not the store's content.

Where the platform has no ``dir_fd`` support (Windows), names are joined to the directory's path
and only the checks on the file itself apply.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from typing import Callable, Iterator

_DIR_FD = os.open in os.supports_dir_fd and os.rename in os.supports_dir_fd
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
READ_FLAGS = (
    os.O_RDONLY
    | _O_BINARY
    | _O_NOFOLLOW
    | getattr(os, "O_NONBLOCK", 0)
    | _O_CLOEXEC
    | getattr(os, "O_NOCTTY", 0)
)
"""A link is refused (ELOOP) and a FIFO opens at once instead of waiting for a writer."""
_DIRECTORY_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_NOFOLLOW | _O_CLOEXEC
"""A new file, never an existing one or through a link."""
LARGEST_RECORD_FILE = 1 << 32
"""Bytes over which a file at a record's name is not read, but refused (`OversizedFileError`):
4 GiB, msgpack's limit for one str or bin. A sparse file made there (``truncate -s 64G``)
would otherwise be read whole, and end the scan or read with a `MemoryError`."""


class UnsafeEntryError(OSError):
    """Something that is not what the store expects stands at a path (a link, a FIFO...).

    ``kind`` says what it is (``"symbolic link"``, ``"FIFO"``, ``"directory"``...).
    """

    def __init__(self, path: str, kind: str, expected: str, error: int) -> None:
        advice = (
            "rapid_dev_storage never follows links inside a store: replace it with a real "
            f"{expected} (fsck lists such entries)"
            if kind == "symbolic link"
            else f"a {expected} belongs there: remove or rename it (fsck lists such entries)"
        )
        super().__init__(error, f"is a {kind}, not a {expected}: {advice}", path)
        self.kind = kind
        self.expected = expected


class OversizedFileError(UnsafeEntryError):
    """A file at a record's name too large to read; nothing of it was read.

    Over `LARGEST_RECORD_FILE`, or more than this process may allocate (a memory limit).
    """

    def __init__(self, path: str, size: int) -> None:
        limit = (
            f"over the largest record file a store reads ({LARGEST_RECORD_FILE:,} bytes)"
            if size > LARGEST_RECORD_FILE
            else "more than this process can hold in memory"
        )
        OSError.__init__(
            self,
            errno.EFBIG,
            f"holds {size:,} bytes, {limit}: a sparse file or a copy, not a record this "
            "store wrote; move it out of the store (fsck lists record files that do not read)",
            path,
        )
        self.kind, self.expected, self.size = "file too large", "regular file", size


def seconds_since_change(status: os.stat_result) -> float:
    """How long ago a file last changed, by its mtime or its ctime, whichever is later.

    Not the mtime alone: tools that restore times (``cp -p``, ``rsync -a``) set it back, and a
    file truncated in place can show its old mtime for a moment (ext4); nothing sets a ctime
    back.
    """
    modified, changed = status.st_mtime, status.st_ctime
    return time.time() - (modified if modified > changed else changed)  # max() costs twice this


def kind_of(mode: int) -> str:
    """Name a file type for messages."""
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISREG, "regular file"),
    ):
        if test(mode):
            return name
    return "special file"


class FileIO:
    """The system calls a write makes, gathered so a test can make any one of them fail."""

    open = staticmethod(os.open)
    write = staticmethod(os.write)
    fsync = staticmethod(os.fsync)
    close = staticmethod(os.close)
    rename = staticmethod(os.rename)


class Directory:
    """An open directory: names inside it are resolved relative to it, never through a link.

    Opening fails with `FileNotFoundError` when it is missing and `UnsafeEntryError` when the
    path is a link or not a directory.
    """

    __slots__ = ("fd", "path")

    def __init__(self, path: str, *, follow: bool = False) -> None:
        """Open ``path``; ``follow`` only for the store's own directory (the application's)."""
        self.path = path
        self.fd: int | None = None
        if _DIR_FD:
            try:
                self.fd = os.open(
                    path, _DIRECTORY_FLAGS & ~_O_NOFOLLOW if follow else _DIRECTORY_FLAGS
                )
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise _unsafe(path, "directory") from exc
                raise
        elif not follow and not stat.S_ISDIR(os.lstat(path).st_mode):
            raise _unsafe(path, "directory")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def join(self, name: str) -> str:
        return os.path.join(self.path, name)

    def open(self, io: type[FileIO] | FileIO, name: str, flags: int, mode: int = 0o644) -> int:
        if self.fd is None:
            return io.open(self.join(name), flags, mode)
        return io.open(name, flags, mode, dir_fd=self.fd)

    def rename(self, io: type[FileIO] | FileIO, source: str, target: str) -> None:
        if self.fd is None:
            _replace_by_path(self.join(source), self.join(target))
            return
        io.rename(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        if self.fd is None:
            os.unlink(self.join(name))
        else:
            os.unlink(name, dir_fd=self.fd)

    def lstat(self, name: str) -> os.stat_result:
        if self.fd is None:
            return os.lstat(self.join(name))
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def names(self) -> list[str]:
        """Return the names in the directory (the listing of the directory we hold open)."""
        if self.fd is None:
            return os.listdir(self.path)
        with os.scandir(self.fd) as entries:  # it lists through a duplicate, then rewinds
            return [entry.name for entry in entries]

    def identity(self) -> tuple[int, int]:
        status = os.stat(self.fd) if self.fd is not None else os.stat(self.path)
        return status.st_dev, status.st_ino

    def sync(self, io: type[FileIO] | FileIO) -> None:
        """Make renames and unlinks in it durable (no-op where directories do not open)."""
        if self.fd is not None:
            io.fsync(self.fd)


def _replace_by_path(source: str, target: str) -> None:
    # Windows refuses to replace a file another process has open; readers close within
    # milliseconds, so retry briefly rather than fail the write.
    for attempt in range(50):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == 49:
                raise
            time.sleep(0.01)


def _unsafe(path: str, expected: str) -> UnsafeEntryError:
    try:
        kind = kind_of(os.lstat(path).st_mode)
    except OSError:
        kind = "special file"
    return UnsafeEntryError(path, kind, expected, errno.ELOOP if kind == "symbolic link" else 0)


# --- reading --------------------------------------------------------------------------------


def read_in(directory: Directory, name: str, limit: int | None = None) -> bytes | None:
    """Return the bytes of the regular file ``name`` in ``directory``, or None if it is missing.

    With ``limit``, only the first ``limit`` bytes (a record's keys are at its start).

    Raises:
        UnsafeEntryError: a link, FIFO, directory or device stands there (nothing is read and
            nothing blocks).

    """
    try:
        descriptor = directory.open(FileIO, name, READ_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK, errno.EISDIR, errno.ENXIO):
            raise _unsafe(directory.join(name), "regular file") from exc
        raise
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise UnsafeEntryError(directory.join(name), kind_of(status.st_mode), "regular file", 0)
        if limit is not None and status.st_size > limit:
            return os.read(descriptor, limit)
        return read_rest(descriptor, status.st_size, directory.join(name))
    finally:
        os.close(descriptor)


def read_file(path: str) -> bytes | None:
    """Return a record file's bytes, or None if it (or its group directory) does not exist.

    Neither the file nor its directory is followed if it is a link.

    Raises:
        UnsafeEntryError: the file or its directory is not what it should be.

    """
    try:
        directory = Directory(os.path.dirname(path))
    except (FileNotFoundError, NotADirectoryError):
        return None
    with directory:
        return read_in(directory, os.path.basename(path))


def read_regular_file(path: str) -> bytes | None:
    """Return the bytes of the regular file ``path`` (None if missing), without waiting.

    For files a person names (``show FILE``, a marker found by a listing): the path may lead
    through links, but a FIFO or a device is refused instead of opened for reading.
    """
    try:
        descriptor = os.open(path, READ_FLAGS & ~_O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise UnsafeEntryError(path, kind_of(status.st_mode), "regular file", 0)
        return read_rest(descriptor, status.st_size, path)
    finally:
        os.close(descriptor)


LONGEST_READ = 0x7FFFF000
"""Bytes one ``read`` returns at most on Linux (MAX_RW_COUNT), however many are asked for."""


def read_rest(descriptor: int, size: int, path: str = "") -> bytes:
    """Read to the end; ``size`` (from fstat) makes one read enough for a file not growing.

    Raises:
        OversizedFileError: over `LARGEST_RECORD_FILE` (by its size, or grown past it while
            read), or more than this process can allocate: nothing more is read.

    """
    if size > LARGEST_RECORD_FILE:
        raise OversizedFileError(path, size)
    try:
        data = os.read(descriptor, size + 1)
        # Linux returns at most LONGEST_READ bytes a read: a file of 2 GiB or more goes on.
        if len(data) <= size and len(data) < LONGEST_READ:
            return data
        chunks, total = [data], len(data)
        while chunk := os.read(descriptor, max(size + 1 - total, 65536)):
            chunks.append(chunk)
            total += len(chunk)
            if total > LARGEST_RECORD_FILE:
                raise OversizedFileError(path, total)
        return b"".join(chunks)
    except MemoryError:  # a buffer, allocated before anything is read into it (a memory limit)
        raise OversizedFileError(path, size) from None


# --- writing --------------------------------------------------------------------------------


def remove_file(directory: Directory, name: str) -> bool:
    """Remove the file (or link, or FIFO) ``name``, never a directory; return whether it existed.

    Raises:
        UnsafeEntryError: a directory stands under the name.

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


def remove_if_empty(directory: str) -> None:
    """Remove ``directory`` if it is empty (a group whose last record went)."""
    with contextlib.suppress(OSError):  # not empty, already gone, a link: all fine
        os.rmdir(directory)


def open_group_directory(
    io: type[FileIO] | FileIO,
    path: str,
    *,
    create: bool,
    durable: bool,
    make_parent: Callable[[], None] = lambda: None,
) -> Directory | None:
    """Open a group directory (creating it if ``create``); return None if absent and not created.

    ``make_parent`` makes the store's directory again when it has gone (``git clean -fdx`` of a
    store never committed, ``rm -rf`` by a person) and a group is to be created in it.
    """
    while True:
        try:
            return Directory(path)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(path)
            except FileExistsError:
                continue  # made by another writer just now, or a link: opening again tells
            except FileNotFoundError:
                make_parent()
                os.mkdir(path)
            if durable:  # the new directory's entry in the store directory
                parent = Directory(os.path.dirname(path)) if _DIR_FD else None
                if parent is not None:
                    with parent:
                        parent.sync(io)


@contextlib.contextmanager
def group_directory(
    io: type[FileIO] | FileIO, path: str, *, create: bool, durable: bool
) -> Iterator[Directory | None]:
    """`open_group_directory`, closed again after the block."""
    directory = open_group_directory(io, path, create=create, durable=durable)
    if directory is None:
        yield None
        return
    with directory:
        yield directory
