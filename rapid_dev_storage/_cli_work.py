"""The work behind the command line's copy and fsck, apart from parsing and printing.

Imported only by `rapid_dev_storage.cli`. A progress bar is passed in: anything with
``update(count)``.
"""

from __future__ import annotations

from typing import Any

from ._api import Storage
from ._fsck import Problem
from .errors import StorageError


async def copy_records(origin: Storage, copy: Storage, bar: Any) -> int:
    """Copy every record of ``origin`` into ``copy``; return how many."""
    count = 0
    for group_name in await origin.list_groups():
        async for keys, value in origin.get_group(group_name):
            await copy.get_group(group_name)[keys].set_value(value)
            count += 1
            bar.update(1)
    return count


async def verify(origin: Storage, copy: Storage) -> None:
    """Raise unless both stores hold the same groups, keys and values."""
    groups = await origin.list_groups()
    if await copy.list_groups() != groups:
        raise StorageError("verification failed: the copy's groups differ from the source's")
    for group_name in groups:
        expected = {keys: value async for keys, value in origin.get_group(group_name)}
        found = {keys: value async for keys, value in copy.get_group(group_name)}
        if expected != found:
            raise StorageError(f"verification failed: group {group_name!r} differs after copying")


async def undecodable_records(store: Storage) -> list[Problem]:
    """Return a problem for each record of the store that does not decode (any backend)."""
    problems: list[Problem] = []
    for group_name in await store.list_groups():
        async for _ in store.get_group(group_name).all_items(
            on_corrupt=lambda error: problems.append(
                Problem("undecodable", str(error.location), str(error))
            )
        ):
            pass
    return problems
