"""The work behind ``rm``: one record, every record under a prefix, or a whole group, counted."""

from __future__ import annotations

from ._api import StorageGroup
from ._types import Keys, NoValue
from .errors import CorruptRecordError


async def remove_records(records: StorageGroup, keys: Keys, prefix: bool, whole_group: bool) -> int:
    """Remove the record ``keys`` of ``records`` (or those under it, or all); return how many."""
    if not (prefix or whole_group):
        try:
            present = await records[keys].get_value() is not NoValue
        except CorruptRecordError:
            present = True  # a record that does not decode is still there to remove
        if present:
            await records[keys].clear_value()
        return int(present)
    unreadable: list[CorruptRecordError] = []
    found = [keys async for keys, _ in records.all_items(*keys, on_corrupt=unreadable.append)]
    if whole_group:
        await records.clear_group()
        return len(found) + len(unreadable)  # a group's undecodable records go with it
    await records.clear_prefix(*keys)
    return len(found)
