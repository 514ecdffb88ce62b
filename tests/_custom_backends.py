"""Backends as a user might write them on the hook contract, for the contract's own tests."""

from __future__ import annotations

from typing import Any, AsyncIterator

from rapid_dev_storage import AnyStorable, Keys, MemoryBackend, ScanItem, StorageBackend


class AuditedBackend(MemoryBackend):
    """Overrides the public get_data and write_data and calls super(): it sees every call."""

    def __init__(self, codec: str | None = None) -> None:
        super().__init__(codec)
        self.reads: list[tuple[str, tuple[str, ...]]] = []
        self.writes: list[tuple[str, tuple[str, ...], Any]] = []

    async def get_data(self, group_name: str, *keys: str) -> Any:
        self.reads.append((group_name, keys))
        return await super().get_data(group_name, *keys)

    async def write_data(self, group_name: str, *keys: str, value: AnyStorable) -> None:
        self.writes.append((group_name, keys, value))
        await super().write_data(group_name, *keys, value=value)


class WithoutSwap(StorageBackend):
    """A dict of records with every hook but _swap (the conformance suite once passed such one)."""

    def __init__(self, codec: str | None = None) -> None:
        super().__init__(codec)
        self.records: dict[tuple[str, Keys], bytes] = {}

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        return self.records.get((group, keys))

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        self.records[group, keys] = data

    async def _delete(self, group: str, keys: Keys) -> None:
        self.records.pop((group, keys), None)

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        for record in self._under(group, prefix):
            del self.records[record]

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        yield [(keys, self.records[group, keys], None) for _, keys in self._under(group, prefix)]

    async def _list_groups(self) -> list[str]:
        return list({group for group, _ in self.records})

    async def _close(self) -> None:
        pass

    def _under(self, group: str, prefix: Keys) -> list[tuple[str, Keys]]:
        width = len(prefix)
        return [(g, keys) for g, keys in self.records if g == group and keys[:width] == prefix]


class WithSwap(WithoutSwap):
    """The same dict with _swap too: every hook, a complete backend."""

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        return await self._swap_in_process(group, keys, expected, new)
