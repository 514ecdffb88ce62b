"""rapid_dev_storage for synchronous code: the same API, without ``await``.

``store = rapid_dev_storage.sync.open_storage("file:data", "my app", 1)``, then
``store.get_group("USER")["42", "settings"].get_value()``. Works in plain scripts, from any
number of threads sharing one store, inside a thread running an event loop (Jupyter), and in
forked workers. Each store runs its backend on a thread and event loop of its own; reading a
small record needs neither (see docs/sync.md).
"""

from __future__ import annotations

from typing import Any

from ._open_storage import open_backend
from ._sync_api import Storage, StorageGroup, StorageValue
from ._sync_watch import Subscription, SyncCallback, Watch

__all__ = [
    "Storage",
    "StorageGroup",
    "StorageValue",
    "Subscription",
    "SyncCallback",
    "Watch",
    "open_storage",
]


def open_storage(
    url: str | None = None,
    name: str | None = None,
    unique_identifier: int | str | None = None,
    **options: Any,
) -> Storage:
    """Open (creating if needed) the store ``(name, unique_identifier)`` at ``url``.

    The arguments are `rapid_dev_storage.open_storage`'s: ``file:DIR``, ``sqlite:FILE``,
    ``memory:`` or ``postgresql://...``, with options as keyword arguments or in the URL's
    query; no URL: ``RAPID_DEV_STORAGE_URL``, else ``file:data``. Close the store with
    ``close()`` or a ``with`` block.

    Raises:
        LocationError: an unknown scheme, no path, or a bad option.
        InvalidNameError: no or unusable store names.
        UnsupportedOperationError: a ``postgresql://`` URL without asyncpg installed.

    """
    return Storage._open(lambda: open_backend(url, name, unique_identifier, options))
