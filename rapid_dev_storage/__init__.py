"""rapid_dev_storage: an async key-value store for apps that want to keep data without a schema.

``Storage(backend).get_group("USER")[user_id, "settings"]`` is a handle to one value;
``await handle.set_value(v)``, ``await handle.get_value()``, ``await handle.update(fn)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._api import Storage, StorageGroup, StorageValue, StoredValue
from ._backend import StorageBackend
from ._codecs import CallableCodec, Codec, JSONCodec, MsgpackCodec
from ._hooks import ScanItem
from ._types import AnyStorable, Keys, NoValue
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

if TYPE_CHECKING:
    from ._changes import Change
    from ._file import FileBackend
    from ._memory import MemoryBackend
    from ._open_storage import open_storage
    from ._overlay import OverlayBackend
    from ._postgres import PostgresBackend
    from ._sqlite import SQLiteBackend
    from ._watch import Subscription, Watch

__version__ = "0.1.0"

_LAZY = {
    "Change": "._changes",
    "FileBackend": "._file",
    "MemoryBackend": "._memory",
    "OverlayBackend": "._overlay",
    "PostgresBackend": "._postgres",
    "SQLiteBackend": "._sqlite",
    "Subscription": "._watch",
    "Watch": "._watch",
    "open_storage": "._open_storage",
}
"""Names imported at their first use, not with the package: each backend brings its own
dependencies (threads, file watching, sqlite3, PostgreSQL's modules), and a program that uses
one should not wait for the others; watching (`_watch`) loads with the first watch.
``import rapid_dev_storage`` costs little more than ``import asyncio, msgpack``
(tools/bench_startup.py measures it)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    """Return the public names, loaded or not, and the public submodules imported so far.

    Not this module's own imports (``Any``, ``importlib``...) nor the private modules.
    """
    own = {"Any", "TYPE_CHECKING", "annotations", "importlib"}
    return sorted(
        name
        for name in {*globals(), *_LAZY}
        if name not in own and (not name.startswith("_") or name.startswith("__"))
    )


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
