"""FileBackend's errors: the system's and the lock's turned into ours, naming the record's file."""

from __future__ import annotations

import os

from ._file_io import UnsafeEntryError
from ._types import Keys
from .errors import CorruptRecordError, StorageError, StorageIOError


class os_errors:  # a lower-case name: used as a function, ``with os_errors(path):``
    """Turn OS and lock errors into ours, naming the file and keeping the original as the cause.

    ``location`` is the record (or directory) the operation is about: the system's own file
    name may be a bare temp file name. With ``reading`` (group, keys), something that is not a
    regular file where the record should be is a `CorruptRecordError`, as a bad record is.
    A class, not a ``contextlib.contextmanager``: every inline read enters one, and a
    generator-based one cost 1.5 us of a 20 us first read.
    """

    __slots__ = ("_location", "_reading")

    def __init__(self, location: str, *, reading: tuple[str, Keys] | None = None) -> None:
        self._location = location
        self._reading = reading

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: object
    ) -> None:
        if exc is None or not isinstance(exc, OSError) or isinstance(exc, StorageError):
            return  # ours already (LockTimeoutError is an OSError too, through TimeoutError)
        location, reading = self._location, self._reading
        if isinstance(exc, UnsafeEntryError):
            where = exc.filename or location
            if reading is not None and exc.expected == "regular file":
                raise CorruptRecordError(
                    f"{where} {exc.strerror}", group=reading[0], keys=reading[1], location=where
                ) from exc
            raise _io_error(where, exc) from exc
        named = (
            exc.filename if isinstance(exc.filename, str) and os.path.isabs(exc.filename) else None
        )
        raise _io_error(named or location, exc) from exc


def _io_error(path: str, exc: OSError) -> StorageIOError:
    error = StorageIOError(f"{path}: {exc.strerror or exc}")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, path
    return error


def unreadable(group: str, path: str, exc: OSError) -> CorruptRecordError:
    """Return the error a scan reports for a record file it cannot read (permissions, FIFO)."""
    error = CorruptRecordError(
        f"{path} cannot be read as a record: {exc.strerror or exc}", group=group, location=path
    )
    error.__cause__ = exc
    return error
