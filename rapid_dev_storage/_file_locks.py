"""FileBackend's locks: a record's writes take its lock stripe, a file under ``.locks/``.

Stripe locks are flock(2) on ``.locks/NN.lock`` (filelock where flock is missing). Those files
are bookkeeping a person's tools may delete at any moment (``git clean -fdx``, ``rsync
--delete``): a missing ``.locks`` is made again, and a lock taken on a file that was replaced
meanwhile is dropped and taken again on the file now at the path, so two processes never both
hold "the" lock of one stripe through two different files.

A write does not wait on its thread for a stripe another process holds: it raises `StripeBusy`
and is tried again a little later (`_file_jobs`), so the writes of other records go on meanwhile.
Clears wait where they are (a reader thread, and they are rare), but without this process's
guard of the stripe, so that its writes of other records give their threads back meanwhile.

Each stripe's lock file stays open between writes (a descriptor per stripe used, 64 at most,
closed with the store): opening ``.locks`` and the file for every write, and closing both, were
five of a small write's nineteen system calls. What proves the held file current is the same
as for a file opened afresh: once locked, it must be the file at the path (its device and inode,
read when it was opened, against one ``lstat`` of the path), else it is closed and the file now
at the path opened, ``.locks`` made again if it has gone.

(Temp files carry a lock of their own, which proves their writer alive: see `_file_temps`.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

from ._file_io import Directory, FileIO, UnsafeEntryError
from ._file_layout import LOCK_DIRECTORY, LOCK_STRIPES, lock_file_name
from ._held_budget import HELD
from .errors import LockTimeoutError

if TYPE_CHECKING:
    import filelock

try:
    import fcntl
except ImportError:  # Windows: filelock locks with msvcrt there
    fcntl = None  # type: ignore[assignment]

_LOCK_FLAGS = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
"""The lock file is opened without O_CREAT first: creating takes the directory's lock
exclusively (every writer of the store would queue on ``.locks``), looking up only shares it."""
_UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)


def lock_timeout_error(path: str, timeout: float) -> LockTimeoutError:
    """Return the error for a lock held elsewhere past ``timeout``."""
    return LockTimeoutError(
        f"{path}: another process held the lock for more than {timeout:g} s (raise "
        "lock_timeout= or RAPID_DEV_STORAGE_LOCK_TIMEOUT, or find the process holding it)",
        location=path,
        timeout=timeout,
    )


class Abandoned(Exception):
    """The operation's caller was cancelled before it took effect: it gives up, and never will."""


class Abandon(Protocol):
    """Whether an operation's caller was cancelled (a `threading.Event`, or a write's job)."""

    def is_set(self) -> bool:
        """Return True once the caller was cancelled."""


class Retry(Abandon, Protocol):
    """A write that is tried again instead of waiting for a stripe another process holds.

    ``lock_deadline`` is when its lock timeout runs out, set when it first found the stripe held
    (None until then): every later attempt keeps that deadline.
    """

    lock_deadline: float | None


class StripeBusy(Exception):
    """Another process holds the stripe: try the write again later (see `Retry`)."""


_LIVE: weakref.WeakSet[StripeLocks] = weakref.WeakSet()


