"""The exceptions rapid_dev_storage raises.

Every error is a `StorageError`, and each also subclasses the builtin it resembles, so code that
already catches `ValueError`, `TypeError` or `TimeoutError` keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CorruptRecordError",
    "IncompatibleStoreError",
    "InvalidKeyError",
    "InvalidNameError",
    "InvalidValueError",
    "LocationError",
    "LockTimeoutError",
    "ReadOnlyStoreError",
    "ReentrantUpdateError",
    "StorageError",
    "StorageIOError",
    "StoreClosedError",
    "StoreNotFoundError",
    "UnsupportedOperationError",
]


class StorageError(Exception):
    """Root of every error this library raises on purpose."""


class InvalidKeyError(StorageError, ValueError):
    """A key tuple is not 1 to 5 `str` keys.

    Attributes: ``group`` (may be None when not known yet) and ``keys`` (what was given).
    """

    def __init__(self, message: str, *, group: str | None = None, keys: Any = None) -> None:
        super().__init__(message)
        self.group = group
        self.keys = keys


class InvalidNameError(StorageError, ValueError):
    """A group name or a store name (name, unique identifier) cannot be used.

    Attribute: ``name``, the rejected name.
    """

    def __init__(self, message: str, *, name: Any = None) -> None:
        super().__init__(message)
        self.name = name


class InvalidValueError(StorageError, TypeError, ValueError):
    """A value cannot be stored by this store's codec; nothing was written.

    Subclasses both `TypeError` (a set, a datetime, an object) and `ValueError` (an int out of
    range, a NaN for JSON), because which one a caller expects depends on what was wrong.
    Attributes: ``group``, ``keys`` and ``path``, where in the value the problem is
    (``value['a'][2]``).
    """

    def __init__(
        self,
        message: str,
        *,
        group: str | None = None,
        keys: tuple[str, ...] | None = None,
        path: str = "value",
    ) -> None:
        super().__init__(message)
        self.group = group
        self.keys = keys
        self.path = path


class CorruptRecordError(StorageError, ValueError):
    """A stored record does not decode; every other record stays readable.

    Attributes: ``group``, ``keys`` and ``location`` (a file path or a table name) where known.
    """

    def __init__(
        self,
        message: str,
        *,
        group: str | None = None,
        keys: tuple[str, ...] | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(message)
        self.group = group
        self.keys = keys
        self.location = location


class IncompatibleStoreError(StorageError, ValueError):
    """A store exists but was written with another codec, or a newer format than we read.

    Also raised for a store whose marker or stored settings are malformed. Attributes:
    ``location`` (the marker file, or the database and store) and ``field`` (the marker field
    found wrong, else None), where known.
    """

    def __init__(
        self, message: str, *, location: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.location = location
        self.field = field


class LockTimeoutError(StorageError, TimeoutError):
    """Another process held the store's lock for longer than the configured timeout.

    Attributes: ``location`` (the lock file, database or table) and ``timeout`` (seconds), where
    known.
    """

    def __init__(
        self, message: str, *, location: str | None = None, timeout: float | None = None
    ) -> None:
        super().__init__(message)
        self.location = location
        self.timeout = timeout

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ReentrantUpdateError(StorageError, RuntimeError):
    """An update function wrote (or updated) its own record: the write would be lost.

    Attributes: ``group`` and ``keys`` of the record.
    """

    def __init__(
        self, message: str, *, group: str | None = None, keys: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(message)
        self.group = group
        self.keys = keys


class LocationError(StorageError, ValueError):
    """A store location (``file:DIR``, ``sqlite:FILE``, a DSN) that does not parse or fit.

    Also when it does not say which store it means. Attribute: ``location``, as given.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(message)
        self.location = location


class StoreNotFoundError(LocationError, LookupError):
    """A location holds no store of the names given (tools never create one unasked).

    Attributes: ``location``, and ``stores``: the ``(name, unique_identifier)`` it does hold.
    """

    def __init__(self, message: str, *, location: str | None = None, stores: Any = ()) -> None:
        super().__init__(message, location=location)
        self.stores = list(stores)


class StorageIOError(StorageError, OSError):
    """The backend's file or database failed underneath us (disk full, I/O error, broken file).

    Attributes (where known): ``errno`` (the system's error number) and ``filename``.
    """

    def __str__(self) -> str:
        # The message as written (it names the path), not OSError's "[Errno n] ..." rebuilt from
        # the errno and filename attributes set on it.
        return str(self.args[0]) if self.args else ""


class ReadOnlyStoreError(StorageError, PermissionError):
    """The store was opened read-only (a fixture under an overlay) and something tried to write."""


class StoreClosedError(StorageError, RuntimeError):
    """The store was used after `close()`."""


class UnsupportedOperationError(StorageError, NotImplementedError):
    """The backend does not implement this operation.

    Typically a backend written for the original seven-method contract, which had no way to list
    groups.
    """
