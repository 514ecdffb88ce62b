"""A backend written the way third parties wrote them for the original seven-method contract."""

from __future__ import annotations

from typing import Any, AsyncIterator

import msgpack

from rapid_dev_storage import NoValue, StorageBackend

Keys = tuple[str, ...]


class OriginalStyleBackend(StorageBackend):
    """Shaped like a third-party backend for the original API: its own dict, own serializer."""

    def __init__(self) -> None:  # never calls StorageBackend.__init__, like the original's
        self.rows: dict[tuple[str, Keys], bytes] = {}

    @classmethod
    async def create_backend_instance(  # type: ignore[override]
        cls,
        path: Any,
        name: str,
        unique_identifier: int,
        *,
        serializer: Any = None,
        deserializer: Any = None,
    ) -> OriginalStyleBackend:
        return cls()

    async def write_data(self, group_name: str, *keys: str, value: Any) -> None:
        self.rows[group_name, keys] = msgpack.packb(value)

    async def get_data(self, group_name: str, *keys: str) -> Any:
        data = self.rows.get((group_name, keys))
        return NoValue if data is None else msgpack.unpackb(data)

    async def clear_by_keys(self, group_name: str, *keys: str) -> None:
        self.rows.pop((group_name, keys), None)

    async def clear_group(self, group_name: str) -> None:
        for row in [row for row in self.rows if row[0] == group_name]:
            del self.rows[row]

    async def clear_by_key_prefix(self, group_name: str, *keys: str) -> None:
        for row in [r for r in self.rows if r[0] == group_name and r[1][: len(keys)] == keys]:
            del self.rows[row]

    async def get_all_by_group(self, group_name: str) -> AsyncIterator[tuple[Keys, Any]]:
        for (group, keys), data in list(self.rows.items()):
            if group == group_name:
                yield keys, msgpack.unpackb(data)

    async def get_all_by_key_prefix(
        self, group_name: str, *keys: str
    ) -> AsyncIterator[tuple[Keys, Any]]:
        async for found, value in self.get_all_by_group(group_name):
            if found[: len(keys)] == keys:
                yield found, value
