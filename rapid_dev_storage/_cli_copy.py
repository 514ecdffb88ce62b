"""The work behind ``copy`` (read the source, check the destination, write, verify) and ``load``.

Everything that can refuse the copy is checked before the first write, so exit status 2 keeps
its promise (nothing was written): a destination that already holds records (unless ``merge``,
where the source wins and each overwritten record is reported, or ``replace``, which clears it
first) and a value the destination's codec cannot carry. Imported only by the command line; a
progress bar is passed in: anything with ``update(count)``.
"""

from __future__ import annotations

from typing import Any

import click

from ._api import Storage
from ._backend import CorruptHandler
from ._cli_damage import Damage, counted
from ._cli_output import Failed, open_storage
from ._codecs import Codec
from ._json_view import dumps
from ._jsonl import parse_lines
from ._locations import FoundStore, codec_if_created, find_store
from ._types import Keys, NoValue
from ._validate import check_value

Records = dict[str, dict[Keys, Any]]
"""Every record of a store: group -> keys -> value."""

LISTED_GROUPS = 10
"""Groups a refused copy names; the rest are counted."""


class Refused(ValueError):
    """The copy is refused before anything was written (exit status 2)."""


async def copy_store(
    source: str,
    destination: str,
    names: tuple[str | None, str | None],
    damage: Damage,
    *,
    create: bool,
    codec: str | None,
    merge: bool,
    replace: bool,
    bar: Any,
) -> int:
    """Copy the store ``names`` at ``source`` into ``destination``; return how many written.

    The destination store has the source's names; it is created only with ``create``.
    """
    if source.startswith("memory:"):
        found = FoundStore("memory", "1")
    else:
        found = await find_store(source, *names)
    async with await open_storage(source, *names, read_only=True) as origin:
        records = await read_all(origin, damage.on_corrupt)
    names = (found.name, found.identifier)
    new_codec = await codec_if_created(destination, *names, codec) if create else None
    if new_codec is not None:  # checked before the store is made: exit status 2 makes nothing
        check_values(records, new_codec)
    opened = open_storage(destination, *names, create=create, codec=codec, writing=True)
    async with await opened as copy:
        unreadable = Damage(strict=False)
        existing = await read_all(copy, unreadable.on_corrupt)
        check_destination(existing, unreadable.count, merge=merge, replace=replace)
        check_values(records, copy.backend.codec)
        count = await write_all(records, existing, copy, replace=replace, bar=bar)
        await verify(records, copy, merged=merge)
    return count


async def read_all(store: Storage, on_corrupt: CorruptHandler | None) -> Records:
    """Return every record of ``store`` that decodes (the others go to ``on_corrupt``)."""
    records: Records = {}
    for group in await store.list_groups():
        items = store.get_group(group).all_items(on_corrupt=on_corrupt)
        records[group] = {keys: value async for keys, value in items}
    return records


def check_destination(existing: Records, unreadable: int, *, merge: bool, replace: bool) -> None:
    """Refuse a destination that holds records, unless merging into it or replacing it.

    ``unreadable`` counts the destination's records that do not decode (held all the same).

    Raises:
        Refused: it holds records, listed by group with their counts.

    """
    held = {group: len(records) for group, records in existing.items() if records}
    if (held or unreadable) and not (merge or replace):
        shown = [f"{group} ({counted(count)})" for group, count in sorted(held.items())]
        if len(shown) > LISTED_GROUPS:  # thousands of groups: one readable line still
            rest = sum(count for _, count in sorted(held.items())[LISTED_GROUPS:])
            more = len(shown) - LISTED_GROUPS
            shown[LISTED_GROUPS:] = [f"{more} groups more ({counted(rest)})"]
        listed = ", ".join(shown)
        if unreadable:
            listed += f"{', ' if listed else ''}{counted(unreadable)} that do not decode"
        raise Refused(
            f"the destination already holds {listed}; nothing was written: copy into an empty "
            "store, or add --merge (the source wins where both hold a record) or --replace "
            "(the destination is cleared first)"
        )


def check_values(source: Records, codec: Codec) -> None:
    """Raise `InvalidValueError` for the first value the destination's ``codec`` cannot carry."""
    for records in source.values():
        for value in records.values():
            check_value(
                value, allow_bytes=codec.allows_bytes, allow_non_finite=codec.allows_non_finite
            )


async def write_all(
    source: Records, existing: Records, copy: Storage, *, replace: bool, bar: Any
) -> int:
    """Write ``source`` into ``copy`` (cleared first if ``replace``); return how many written.

    A record the destination held with another value is overwritten and reported on stderr; one
    it held with the same value is left alone.
    """
    if replace:
        for group in existing:
            await copy.get_group(group).clear_group()
        existing = {}
    count = 0
    for group, records in source.items():
        held = existing.get(group, {})
        for keys, value in records.items():
            if keys in held:
                if held[keys] == value:
                    continue
                click.echo(f"overwritten: {group} {dumps(list(keys))}", err=True)
            await copy.get_group(group)[keys].set_value(value)
            count += 1
            bar.update(1)
    return count


async def verify(source: Records, copy: Storage, *, merged: bool) -> None:
    """Raise unless ``copy`` holds every record of ``source`` (and, unless ``merged``, no other).

    Raises:
        Failed: they differ (what was written stays written).

    """
    found = await read_all(copy, None)
    for group, records in source.items():
        held = found.get(group, {})
        if merged:
            held = {keys: held.get(keys, NoValue) for keys in records}
        if held != records:
            raise Failed(f"verification failed: group {group!r} differs after copying")
    if not merged and {group for group, records in found.items() if records} != {
        group for group, records in source.items() if records
    }:
        raise Failed("verification failed: the copy's groups differ from the source's")


async def load_lines(
    location: str,
    names: tuple[str | None, str | None],
    numbered: list[tuple[int, str]],
    create: bool,
    codec: str | None,
    bar: Any,
) -> int:
    """Write the JSON Lines ``numbered`` into the store; return how many records.

    Every line is checked before anything is written, against a new store's codec before the
    store is made, so a bad line makes no store either.
    """
    new_codec = await codec_if_created(location, *names, codec) if create else None
    if new_codec is not None:
        parse_lines(numbered, new_codec)
    opened = open_storage(location, *names, create=create, codec=codec, writing=True)
    async with await opened as store:
        records = parse_lines(numbered, store.backend.codec)
        for group_name, keys, value in records:
            await store.get_group(group_name)[keys].set_value(value)
            bar.update(1)
    return len(records)
