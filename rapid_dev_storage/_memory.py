"""`MemoryBackend`: a dict, for tests and throwaway data. Same semantics as every other backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

from ._backend import ScanItem, StorageBackend
from ._codecs import Codec, resolve_codec
from ._types import Keys
from ._validate import check_store_name

if TYPE_CHECKING:
    from pathlib import Path


class MemoryBackend(StorageBackend):
    """Keeps encoded records in a dict, so values are copied in and out exactly as on disk.

    Nothing persists and nothing is shared between instances. Everything runs inline on the event
    loop: there is no I/O to wait for.
    """

    def __init__(self, codec: str | Codec | None = None) -> None:
        super().__init__(codec)
        self.location = "memory"
        self._groups: dict[str, dict[Keys, bytes]] = {}

    @classmethod
    async def create_backend_instance(
        cls,
        path: Path | str,
        name: str,
        unique_identifier: int | str,
        *,
        serializer: Any = None,
        deserializer: Any = None,
        codec: str | Codec | None = None,
    ) -> MemoryBackend:
        """Return an empty in-memory store; ``path`` is ignored and the name only checked."""
        store_name, identifier = check_store_name(name, unique_identifier)
        backend = cls(resolve_codec(codec, serializer, deserializer))
        backend.location = f"memory:{store_name}:{identifier}"
        return backend

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        records = self._groups.get(group)
        return None if records is None else records.get(keys)

    def _read_at_once(self, group: str, keys: Keys) -> bytes | None:
        # From any thread: a dict lookup is atomic, and the dict is only changed on the loop.
        records = self._groups.get(group)
        return None if records is None else records.get(keys)

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        self._groups.setdefault(group, {})[keys] = data

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        # Atomic: nothing here suspends between the read and the write.
        return await self._swap_in_process(group, keys, expected, new)

    async def _delete(self, group: str, keys: Keys) -> None:
        records = self._groups.get(group)
        if records is not None:
            records.pop(keys, None)
            if not records:
                del self._groups[group]

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        records = self._groups.get(group)
        if records is None:
            return
        width = len(prefix)
        for keys in [keys for keys in records if keys[:width] == prefix]:
            del records[keys]
        if not records:
            del self._groups[group]

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        records = self._groups.get(group, {})
        width = len(prefix)
        # A snapshot of the matching keys lets callers write while iterating; values are read
        # a batch at a time, so a record cleared meanwhile is skipped.
        matching = [keys for keys in records if keys[:width] == prefix]
        for start in range(0, len(matching), 256):
            batch = [(keys, records.get(keys), None) for keys in matching[start : start + 256]]
            yield [(keys, data, source) for keys, data, source in batch if data is not None]

    async def _list_groups(self) -> list[str]:
        return list(self._groups)

    async def _close(self) -> None:
        """Nothing to release: the records go with the object."""

    def __repr__(self) -> str:
        return f"MemoryBackend(codec={self.codec.name!r})"