def _forget_after_fork() -> None:
    """In a forked child: let go of the lock files inherited from the parent, unlocked.

    A flock belongs to the open file, which a fork shares: a child locking through an inherited
    descriptor would hold the parent's lock with it, not against it. The child opens its own.
    """
    for locks in list(_LIVE):
        for stripe in range(LOCK_STRIPES):
            locks._let_go(stripe)  # the parent's descriptor stays open, and its lock held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class StripeLocks:
    """The lock stripes of one store.

    ``recreate`` is called when ``.locks`` has gone missing, to make the store's bookkeeping
    again before the lock file is.
    """

    def __init__(self, root: str, timeout: float, recreate: Callable[[], None]) -> None:
        self._path = os.path.join(root, LOCK_DIRECTORY)
        # Each stripe's lock file path, joined once: a write checks its lock file against it.
        self._paths = [
            os.path.join(self._path, lock_file_name(stripe)) for stripe in range(LOCK_STRIPES)
        ]
        self._timeout = timeout
        self._recreate = recreate
        self._filelocks: dict[int, filelock.FileLock] = {}
        # This process's writers queue for a stripe here, woken the moment it is let go; the
        # flock then only excludes other processes (a flock held by another of our threads would
        # be polled for, sleeping up to 20 ms at a time).
        self._guards = [threading.Lock() for _ in range(LOCK_STRIPES)]
        # Each stripe's open lock file (descriptor, device, inode), used under its guard only;
        # held between writes while the process's budget (`_held_budget`) has a place for it.
        self._held: list[tuple[int, int, int] | None] = [None] * LOCK_STRIPES
        self.flock_unsupported = fcntl is None
        _LIVE.add(self)

    @contextlib.contextmanager
    def hold(self, stripe: int, abandon: Abandon, retry: Retry | None = None) -> Iterator[None]:
        """Hold ``stripe``, waiting up to the store's lock timeout for another holder.

        With ``retry``, another process's hold is not waited for: `StripeBusy` is raised (and
        the deadline kept in ``retry``) until the deadline, `LockTimeoutError` after it. This
        process's own holders are waited for: they hold a stripe only for a rename.

        Raises:
            LockTimeoutError: held elsewhere for longer than the store's lock timeout.
            Abandoned: ``abandon`` was set before the lock was taken (checked while waiting
                for flock; filelock's fallback waits without looking).
            StripeBusy: with ``retry``, another process holds the stripe now.

        """
        timeout = self._timeout
        if abandon.is_set():
            raise Abandoned
        deadline = retry.lock_deadline if retry is not None else None
        if deadline is None:
            deadline = time.monotonic() + timeout
        guard = self._guards[stripe]
        delay = 0.0005
        while True:
            self._enter(guard, stripe, deadline, abandon)
            if self.flock_unsupported:
                break
            try:
                # The lock file against other processes (one generator, not two nested: a
                # hold is taken for every write).
                descriptor = self._acquire(stripe, deadline, abandon, busy=True)
            except _FlockUnsupported:
                self.flock_unsupported = True
                break
            except StripeBusy:
                guard.release()
                if retry is not None:
                    retry.lock_deadline = deadline
                    raise
                # A clear waits for the other process here, but not holding the guard: this
                # process's writes of the stripe meanwhile get `StripeBusy` and give their
                # writer threads back, instead of queueing on the guard and holding them all.
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
                continue
            except BaseException:
                guard.release()
                raise
            assert fcntl is not None
            try:
                yield
            finally:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_UN)
                finally:
                    held = self._held[stripe]
                    if held is None or held[0] != descriptor:  # no place to hold it: once
                        os.close(descriptor)
                    guard.release()
            return
        try:
            with self._filelock(stripe, max(0.0, deadline - time.monotonic())):
                yield
        finally:
            guard.release()

    def _enter(self, guard: threading.Lock, stripe: int, deadline: float, abandon: Abandon) -> None:
        """Take this process's guard of ``stripe``: its holders hold it only for a rename."""
        while not guard.acquire(timeout=0.05):
            if abandon.is_set():
                raise Abandoned
            if time.monotonic() >= deadline:
                raise lock_timeout_error(self._paths[stripe], self._timeout)

    def _acquire(self, stripe: int, deadline: float, abandon: Abandon, *, busy: bool) -> int:
        """Return the stripe's held descriptor, holding the flock of the current lock file.

        ``busy``: raise `StripeBusy` instead of waiting for another process. Called under the
        stripe's guard, which covers every use of its descriptor.
        """
        assert fcntl is not None
        path = self._paths[stripe]
        while True:
            held = self._held[stripe]
            if held is None:
                held = self._open(stripe)
                if HELD.take():  # the process's budget (`_held_budget`); else used once
                    self._held[stripe] = held
            descriptor = held[0]
            try:
                _flock(descriptor, path, self._timeout, deadline, abandon, busy)
            except BaseException:
                if self._held[stripe] is not held:
                    os.close(descriptor)
                raise
            if _still_at_path(held, path):
                return descriptor
            # Replaced or removed since it was opened: another process may hold the new file.
            if self._held[stripe] is held:
                self._held[stripe] = None
                HELD.give_back()
            try:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
            finally:
                os.close(descriptor)

    def _open(self, stripe: int) -> tuple[int, int, int]:
        """Open the stripe's lock file (and ``.locks``, made again if missing): its identity."""
        name = lock_file_name(stripe)
        while True:
            try:
                directory = Directory(self._path)
            except FileNotFoundError:
                self._recreate()
                continue
            with directory:
                try:
                    descriptor = _open_lock_file(directory, name)
                except FileNotFoundError:
                    continue  # .locks removed since we opened it
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.EMLINK):
                        raise UnsafeEntryError(
                            directory.join(name), "symbolic link", "lock file", exc.errno
                        ) from exc
                    raise
            try:
                status = os.fstat(descriptor)
            except BaseException:
                os.close(descriptor)
                raise
            return descriptor, status.st_dev, status.st_ino

    def release_idle(self) -> bool:
        """Out of descriptors: close the held lock files no thread uses; return if any was."""
        released = False
        for stripe, guard in enumerate(self._guards):
            if self._held[stripe] is None or not guard.acquire(blocking=False):
                continue
            try:
                released |= self._let_go(stripe)
            finally:
                guard.release()
        return released

    def close(self) -> None:
        """Close the held lock files (the store is closing: no write holds a stripe now)."""
        for stripe in range(LOCK_STRIPES):
            self._let_go(stripe)

    def _let_go(self, stripe: int) -> bool:
        """Close the stripe's held lock file, if any, giving back its place; return if one was."""
        held, self._held[stripe] = self._held[stripe], None
        if held is None:
            return False
        os.close(held[0])
        HELD.give_back()
        return True

    @contextlib.contextmanager
    def _filelock(self, stripe: int, remaining: float) -> Iterator[None]:
        import filelock  # noqa: PLC0415  (only where flock is missing: start-up time is measured)

        path = self._paths[stripe]
        if not os.path.isdir(self._path):
            self._recreate()
        lock = self._filelocks.get(stripe)
        if lock is None:
            # thread_local (the default): two threads of this process exclude each other too.
            lock = self._filelocks[stripe] = filelock.FileLock(path, timeout=self._timeout)
        try:
            lock.acquire(timeout=remaining)
        except filelock.Timeout:
            raise lock_timeout_error(path, self._timeout) from None
        try:
            yield
        finally:
            lock.release()


