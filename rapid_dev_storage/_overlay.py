"""`OverlayBackend`: a read-only fixture store seen through a writable layer.

Reads fall through the layer to the fixture; writes go to the layer; clears of records the
fixture holds are kept as tombstones in the layer. The fixture's files never change, so a test
can write and clear freely and the next test starts from the same data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

from ._backend import ScanItem, StorageBackend, ignore_corrupt
from ._file import FileBackend
from ._file_open import stores_in
from ._store_choice import only_store
from ._threads import on_own_thread
from ._types import Keys
from .errors import CorruptRecordError, IncompatibleStoreError


class OverlayBackend(StorageBackend):
    """The fixture ``base`` (read-only), seen through the writable ``layer``.

    ``tombstones`` records the fixture's records cleared in the layer. Both ``base`` and
    ``layer`` must be the same kind of backend with the same codec (their records are read
    as one). Updates are atomic within the process; an overlay belongs to one test.
    """

    def __init__(
        self, base: StorageBackend, layer: StorageBackend, tombstones: StorageBackend
    ) -> None:
        if type(base) is not type(layer) or base.codec.name != layer.codec.name:
            raise IncompatibleStoreError(
                f"an overlay needs a layer like its base: {type(base).__name__} "
                f"({base.codec.name}) under {type(layer).__name__} ({layer.codec.name})"
            )
        super().__init__(layer.codec)
        self.location = f"{layer.location} over {base.location}"
        self._base = base
        self._layer = layer
        self._tombstones = tombstones

    @classmethod
    async def over(
        cls,
        fixture: Path | str,
        layer: Path | str,
        name: str | None = None,
        unique_identifier: str | None = None,
    ) -> OverlayBackend:
        """Open the file store in directory ``fixture`` read-only, under a layer in ``layer``.

        The store is the only one in ``fixture``, or the one named.

        Raises:
            LocationError: ``fixture`` holds no such store, or several (name the one meant).

        """
        store_name, identifier = name, unique_identifier
        if store_name is None or identifier is None:
            found = await on_own_thread(stores_in, str(fixture))
            store_name, identifier = only_store(
                str(fixture), found, name, identifier, options=("name=", "unique_identifier=")
            )
        base = await FileBackend.create_backend_instance(
            fixture, store_name, identifier, read_only=True
        )
        top = await FileBackend.create_backend_instance(
            layer, store_name, identifier, codec=base.codec, durability="fast"
        )
        tombstones = await FileBackend.create_backend_instance(
            layer, f"{store_name} tombstones", identifier, durability="fast"
        )
        return cls(base, top, tombstones)

    # --- hooks ------------------------------------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        data = await self._layer._read(group, keys)
        if data is not None:
            return data
        if await self._tombstones._read(group, keys) is not None:
            return None
        return await self._base._read(group, keys)

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        await self._layer._write(group, keys, data)
        await self._tombstones._delete(group, keys)

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        # The layer's own compare-and-swap, not a read then a write: a set_value of the record
        # racing this update is ordered with the layer's swap (it lands before the compare, which
        # then fails, or after), so the update never writes a value built on one it replaced.
        in_layer = await self._layer._read(group, keys)
        if in_layer is None:
            if await self._read(group, keys) != expected:
                return False  # the fixture's record (or none) is no longer what fn saw
        elif in_layer != expected:
            return False
        if not await self._layer._swap(group, keys, in_layer, new):
            return False
        if new is None:
            if await self._base._read(group, keys) is not None:
                await self._tombstones.write_data(group, *keys, value=True)
        else:
            await self._tombstones._delete(group, keys)
        return True

    async def _delete(self, group: str, keys: Keys) -> None:
        await self._layer._delete(group, keys)
        if await self._base._read(group, keys) is not None:
            await self._tombstones.write_data(group, *keys, value=True)

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        await self._layer._delete_prefix(group, prefix)
        async for keys, _ in self._base.get_all_by_key_prefix(
            group, *prefix, on_corrupt=ignore_corrupt
        ):
            await self._tombstones.write_data(group, *keys, value=True)

    async def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        seen: set[Keys] = set()
        width = len(prefix)
        for backend in (self._layer, self._base):
            async for batch in backend._scan(group, prefix):
                items: list[ScanItem] = []
                for known, data, source in batch:
                    try:
                        if isinstance(data, CorruptRecordError):
                            raise data
                        keys = known or backend._decode(group, None, data, source)[0]
                    except CorruptRecordError:
                        items.append((known, data, source))  # the caller reports it
                        continue
                    if keys in seen or keys[:width] != prefix:
                        continue
                    if backend is self._base and await self._tombstones._read(group, keys):
                        continue
                    seen.add(keys)
                    items.append((keys, data, source))
                yield items

    async def _list_groups(self) -> list[str]:
        groups = set(await self._layer.list_groups())
        for group in await self._base.list_groups():
            if group not in groups:
                async for _ in self.get_all_by_group(group, on_corrupt=ignore_corrupt):
                    groups.add(group)
                    break
        return list(groups)

    async def _close(self) -> None:
        for backend in (self._layer, self._tombstones, self._base):
            await backend.close()

    # --- records: the layer's format, which the base shares ---------------------------------

    def _encode_record(self, keys: Keys, value: Any) -> bytes:
        return self._layer._encode_record(keys, value)

    def _record_form(self, keys: Keys, value: Any) -> Any:
        return self._layer._record_form(keys, value)

    def _value_of_form(self, form: Any) -> Any:
        return self._layer._value_of_form(form)

    def _decode_record(
        self, group: str, keys: Keys | None, data: bytes, source: str | None
    ) -> tuple[Keys, Any]:
        return self._layer._decode_record(group, keys, data, source)

    def __repr__(self) -> str:
        return f"OverlayBackend({self._layer!r} over {self._base!r})"
