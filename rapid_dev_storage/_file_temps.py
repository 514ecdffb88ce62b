"""Temp files: a new record's bytes beside it, locked by their writer; and sweeping the abandoned.

Every write goes through a temp file in the group's directory (docs/format.md, "Writing"). Its
writer holds a flock on it for its whole life, so whoever finds one unlocked knows the writer is
gone, whatever PID namespace, container or host it ran in: opening a store sweeps those (a large
store's on a thread: `_file_sweep`), and fsck reports them. Where flock is missing, a dead pid in
the name (or great age) is the evidence.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from typing import Generator, Iterator

from ._file_io import TEMP_FLAGS, Directory, FileIO, remove_if_empty
from ._file_layout import (
    is_bookkeeping,
    is_temp_name,
    new_temp_token,
    temp_name,
    temp_writer_pid,
)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

ORPHAN_AGE = 3600.0
"""Where flock is missing: seconds after which a temp file is swept even if its pid lives."""


class TempFile:
    """A new record's bytes in a temp file beside it, locked by its writer until renamed.

    The lock proves the writer alive to anyone sweeping abandoned temp files, across processes,
    PID namespaces and hosts sharing the directory: a process that dies releases it. It is held
    through a second descriptor, so the written one is closed (and its errors seen: NFS reports
    write errors at close) before the rename.
    """

    def __init__(
        self, io: type[FileIO] | FileIO, directory: Directory, data: bytes, durable: bool
    ) -> None:
        self._io = io
        self._directory = directory
        self._lock: int | None = None
        descriptor = self._create()
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[io.write(descriptor, view) :]
                if durable:
                    io.fsync(descriptor)
            finally:
                io.close(descriptor)
        except BaseException:
            self.discard()
            raise

    def _create(self) -> int:
        """Create and lock a new temp file; return a descriptor to write it through."""
        while True:
            self.name = temp_name()
            try:
                descriptor = self._directory.open(self._io, self.name, TEMP_FLAGS, 0o644)
            except FileExistsError:  # another writer's name (see `temp_name`): draw again
                new_temp_token()
                continue
            if fcntl is None or self._directory.fd is None:
                return descriptor
            self._lock = os.dup(descriptor)
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # a sweeper took it for abandoned in the instant before we locked it
            except OSError:
                return descriptor  # no flock on this file system: the sweep judges by pid
            else:
                # Locked. A sweeper that locked it first may have removed it already: then the
                # rename finds no temp file (FileNotFoundError) and the whole write is made
                # again (`RecordWrites.replace`), so no fstat here asks every write.
                return descriptor
            self._io.close(descriptor)
            self.discard()

    def commit(self, target: str) -> None:
        """Rename over ``target`` (in the same directory); on failure the temp file is removed."""
        try:
            self._directory.rename(self._io, self.name, target)
        except BaseException:
            self.discard()
            raise
        self._unlock()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._directory.unlink(self.name)
        self._unlock()

    def _unlock(self) -> None:
        descriptor, self._lock = self._lock, None
        if descriptor is not None:
            os.close(descriptor)


def abandoned_temp(directory: Directory, name: str, now: float, *, remove: bool) -> bool:
    """Whether ``name`` is a temp file no writer will finish; if ``remove``, remove it.

    Its writer holds a flock on it while it lives, so a temp file we can lock is abandoned. (A
    writer that finds its new temp file locked, or removed, by a sweep in the instant between
    creating and locking it starts again under another name: see `TempFile`.) Where flock is
    missing, a dead pid in its name (or great age) is the evidence instead.
    """
    status = _temp_status(directory, name, now)
    if status is None:
        return False
    try:
        descriptor = directory.open(FileIO, name, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # gone, or not ours to touch
    try:
        if not _unlocked(descriptor, name, now - status.st_mtime):
            return False
        if remove:
            held = os.fstat(descriptor)
            with contextlib.suppress(FileNotFoundError):
                current = directory.lstat(name)
                if (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                    directory.unlink(name)
        return True
    finally:
        os.close(descriptor)


def _temp_status(directory: Directory, name: str, now: float) -> os.stat_result | None:
    """Return a temp file's status if it may be abandoned (judged by its lock next)."""
    if not is_temp_name(name):
        return None
    try:
        status = directory.lstat(name)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(status.st_mode):
        return None  # not a temp file of ours, whatever its name: fsck reports it
    return status


def _unlocked(descriptor: int, name: str, age: float) -> bool:
    """Whether no writer holds the temp file open (we then hold its lock until we close it)."""
    if fcntl is None:
        return _abandoned_by_pid(name, age)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its writer is alive
    except OSError:  # no flock on this file system
        return _abandoned_by_pid(name, age)
    return True


def _abandoned_by_pid(name: str, age: float) -> bool:
    pid = temp_writer_pid(name)
    if pid is None:
        return age > ORPHAN_AGE
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # exists, but not ours to signal
    return age > ORPHAN_AGE


def sweep_orphans(
    directory: str, *, skip_larger_than: int | None = None
) -> Generator[bool, None, None]:
    """Remove temp files whose writer is gone; then remove group directories they left empty.

    A generator: it takes one step (yields) per directory entry it looks at, and lists lazily,
    so a caller can take a few steps at once and the rest later, or stop between any two
    (`_file_sweep.OrphanSweep`); closing it closes the directories it holds open. A group
    directory whose size (in bytes, as the file system counts it: it grows with the entries)
    is over ``skip_larger_than`` is not listed, and its step yields True. Group directories
    that are links are not entered: nothing outside the store is touched.
    """
    now = time.time()
    with os.scandir(directory) as groups:
        for group in groups:
            if is_bookkeeping(group.name) or not group.is_dir(follow_symlinks=False):
                yield False
                continue
            try:
                handle = Directory(group.path)
            except OSError:
                yield False
                continue  # gone meanwhile, or replaced by a link: fsck reports it
            with handle:
                size = os.fstat(handle.fd).st_size if handle.fd is not None else 0
                large = skip_larger_than is not None and size > skip_larger_than
                yield large
                if large:
                    continue
                swept = False
                for name in _names_in(handle):
                    yield False
                    swept = abandoned_temp(handle, name, now, remove=True) or swept
            if swept:
                remove_if_empty(group.path)


def _names_in(handle: Directory) -> Iterator[str]:
    """Yield the names in an open directory as they are read (a group may hold 400,000)."""
    if handle.fd is None:
        yield from handle.names()
        return
    with os.scandir(handle.fd) as entries:  # through a duplicate of the descriptor
        for entry in entries:
            yield entry.name
