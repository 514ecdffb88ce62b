"""rapid_dev_storage: an async key-value store for apps that want to keep data without a schema.

``Storage(backend).get_group("USER")[user_id, "settings"]`` is a handle to one value;
``await handle.set_value(v)``, ``await handle.get_value()``, ``await handle.update(fn)``.
"""

from ._api import Storage, StorageGroup, StorageValue, StoredValue
from ._backend import StorageBackend
from ._codecs import CallableCodec, Codec, JSONCodec, MsgpackCodec
from ._file import FileBackend
from ._hooks import ScanItem
from ._memory import MemoryBackend
from ._open_storage import open_storage
from ._overlay import OverlayBackend
from ._postgres import PostgresBackend
from ._sqlite import SQLiteBackend
from ._types import AnyStorable, Keys, NoValue
from ._watch import Change, Subscription, Watch
from .errors import (
    CorruptRecordError,
    IncompatibleStoreError,
    InvalidKeyError,
    InvalidNameError,
    InvalidValueError,
    LocationError,
    LockTimeoutError,
    ReadOnlyStoreError,
    ReentrantUpdateError,
    StorageError,
    StorageIOError,
    StoreClosedError,
    StoreNotFoundError,
    UnsupportedOperationError,
)

__version__ = "0.1.0"

__all__ = [
    "AnyStorable",
    "CallableCodec",
    "Change",
    "Codec",
    "CorruptRecordError",
    "FileBackend",
    "IncompatibleStoreError",
    "InvalidKeyError",
    "InvalidNameError",
    "InvalidValueError",
    "JSONCodec",
    "Keys",
    "LocationError",
    "LockTimeoutError",
    "MemoryBackend",
    "MsgpackCodec",
    "NoValue",
    "OverlayBackend",
    "PostgresBackend",
    "ReadOnlyStoreError",
    "ReentrantUpdateError",
    "SQLiteBackend",
    "ScanItem",
    "Storage",
    "StorageBackend",
    "StorageError",
    "StorageGroup",
    "StorageIOError",
    "StorageValue",
    "StoreClosedError",
    "StoreNotFoundError",
    "StoredValue",
    "Subscription",
    "UnsupportedOperationError",
    "Watch",
    "__version__",
    "open_storage",
]
