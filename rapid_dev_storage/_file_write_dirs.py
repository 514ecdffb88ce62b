"""Group directories held open between writes: one ``lstat`` proves one current.

Every write opened its group directory by path and closed it again (two of a small write's
system calls, the open resolving the whole path). A held directory is proven to be the one at
its path by one ``lstat`` (device and inode: a link has its own), exactly as the reads' held
directories are (`_file_read.HeldDirectories`), and the write then creates, renames and removes
relative to the directory that stood at the path at that moment, never through a link. One
replaced since (cleared and made again, checked out again by git, swapped for a link by a
person) is opened again by path, as every write did before; one removed is made again. Its
inode cannot be reused by a new directory while we hold it open, so a match is never a stale
directory.

Writes run on several threads, and a write uses its directory from the temp file's creation
to the rename and the directory fsync it leads: each held directory counts its users, and is
closed (when replaced, when too many are held, when the store closes) only once none uses it.
Each held one takes a place in the process's budget (`_held_budget`); refused one, a write
opens its directory and closes it when done, as writes did before.
This is not the reads' holder: that one covers each use with its lock, which a write's
milliseconds would hold against every other writer.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Callable

from ._file_io import Directory, FileIO, open_group_directory
from ._held_budget import HELD

HELD_DIRECTORIES = 32
"""Bounded: group names may come from users, and each held directory is a descriptor."""


class HeldDirectory:
    """A group directory one or more writes use: its ``directory`` and (device, inode)."""

    __slots__ = ("directory", "held", "identity", "users")

    def __init__(self, directory: Directory, identity: tuple[int, int]) -> None:
        self.directory = directory
        self.identity = identity
        self.users = 1
        self.held = False  # in `WriteDirectories._held`: closed by whoever takes it out


class WriteDirectories:
    """The group directories of one store's writes, held open between them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, HeldDirectory] = {}
        self._closed = False

    def take(
        self,
        io: type[FileIO] | FileIO,
        path: str,
        *,
        create: bool,
        durable: bool,
        make_parent: Callable[[], None],
    ) -> HeldDirectory | None:
        """Return the group directory at ``path`` to use (None if absent and not created).

        Give it back (`give_back`) once the write no longer uses it.
        """
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            with self._lock:
                held = self._held.get(path)
                if held is not None and held.identity == (status.st_dev, status.st_ino):
                    held.users += 1
                    return held
        directory = open_group_directory(
            io, path, create=create, durable=durable, make_parent=make_parent
        )
        if directory is None:
            return None
        try:
            identity = directory.identity()  # what was opened, not what lstat saw
        except BaseException:
            directory.close()
            raise
        taken = HeldDirectory(directory, identity)
        if directory.fd is None:
            return taken  # no descriptor to hold (Windows): opened by path each time
        with self._lock:
            if self._closed:
                return taken
            old = self._held.pop(path, None)
            if old is not None:
                self._let_go(old)
            if len(self._held) >= HELD_DIRECTORIES:
                self._release_all()
            if HELD.take():  # the process's budget (`_held_budget`); else used once
                taken.held = True
                self._held[path] = taken
        return taken

    def keep(self, taken: HeldDirectory) -> Callable[[], None]:
        """Have ``taken`` used once more (a directory fsync to come); return its `give_back`."""
        with self._lock:
            taken.users += 1
        return functools.partial(self.give_back, taken)

    def give_back(self, taken: HeldDirectory) -> None:
        """Say the write is done with ``taken``: closed if no longer held for other writes."""
        with self._lock:
            taken.users -= 1
            if taken.users or taken.held:
                return
        taken.directory.close()

    def close(self) -> None:
        """Close every directory held (the store is closing: none is in use)."""
        with self._lock:
            self._closed = True
            self._release_all()

    def release_idle(self) -> bool:
        """Out of descriptors: close the held directories no write uses; return if any was."""
        with self._lock:
            idle = [path for path, held in self._held.items() if not held.users]
            for path in idle:
                self._let_go(self._held.pop(path))
        return bool(idle)

    def _release_all(self) -> None:
        for held in self._held.values():
            self._let_go(held)
        self._held.clear()

    @staticmethod
    def _let_go(held: HeldDirectory) -> None:
        """Take ``held`` out of the held ones (under the lock): closed now, or by its last user."""
        held.held = False
        HELD.give_back()
        if not held.users:
            held.directory.close()
