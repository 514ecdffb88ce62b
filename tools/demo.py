"""A short tour of rapid_dev_storage on the bundled fixtures: the README's main-job command.

Loads ``fixtures/sample_app.jsonl`` (a small app's users, settings and feature flags) into a
store, then reads, updates, iterates and clears it the way an app would.

    python tools/demo.py [--backend file|sqlite|memory] [--codec json|msgpack] [--at PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from rapid_dev_storage import (
    FileBackend,
    MemoryBackend,
    NoValue,
    SQLiteBackend,
    Storage,
    StorageBackend,
)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "sample_app.jsonl"


async def open_backend(kind: str, codec: str, location: Path) -> StorageBackend:
    if kind == "memory":
        return MemoryBackend(codec)
    if kind == "sqlite":
        return await SQLiteBackend.create_backend_instance(location, "demo", 1, codec=codec)
    return await FileBackend.create_backend_instance(location, "demo", 1, codec=codec)


def show_files(backend: StorageBackend) -> None:
    """Print the store's files, as git and an editor see them."""
    if not isinstance(backend, FileBackend):
        return
    root = Path(backend.location)
    print(f"\nOn disk, in {root}:")
    for path in sorted(root.rglob("*")):
        if ".locks" not in path.parts:
            print(f"  {path.relative_to(root)}{'/' if path.is_dir() else ''}")
    settings = Path(backend.record_path("USER", ("u1001", "settings")))
    print(f"\n{settings.relative_to(root)}:\n{settings.read_text(encoding='utf-8')}")


def read_fixture(fixture: Path) -> list[dict[str, Any]]:
    """Return the records of a JSON Lines fixture: one {"group", "keys", "value"} per line."""
    return [json.loads(line) for line in fixture.read_text(encoding="utf-8").splitlines()]


async def load_fixture(store: Storage, records: list[dict[str, Any]]) -> int:
    for record in records:
        await store.get_group(record["group"])[tuple(record["keys"])].set_value(record["value"])
    return len(records)


def show(label: str, value: Any) -> None:
    print(f"  {label:<38} {value!r}")


async def tour(store: Storage, fixture: Path) -> None:
    count = await load_fixture(store, read_fixture(fixture))
    print(f"Loaded {count} records from {fixture.name}")
    for name in await store.list_groups():
        count = len([keys async for keys, _ in store.get_group(name)])
        print(f"  group {name!r}: {count} records")

    users = store.get_group("USER")
    print("\nReading values")
    show("USER[u1001, settings]", await users["u1001", "settings"].get_value())
    show("USER[u9999, settings] (absent)", await users["u9999", "settings"].get_value())
    show("... with a default", await users["u9999", "settings"].get_value(default={}))
    show(
        "APP[announcement] (a stored None)",
        await store.get_group("APP")["announcement"].get_value(),
    )

    print("\nAtomic updates: 100 concurrent login counts")
    logins = users["u1001", "stats", "logins"]
    before = await logins.get_value()
    await asyncio.gather(*(logins.update(lambda n: n + 1) for _ in range(100)))
    show(f"logins: {before} + 100 =", await logins.get_value())

    def roll_out(flag: Any) -> Any:
        return {**flag, "rollout": min(1.0, flag["rollout"] * 2)}

    flags = store.get_group("FEATURE_FLAGS")
    show("new_editor rollout doubled", await flags["new_editor"].update(roll_out))

    print("\nIterating by key prefix")
    async for keys, value in users.all_items("u1002"):
        show(f"USER{list(keys)}", value)

    print("\nClearing")
    await users.clear_prefix("u1004")
    show("records left for u1004", [keys async for keys, _ in users.all_items("u1004")])
    await flags["beta_search"].clear_value()
    show("beta_search is NoValue", await flags["beta_search"].get_value() is NoValue)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["file", "sqlite", "memory"], default="file")
    parser.add_argument("--codec", choices=["json", "msgpack"], default="json")
    parser.add_argument(
        "--at", type=Path, help="directory (file) or database file (sqlite); default: a temp one"
    )
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rds-demo-") as scratch:
        default = Path(scratch) / ("demo.sqlite3" if arguments.backend == "sqlite" else "data")
        backend = await open_backend(arguments.backend, arguments.codec, arguments.at or default)
        print(f"Store: {backend!r}\n")
        async with Storage(backend) as store:
            await tour(store, arguments.fixture)
            show_files(backend)


if __name__ == "__main__":
    asyncio.run(main())
