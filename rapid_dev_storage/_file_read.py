"""FileBackend's reads: small records on the loop (with a cache), listings on threads.

Reads of small records run inline on the event loop: opening and reading a warm file takes a few
microseconds, a hop to a thread about 130. Each read opens, reads and closes its file within one
call, inline or in one thread job: a descriptor never crosses a hop, so a read cancelled before
its job starts leaves nothing open. The system calls, and what they refuse, are `_file_io`'s.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
from stat import S_ISREG
from typing import Generator

from ._file_io import (
    READ_FLAGS,
    Directory,
    FileIO,
    UnsafeEntryError,
    read_file,
    read_rest,
    seconds_since_change,
)
from ._file_layout import (
    group_of_directory,
    hand_made_group,
    hand_made_message,
    is_record_name,
)
from ._held_budget import HELD

logger = logging.getLogger(__name__)

READ_CACHE_ENTRIES = 16384
READ_CACHE_RECORD_BYTES = 16 * 1024
RACY_SECONDS = 0.05
"""A file changed this recently may change again within the same timestamp tick: not cached."""
HELD_DIRECTORIES = 32
"""Group directories held open for reads (see HeldDirectories), per store: a process may run
many stores under a descriptor limit of 256 (macOS's default), and the app's own files come
first. An app reading more groups than this in turn opens them as every read did before."""


class ReadCache:
    """Recently read small records, trusted only while the file's identity is unchanged.

    An atomic replace gives the record a new inode and an in-place edit a new ctime, so one
    ``stat`` (about 2.5 us) proves an entry current, where opening and reading the file costs
    about 7 (not the mtime: ``cp -p`` and ``rsync -a --inplace`` write a file of the same size
    in place and set its mtime back; nothing sets a ctime back). Like git's index, it never
    trusts a file changed within `RACY_SECONDS` of being read (by its mtime or its ctime,
    whichever is later): a second edit within the same timestamp tick could otherwise go
    unseen. The inode proves it is the very file read before, which was inside the store.
    """

    def __init__(self) -> None:
        # Used on the event loop's thread and by synchronous callers' threads (inline reads run
        # on both). An entry: the file's inode, size and ctime, its group directory's path and
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
            if (status.st_ino, status.st_size, status.st_ctime_ns, directory.st_ino) == (
                entry[0],
                entry[1],
                entry[2],
                entry[4],
            ) and not stat.S_ISLNK(directory.st_mode):
                return entry[5]
        self._entries.pop(path, None)  # replaced, edited or removed since: read it again
        return None

    def keep(
        self, path: str, status: os.stat_result, directory: str, directory_inode: int, data: bytes
    ) -> None:
        """Keep ``data``, read from ``path`` (``status``) in the group ``directory`` (its inode).

        Only if it is small enough to keep, and old enough to trust (see the class).
        """
        if len(data) > READ_CACHE_RECORD_BYTES or seconds_since_change(status) < RACY_SECONDS:
            return
        entries = self._entries
        if len(entries) >= READ_CACHE_ENTRIES:
            # Another thread changing the dict meanwhile breaks next(iter()): evict next time.
            with contextlib.suppress(RuntimeError, StopIteration):
                entries.pop(next(iter(entries)), None)  # the oldest
        entries[path] = (
            status.st_ino,
            status.st_size,
            status.st_ctime_ns,
            directory,
            directory_inode,
            data,
        )


class HeldDirectories:
    """Group directories held open for reads on the loop; one ``lstat`` proves one still current.

    A first read opened the group directory, opened the record relative to it and closed the
    directory again: three of its seven system calls. A held directory is proven to be the one
    at its path by one ``lstat`` (device and inode: a link has its own), and the record is then
    opened relative to the directory that stood at the path at that moment, never through a
    link. One replaced since (cleared and made again, checked out again by git, swapped for a
    link by a person) is opened again by path, as every read did before, and the old one closed.

    Used on the loop's thread and by synchronous callers' threads: a lock covers each use of a
    held descriptor, so none is closed while another thread opens a file relative to it. Each
    held one takes a place in the process's budget (`_held_budget`); refused one, a read opens
    its directory and closes it again, as reads did before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # path: (its descriptor, or None where names do not open relative to one; device and
        # inode; the Directory), the descriptor first: a first read opens relative to it.
        self._held: dict[str, tuple[int | None, int, int, Directory]] = {}
        self._closed = False

    def open_file(self, directory: str, name: str) -> tuple[int, int]:
        """Open ``name`` in ``directory`` to read; return it and the directory's inode.

        Raises:
            FileNotFoundError: no such directory or file (`Directory` and ``os.open`` raise the
                rest: a link or a file where the directory should be, a link as the file...).

        """
        try:
            status = os.lstat(directory)
            with self._lock:
                held = self._held.get(directory)
                if held is None or held[2] != status.st_ino or held[1] != status.st_dev:
                    held = self._hold(directory)
                    if self._held.get(directory) is not held:  # closed, or no place: once
                        try:
                            return held[3].open(FileIO, name, READ_FLAGS), held[2]
                        finally:
                            held[3].close()
                if held[0] is not None:  # nearly every read
                    return FileIO.open(name, READ_FLAGS, dir_fd=held[0]), held[2]
                return held[3].open(FileIO, name, READ_FLAGS), held[2]
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            with self._lock:
                if not self._held:
                    raise
                self._release()  # out of descriptors: the held ones go first, not the read
        return self.open_file(directory, name)

    def _hold(self, path: str) -> tuple[int | None, int, int, Directory]:
        directory = Directory(path)  # never through a link
        held = (directory.fd, *directory.identity(), directory)  # what was opened, not lstat's
        old = self._held.pop(path, None)
        if old is not None:
            old[3].close()
            HELD.give_back()
        if len(self._held) >= HELD_DIRECTORIES:  # bounded: group names may come from users
            self._release()
        if not self._closed and HELD.take():  # the process's budget (`_held_budget`)
            self._held[path] = held
        return held

    def _release(self) -> None:
        for held in self._held.values():
            held[3].close()
        HELD.give_back(len(self._held))
        self._held.clear()

    def close(self) -> None:
        """Close every held directory; later reads open and close theirs each time."""
        with self._lock:
            self._closed = True
            self._release()


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


def read_small(
    path: str, limit: int, cache: ReadCache, directories: HeldDirectories
) -> tuple[bool, bytes | None]:
    """Read the record file ``path`` on the loop if it holds at most ``limit`` bytes.

    Return (True, its bytes, or None if there is no such file), or (False, None) having read
    nothing when it is larger (or not a regular file): read it on a thread then. The group
    directory is one of ``directories``. What it reads goes into ``cache``, if worth keeping
    (look there first).
    """
    directory, _, name = path.rpartition(os.sep)  # record paths are joined with os.sep
    try:
        descriptor, directory_inode = directories.open_file(directory, name)
    except (FileNotFoundError, NotADirectoryError):
        return True, None
    except UnsafeEntryError:
        raise  # the group directory is a link, or not a directory
    except OSError:
        return True, read_file(path)  # raises the precise error (the record is a link...)
    try:
        status = os.fstat(descriptor)
        size = status.st_size
        if size > limit or not S_ISREG(status.st_mode):
            return False, None  # a FIFO or a device too: the thread's read names it
        data = os.read(descriptor, size + 1)  # read_rest, its one read written out
        if len(data) > size:  # grown since the fstat
            data += read_rest(descriptor, 0)
    finally:
        os.close(descriptor)
    cache.keep(path, status, directory, directory_inode, data)
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
