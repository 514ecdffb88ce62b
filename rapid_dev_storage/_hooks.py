"""The hooks a backend implements: the one contract beneath `StorageBackend`'s public methods.

A backend only stores and finds bytes, through the required hooks (`REQUIRED_HOOKS`); the
policy above them (names and keys checked, values encoded and checked, update's
compare-and-swap loop, notifications, turns for the event loop) is written once, in
`StorageBackend`, as filelock's ``acquire()`` holds the policy and each platform class only
``_acquire()``. Optional hooks with defaults refine that policy: how a record's bytes carry its
value (`_coding`) and how a backend sees other writers (`_publishing`).

A class that implements some required hooks but not all fails at construction, naming what it
lacks, as an abstract class would. ``abc.abstractmethod`` is not used: type checkers would then
refuse to construct a backend written for the original seven-method contract, which implements
no hook at all and which `Storage` runs through its adapter (`_original`).
"""

from __future__ import annotations

import enum
from typing import Any, AsyncIterator, Callable, ClassVar, Literal, TypeVar

from ._codecs import Codec, MsgpackCodec
from ._turns import TakesTurns
from ._types import Keys
from .errors import (
    CorruptRecordError,
    ReadOnlyStoreError,
    StoreClosedError,
    UnsupportedOperationError,
)

HooksT = TypeVar("HooksT", bound="BackendHooks")
FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])

REQUIRED_HOOKS = (
    "_read",
    "_write",
    "_swap",
    "_delete",
    "_delete_prefix",
    "_scan",
    "_list_groups",
    "_close",
)
"""The hooks every backend implements (the stubs here only say that one is missing)."""


class NotReady(enum.Enum):
    """The type of `NOT_READY`."""

    NOT_READY = "not ready"


NOT_READY = NotReady.NOT_READY
"""What `BackendHooks._read_at_once` returns when only the awaited `_read` can read the record."""

ScanItem = tuple[Keys | None, "bytes | CorruptRecordError", str | None]
"""What ``_scan`` yields: the record's keys (None when only its bytes hold them), its bytes (or
the error that kept them from being read: it goes to ``on_corrupt``), and where it lives (None:
the backend's ``location``)."""

Record = tuple[Keys, Any]
"""A record's keys and value, decoded."""
ScanBatch = tuple[list[Record], list[ScanItem]]
"""What ``_scan_records`` yields: records the backend decoded and proved itself (their value
would pass a write's check, their keys are theirs), and `ScanItem` s left to the policy."""

_STUB = "__rds_required_hook_stub__"  # set on the stubs below, as abc sets __isabstractmethod__


def _required(stub: FunctionT) -> FunctionT:
    """Mark ``stub`` as the placeholder of a required hook: a class still having it lacks it."""
    vars(stub)[_STUB] = True
    return stub


def missing_hooks(backend_class: type[BackendHooks]) -> tuple[str, ...]:
    """Return the required hooks ``backend_class`` does not implement (all: none implemented)."""
    return backend_class._missing_hooks


def implements_no_hook(backend_class: type[BackendHooks]) -> bool:
    """Whether ``backend_class`` implements none of the hooks: the original contract's shape."""
    return len(backend_class._missing_hooks) == len(REQUIRED_HOOKS)


