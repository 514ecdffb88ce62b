"""The ``demo`` command: a short tour of a sample store, built from data that ships with us.

The sample data is ``sample_app.jsonl`` inside the package (a small app's users, settings and
feature flags, one ``{"group", "keys", "value"}`` per line), so the demo works from any working
directory once the package is installed. ``fixtures/store`` in the repository is the same data as
a store, made by `build_sample_store` (``tools/make_fixtures.py``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from ._api import Storage
from ._file import FileBackend
from ._file_layout import LOCK_DIRECTORY, MARKER
from ._json_view import from_view
from ._locations import open_location
from ._types import NoValue
from .errors import StoreNotFoundError

SAMPLE_NAME, SAMPLE_IDENTIFIER = "sample app", 1


def sample_records() -> list[tuple[str, tuple[str, ...], Any]]:
    """Return the bundled sample data: ``(group, keys, value)`` per record."""
    text = resources.files(__package__).joinpath("sample_app.jsonl").read_text(encoding="utf-8")
    return [
        (record["group"], tuple(record["keys"]), from_view(record["value"]))
        for record in map(json.loads, text.splitlines())
    ]


async def build_sample_store(root: Path) -> FileBackend:
    """Write the sample store (JSON codec: git shows its records as readable diffs) at ``root``.

    Returns the open backend; the caller closes it (``async with Storage(backend)``).
    """
    records = await asyncio.to_thread(sample_records)
    backend = await FileBackend.create_backend_instance(
        root, SAMPLE_NAME, SAMPLE_IDENTIFIER, codec="json"
    )
    store = Storage(backend)
    for group, keys, value in records:
        await store.get_group(group)[keys].set_value(value)
    return backend


def _show(label: str, value: Any) -> None:
    print(f"  {label:<38} {value!r}")


async def tour(store: Storage) -> None:
    """Read, update, iterate and clear the sample store the way an app would."""
    print("Groups")
    for name in await store.list_groups():
        count = len([keys async for keys, _ in store.get_group(name)])
        print(f"  {name!r}: {count} records")

    users = store.get_group("USER")
    print("\nReading values")
    _show("USER[u1001, settings]", await users["u1001", "settings"].get_value())
    _show("USER[u9999, settings] (absent)", await users["u9999", "settings"].get_value())
    _show("... with a default", await users["u9999", "settings"].get_value(default={}))
    announcement = await store.get_group("APP")["announcement"].get_value()
    _show("APP[announcement] (a stored None)", announcement)

    print("\nAtomic updates: 100 concurrent login counts")
    logins = users["u1001", "stats", "logins"]
    before = await logins.get_value()
    await asyncio.gather(*(logins.update(lambda n: n + 1) for _ in range(100)))
    _show(f"logins: {before} + 100 =", await logins.get_value())

    def roll_out(flag: Any) -> Any:
        return {**flag, "rollout": min(1.0, flag["rollout"] * 2)}

    flags = store.get_group("FEATURE_FLAGS")
    _show("new_editor rollout doubled", await flags["new_editor"].update(roll_out))

    print("\nIterating by key prefix")
    async for keys, value in users.all_items("u1002"):
        _show(f"USER{list(keys)}", value)

    print("\nClearing")
    await users.clear_prefix("u1004")
    _show("records left for u1004", [keys async for keys, _ in users.all_items("u1004")])
    await flags["beta_search"].clear_value()
    _show("beta_search is NoValue", await flags["beta_search"].get_value() is NoValue)


def show_files(backend: FileBackend) -> None:
    """Print the store's files as git and an editor see them, and one record."""
    root = Path(backend.location)
    print(f"\nOn disk, in {root}:")
    for path in sorted(root.rglob("*")):
        if LOCK_DIRECTORY not in path.parts:
            print(f"  {path.relative_to(root)}{'/' if path.is_dir() else ''}")
    settings = Path(backend.record_path("USER", ("u1001", "settings")))
    print(f"\n{settings.relative_to(root)}:\n{settings.read_text(encoding='utf-8')}")


async def demo(fixtures: Path | None) -> None:
    """Tour a fresh sample store, or a copy of the stores in ``fixtures``; show its files.

    The sample is built from the data that ships with the package, so this works from any
    working directory; a scratch directory holds it, removed at the end.
    """
    with tempfile.TemporaryDirectory(prefix="rds-demo-") as scratch:
        copy = Path(scratch) / "store"
        backend: Any
        if fixtures is None:
            backend = await build_sample_store(copy)
            origin = "the sample data that ships with rapid_dev_storage"
        else:
            await asyncio.to_thread(shutil.copytree, fixtures, copy)
            try:
                backend, origin = await open_location(f"file:{copy}"), str(fixtures)
            except StoreNotFoundError as exc:  # named by the copy: say what was given
                raise StoreNotFoundError(
                    f"--fixtures {fixtures} holds no store (give the directory of one: its "
                    f"{MARKER} is there)",
                    location=str(fixtures),
                    stores=exc.stores,
                ) from None
        print(f"Store: {backend!r} (a copy of {origin})\n")
        async with Storage(backend) as store:
            await tour(store)
            if isinstance(backend, FileBackend):
                show_files(backend)
