"""FileBackend's writes: a record replaced, swapped or removed, and clears, on a writer thread.

Every write is a new temp file in the group's directory, written, fsynced, renamed over the
record under the record's lock stripe and followed by an fsync of the directory (at
``durability="full"``), so a reader or a crash only ever sees a whole record, and sets and
updates of one record are linearizable across processes. These run on threads (`_file_jobs`);
the system calls are `_file_io`'s, the locks `_file_locks`'.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import time

from ._codecs import Codec
from ._file_commit import GroupCommit, Later
from ._file_io import (
    Directory,
    FileIO,
    UnsafeEntryError,
    group_directory,
    read_in,
    remove_file,
    remove_if_empty,
)
from ._file_layout import decode_record, is_record_name, record_file_name, stripe_of
from ._file_locks import Abandon, Retry, StripeLocks
from ._file_open import Bookkeeping
from ._file_temps import TempFile
from ._file_write_dirs import WriteDirectories
from ._record_keys import HEAD, leading_keys
from ._types import Keys

_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class RecordWrites:
    """The writes of one store's record files (``codec``'s), under its lock ``stripes``.

    ``io`` is passed to each write: the system calls it makes (a test makes one fail).
    """

    def __init__(
        self, codec: Codec, *, durable: bool, stripes: StripeLocks, bookkeeping: Bookkeeping
    ) -> None:
        self._codec = codec
        self._durable = durable
        self._stripes = stripes
        self._bookkeeping = bookkeeping
        self._commit = GroupCommit()
        self._directories = WriteDirectories()

    def close(self) -> None:
        """Close the group directories held between writes (no write runs any more)."""
        self._directories.close()

    def _try_again(self, error: OSError, attempt: int) -> bool:
        """Whether a write that failed with ``error`` before its rename is to be made again.

        The group directory (another process's clear, `git clean`, `rm -rf`) or our temp file
        (`git clean -x`) was removed under us: nothing landed, so write again, into a directory
        made again. Or we ran out of descriptors: the group directories and lock files held
        between writes that no write uses now are closed first, and the write made again (if
        all are in use, a little later).
        """
        if attempt >= 100:
            return False
        if isinstance(error, FileNotFoundError):
            return True
        if error.errno not in _OUT_OF_DESCRIPTORS:
            return False
        if self._directories.release_idle() | self._stripes.release_idle():
            return True
        # Every one held is in use: the writes in flight (and their directory fsyncs) give
        # theirs back as they finish. Wait for them, up to about two seconds in all.
        time.sleep(min(0.001 * attempt, 0.02))
        return True

    def replace(
        self,
        io: type[FileIO] | FileIO,
        path: str,
        expected: tuple[bytes | None] | None,
        new: bytes | None,
        job: Retry,
        later: Later,
    ) -> bool:
        """Write ``new`` (None: delete) over the record file ``path``, if it holds ``expected``.

        Return False if ``expected`` was given and the record held something else. Once ``job``
        is set (its caller was cancelled), the write gives up if it has not renamed yet (raising
        `Abandoned`). While another process holds the record's lock stripe it raises
        `StripeBusy`, having changed nothing, to be tried again with the same ``job``.
        At ``durability="full"`` a write that renamed or removed a file returns at once and is
        acknowledged through ``later`` by the directory fsync that covers it (`GroupCommit`).

        The temp file is written and fsynced before the lock is taken, so the lock is held only
        for the compare and the rename: sets and updates of one record, in any process, take
        effect in one order (the order of their renames under the lock).
        """
        directory_path, name = os.path.split(path)
        for attempt in itertools.count(1):
            try:
                held = self._directories.take(
                    io,
                    directory_path,
                    create=new is not None,
                    durable=self._durable,
                    make_parent=self._bookkeeping.recreate,
                )
            except OSError as exc:
                if self._try_again(exc, attempt):
                    continue
                raise
            if held is None:  # no group directory: the record is absent
                return expected is None or expected[0] is None
            try:
                directory = held.directory
                try:
                    landed, removed = self._replace_in(io, directory, name, expected, new, job)
                except OSError as exc:  # before the rename: nothing landed
                    if self._try_again(exc, attempt):
                        continue
                    raise
                if not landed:
                    return False
                if self._durable and (new is not None or removed):
                    lead = self._commit.join(
                        io,
                        directory,
                        later.defer(),
                        held.identity,
                        functools.partial(self._directories.keep, held),
                    )
                    if lead is not None:
                        later.after_landing(lead)
            finally:
                self._directories.give_back(held)
            if removed:
                remove_if_empty(directory_path)
            return True
        raise AssertionError("unreachable")  # for mypy: the loop returns or raises

    def _replace_in(
        self,
        io: type[FileIO] | FileIO,
        directory: Directory,
        name: str,
        expected: tuple[bytes | None] | None,
        new: bytes | None,
        job: Retry,
    ) -> tuple[bool, bool]:
        """`replace` in an open group directory: return (landed, a file was removed)."""
        if new is not None and self._bookkeeping.marker_missing():
            self._bookkeeping.recreate()  # removed by a checkout, a clean, a person
        stripe = stripe_of(os.path.basename(directory.path), name)
        if job.lock_deadline is not None:
            # Tried again after finding the stripe held elsewhere: no temp file is written
            # (and fsynced) again until the stripe is free.
            with self._stripes.hold(stripe, job, job):
                pass
        temp = None if new is None else TempFile(io, directory, new, self._durable)
        try:
            with self._stripes.hold(stripe, job, job):
                if expected is not None and read_in(directory, name) != expected[0]:
                    return False, False
                if temp is None:
                    return True, remove_file(directory, name)
                temp.commit(name)
                temp = None
                return True, False
        finally:
            if temp is not None:
                temp.discard()

    def delete_matching(
        self, io: type[FileIO] | FileIO, directory_path: str, prefix: Keys, abandon: Abandon
    ) -> None:
        """Remove the group's records whose keys start with ``prefix``, a lock stripe at a time.

        Only record files (by their exact name) are removed: a person's notes beside them stay.
        A link or FIFO under a record's name is removed as a name (its target is never
        touched); a directory under one is left alone.
        """
        with group_directory(io, directory_path, create=False, durable=self._durable) as directory:
            if directory is None:
                return
            by_stripe: dict[int, list[str]] = {}
            for name in directory.names():
                if not is_record_name(name, self._codec.extension):
                    continue
                if prefix:
                    keys = self._keys_in(directory, name)
                    if keys is None or keys[: len(prefix)] != prefix:
                        continue
                stripe = stripe_of(os.path.basename(directory_path), name)
                by_stripe.setdefault(stripe, []).append(name)
            removed = False
            for stripe, names in by_stripe.items():
                with self._stripes.hold(stripe, abandon):
                    for name in names:
                        with contextlib.suppress(UnsafeEntryError):  # a directory: left alone
                            removed = remove_file(directory, name) or removed
            if removed and self._durable:
                self._commit.sync(io, directory)
        if removed:
            remove_if_empty(directory_path)

    def _keys_in(self, directory: Directory, name: str) -> Keys | None:
        """Return the keys of record file ``name``, or None if it is no record's own file.

        Read from the start of the file when the record is laid out as the library writes it
        (a large record is neither read nor decoded whole); otherwise decoded whole.
        """
        extension = self._codec.extension
        try:
            head = read_in(directory, name, limit=HEAD)
            keys = None if head is None else leading_keys(extension, head)
            if keys is not None and record_file_name(keys, extension) == name:
                return keys
            data = head if head is None or len(head) < HEAD else read_in(directory, name)
            if data is None:
                return None
            keys = decode_record(self._codec, data)[0]
        except Exception:  # unreadable or undecodable: it is no record's file
            return None
        return keys if record_file_name(keys, extension) == name else None