def _open_lock_file(directory: Directory, name: str) -> int:
    try:
        return directory.open(FileIO, name, _LOCK_FLAGS)
    except FileNotFoundError:
        return directory.open(FileIO, name, _LOCK_FLAGS | os.O_CREAT, 0o644)


class _FlockUnsupported(Exception):
    """The file system has no flock(2): use filelock's fallback."""


def _flock(
    descriptor: int,
    path: str,
    timeout: float,
    deadline: float,
    abandon: Abandon,
    busy: bool,
) -> None:
    assert fcntl is not None
    delay = 0.0005
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise lock_timeout_error(path, timeout) from None
            if abandon.is_set():
                raise Abandoned from None
            if busy:
                raise StripeBusy from None
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                raise _FlockUnsupported from exc
            raise


def _still_at_path(held: tuple[int, int, int], path: str) -> bool:
    """Whether the locked file (its descriptor, device, inode) is still the file at its path.

    ``path`` is resolved again now, ``.locks`` and all: a lock file or a ``.locks`` made again
    meanwhile holds another inode there. (One system call: whoever locks through the path
    locks this same inode, which is all the exclusion needs; a descriptor's inode never
    changes, so the one read when it was opened is its inode now.)
    """
    try:
        current = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # opening it again says what is there
        return False
    return (held[1], held[2]) == (current.st_dev, current.st_ino)
