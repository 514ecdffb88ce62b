"""The work behind ``ls`` and ``dump``: reading whole groups, past records that do not decode.

Imported only by the command line; output goes through `_cli_output.emit` (and ``click.echo``
for dump's ready-made lines); a bad record goes to the `Damage` passed in.
"""

from __future__ import annotations

from typing import Any

import click

from ._api import Storage
from ._cli_damage import Damage
from ._cli_output import emit, open_storage
from ._jsonl import encode_line
from ._locations import found_stores


async def list_location(
    location: str, group: str | None, name: str | None, identifier: str | None, damage: Damage
) -> None:
    """Print the stores at ``location`` (several, none named), its groups, or ``group``'s keys."""
    stores = await found_stores(location)
    if group is None and name is None and identifier is None and len(stores) > 1:
        for found in stores:
            line = {"name": found.name, "id": found.identifier}
            emit(line if found.directory is None else {**line, "directory": found.directory})
        return
    async with await open_storage(location, name, identifier, read_only=True) as store:
        if group is None:
            for group_name in await store.list_groups():
                items = store.get_group(group_name).all_items(on_corrupt=damage.on_corrupt)
                emit({"group": group_name, "records": sum([1 async for _ in items])})
            return
        items = store.get_group(group).all_items(on_corrupt=damage.on_corrupt)
        for keys in sorted([keys async for keys, _ in items]):
            emit(list(keys))


async def dump_groups(store: Storage, group: str | None, damage: Damage, bar: Any) -> None:
    """Print the store's records (or ``group``'s) as JSON Lines, sorted by group and keys."""
    for group_name in [group] if group is not None else await store.list_groups():
        items = store.get_group(group_name).all_items(on_corrupt=damage.on_corrupt)
        for keys, value in sorted([item async for item in items], key=lambda item: item[0]):
            click.echo(encode_line(group_name, keys, value), nl=False)
            bar.update(1)
