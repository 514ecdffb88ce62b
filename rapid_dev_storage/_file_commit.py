"""Group commit: one directory fsync for every write that renamed into the directory meanwhile.

A durable write is whole on disk once its temp file was fsynced and renamed, and it survives a
crash once its directory was fsynced after the rename. 64 tasks writing one group would queue
for 64 directory fsyncs; instead, a write that renamed while a directory fsync was running joins
the next one, and the writer thread does not wait for it: it goes on to its next job (its file
fsync overlapping the directory's), and the write is acknowledged by the fsync that covers it.

The first writer to find no fsync running for the directory *leads*: after letting go of its
record, its thread fsyncs the directory (through the held group directory, kept open for it,
or a duplicate of its descriptor: so the directory it renamed into is the one made durable,
even if the path meanwhile names another),
acknowledges the writes that had joined before that fsync began, and goes on while writes keep
joining. Directories are told apart by device and inode, not path: a group directory removed and
made again is another directory.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Callable, Protocol

from ._file_io import Directory, FileIO

Acknowledge = Callable[[BaseException | None], None]
"""Told once a directory fsync covering the write has run: None, or the fsync's error."""


class Later(Protocol):
    """How a write defers its acknowledgement to the directory fsync that will cover it."""

    def defer(self) -> Acknowledge:
        """Return the callback that acknowledges the write (instead of the job's return)."""

    def after_landing(self, work: Callable[[], None]) -> None:
        """Run ``work`` on this thread once the record is let go (the next write may start)."""


class GroupCommit:
    """The directory fsyncs of one store's writes, shared by every write that can share one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[tuple[int, int], list[Acknowledge]] = {}  # directories being synced

    def join(
        self,
        io: type[FileIO] | FileIO,
        directory: Directory,
        acknowledge: Acknowledge,
        identity: tuple[int, int] | None = None,
        keep: Callable[[], Callable[[], None]] | None = None,
    ) -> Callable[[], None] | None:
        """Have ``acknowledge`` called after a fsync of ``directory`` that begins after now.

        Return the fsyncs to run when the caller leads (no fsync of the directory is running),
        or None when a running leader will include this write in its next fsync. ``identity``
        is the directory's (device, inode), when its caller knows it already. ``keep``, if
        given, keeps ``directory`` open for the leader (returning what lets it go) instead of a
        duplicate of its descriptor: a held group directory (`_file_write_dirs`).
        """
        if directory.fd is None:  # no directory descriptors here (Windows): nothing to sync
            acknowledge(None)
            return None
        if identity is None:
            identity = directory.identity()
        with self._lock:
            waiting = self._waiting.get(identity)
            if waiting is not None:
                waiting.append(acknowledge)
                return None
            self._waiting[identity] = [acknowledge]
        descriptor = directory.fd
        try:
            if keep is not None:
                release = keep()
            else:
                descriptor = os.dup(descriptor)
                release = functools.partial(os.close, descriptor)
        except BaseException as exc:
            self._give_up(identity, exc)
            raise
        return lambda: self._lead(io, identity, descriptor, release)

    def sync(self, io: type[FileIO] | FileIO, directory: Directory) -> None:
        """Return once a fsync of ``directory`` that began after this call has succeeded."""
        done = threading.Event()
        outcome: list[BaseException | None] = []

        def acknowledge(error: BaseException | None) -> None:
            outcome.append(error)
            done.set()

        lead = self.join(io, directory, acknowledge)
        if lead is not None:
            lead()
        done.wait()
        if outcome[0] is not None:
            raise outcome[0]

    def _lead(
        self,
        io: type[FileIO] | FileIO,
        identity: tuple[int, int],
        descriptor: int,
        release: Callable[[], None],
    ) -> None:
        """Fsync the directory for every write that joined, until none is waiting.

        The descriptor is let go (``release``) before the last batch hears it is durable: a
        caller that counts its descriptors once its write returned finds none of ours left open.
        """
        held = True
        try:
            with self._lock:
                batch, self._waiting[identity] = self._waiting[identity], []
            while batch:
                error: BaseException | None = None
                try:
                    io.fsync(descriptor)
                except BaseException as exc:  # told to every write it was to cover
                    error = exc
                with self._lock:
                    following, self._waiting[identity] = self._waiting[identity], []
                    if not following:
                        del self._waiting[identity]  # the next writer leads
                if not following:
                    held = False
                    release()
                for acknowledge in batch:
                    acknowledge(error)
                if error is not None and not isinstance(error, Exception):
                    if following:  # the directory's entry is still ours: fail who joins it
                        for acknowledge in following:
                            acknowledge(error)
                        self._give_up(identity, error)
                    raise error
                batch = following
        finally:
            if held:
                release()

    def _give_up(self, identity: tuple[int, int], error: BaseException) -> None:
        """Fail the writes still waiting for a leader that cannot go on."""
        with self._lock:
            batch = self._waiting.pop(identity, [])
        for acknowledge in batch:
            acknowledge(error)