class BackendHooks(TakesTurns):
    """The hooks of the `StorageBackend` contract, and the state every backend has.

    Every hook receives a checked group name and checked keys, and bytes already encoded.
    """

    codec: Codec = MsgpackCodec()
    location: str = "?"
    """Where the records are (a path, a table), for error messages."""
    read_only: bool = False
    """A read-only backend refuses every write with `ReadOnlyStoreError`."""

    _closed: bool = False
    _missing_hooks: ClassVar[tuple[str, ...]] = REQUIRED_HOOKS  # found once per class

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._missing_hooks = tuple(
            hook for hook in REQUIRED_HOOKS if getattr(getattr(cls, hook), _STUB, False)
        )

    def __new__(cls: type[HooksT], *args: Any, **kwargs: Any) -> HooksT:
        """Refuse to construct a backend that implements some hooks but not all.

        Raises:
            UnsupportedOperationError: naming the class, the missing hooks and what to do.

        """
        missing = cls._missing_hooks
        if 0 < len(missing) < len(REQUIRED_HOOKS):
            listed = ", ".join(f"{hook}()" for hook in missing)
            raise UnsupportedOperationError(
                f"{cls.__name__} implements some of StorageBackend's hooks but not {listed}: "
                "implement those too (a backend implements every hook, see StorageBackend), or "
                "none of them and the original contract's seven public methods instead"
            )
        return super().__new__(cls)

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    # --- required hooks ---------------------------------------------------------------------

    @_required
    async def _read(self, group: str, keys: Keys) -> bytes | None:
        """Return the stored bytes, or None."""
        raise self._missing_hook("_read")

    @_required
    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        """Store ``data``, replacing any previous record, atomically."""
        raise self._missing_hook("_write")

    @_required
    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        """If the record's bytes are ``expected`` (None: absent), store ``new`` (None: delete).

        Return whether it did; atomic against every other writer, in any process. A backend
        no other process writes may return `_swap_in_process`.
        """
        raise self._missing_hook("_swap")

    @_required
    async def _delete(self, group: str, keys: Keys) -> None:
        """Remove one record if it exists."""
        raise self._missing_hook("_delete")

    @_required
    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        """Remove every record of ``group`` whose keys start with ``prefix`` (empty: all)."""
        raise self._missing_hook("_delete_prefix")

    @_required
    def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        """Yield batches of `ScanItem`, one per record, never holding them all in memory.

        Batches (a page of rows, a few hundred files) keep the per-record cost of iteration low.

        A backend that yields keys must yield only records matching ``prefix``; one that yields
        None for keys may yield the whole group, and the records are filtered after decoding.
        """
        raise self._missing_hook("_scan")

    @_required
    async def _list_groups(self) -> list[str]:
        """Return the names of non-empty groups."""
        raise self._missing_hook("_list_groups")

    @_required
    async def _close(self) -> None:
        """Release connections, threads and files; called once."""
        raise self._missing_hook("_close")

    def _scan_records(self, group: str, prefix: Keys) -> AsyncIterator[ScanBatch]:
        """Yield batches of records decoded here beside `ScanItem` s for the policy: optional.

        By default every record of ``_scan``, as its bytes. A backend that reads and decodes
        in one pass (FileBackend: its usual records) hands over the records it decoded and
        proved as the policy would (valid keys, a value a write would accept, found where a
        read by those keys finds it), and everything else (large, odd, perhaps mid-save) as
        `ScanItem` s, which the policy decodes, lets settle or reports. Records may be of any
        keys: the policy keeps those under ``prefix``. One step of the policy's generator
        per record is all a decoded one costs there.
        """
        return _items_only(self._scan(group, prefix))

    async def _swap_in_process(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        """Swap by `_read`, `_write` and `_delete`: for backends no other process writes.

        Atomic only as far as nothing writes the record between the read and the write: true
        of a dict, and of any backend under update()'s per-record lock within one process.
        """
        if await self._read(group, keys) != expected:
            return False
        if new is None:
            await self._delete(group, keys)
        else:
            await self._write(group, keys, new)
        return True

    def _read_at_once(self, group: str, keys: Keys) -> bytes | Literal[NotReady.NOT_READY] | None:
        """Return the stored bytes (None: absent) if they can be read without waiting: optional.

        Called on any thread, the event loop's or another (the synchronous API reads in the
        caller's thread, with no hop), so it must be thread-safe and never touch an event loop.
        Return `NOT_READY` (the default) when only ``await _read(...)`` can read the record: a
        large file, a database behind a connection thread.
        """
        return NOT_READY

    # --- state checks -----------------------------------------------------------------------

    def _missing_hook(self, hook: str) -> UnsupportedOperationError:
        name = type(self).__name__
        if implements_no_hook(type(self)):
            return UnsupportedOperationError(
                f"{name} implements none of StorageBackend's hooks ({hook}() among them): a "
                "backend written for the original seven-method contract works through "
                f"Storage({name}(...)), which adapts it; a new backend implements every hook"
            )
        return UnsupportedOperationError(
            f"{name} does not implement {hook}(), which this use of it needs (see StorageBackend)"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{type(self).__name__} at {self.location} is closed")

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{type(self).__name__} at {self.location} is read-only: write through an "
                "overlay (rapid_dev_storage.OverlayBackend) or open it writable"
            )


async def _items_only(batches: AsyncIterator[list[ScanItem]]) -> AsyncIterator[ScanBatch]:
    """`BackendHooks._scan_records` of a backend that only implements ``_scan``."""
    async for batch in batches:
        yield [], batch
