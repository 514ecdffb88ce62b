"""The work behind the command line's fsck and git-setup, apart from parsing and printing.

Imported only by `rapid_dev_storage.cli` (copy's is in `_cli_copy`).
"""

from __future__ import annotations

from pathlib import Path

from ._api import Storage
from ._fsck import Problem

TEXTCONV_ATTRIBUTE = "*.msgpack diff=rapid-dev-storage"


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


def add_textconv_attribute(top: str) -> None:
    """Have the repository at ``top`` diff msgpack records with our textconv (once)."""
    attributes = Path(top, ".gitattributes")
    existing = attributes.read_text(encoding="utf-8") if attributes.exists() else ""
    if TEXTCONV_ATTRIBUTE not in existing.splitlines():
        separator = "" if not existing or existing.endswith("\n") else "\n"
        attributes.write_text(f"{existing}{separator}{TEXTCONV_ATTRIBUTE}\n", encoding="utf-8")
