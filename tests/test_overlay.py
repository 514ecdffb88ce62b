"""Overlays: the fixture store never changes, whatever a test writes or clears through them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rapid_dev_storage import (
    FileBackend,
    NoValue,
    OverlayBackend,
    ReadOnlyStoreError,
    Storage,
)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for directories)."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


async def test_writes_and_clears_stay_in_the_layer(tmp_path: Path) -> None:
    before = snapshot(FIXTURE)
    layer = tmp_path / "layer"
    async with Storage(await OverlayBackend.over(FIXTURE, layer)) as store:
        users = store.get_group("USER")
        settings = await users["u1001", "settings"].get_value()
        assert settings["theme"] == "dark"  # read through to the fixture
        await users["u1001", "settings"].set_value({**settings, "theme": "light"})
        await users["u9", "name"].set_value("new")
        await users["u1002", "profile"].clear_value()
        await users.clear_prefix("u1003")
        await store.get_group("FEATURE_FLAGS").clear_group()
        await users["u1001", "stats", "logins"].update(lambda n: n + 1)
        assert (await users["u1001", "settings"].get_value())["theme"] == "light"
        assert await users["u1002", "profile"].get_value() is NoValue
        assert [k async for k, _ in users.all_items("u1003")] == []
        assert await store.list_groups() == ["APP", "USER"]
        keys = {k async for k, _ in users}
        assert ("u9", "name") in keys
        assert ("u1002", "profile") not in keys
        assert ("u1002", "settings") in keys
        assert await users["u1001", "stats", "logins"].get_value() == 43
    assert snapshot(FIXTURE) == before  # byte for byte, and no file added or removed
    # The layer keeps its view: reopened, the overlay shows the same data.
    async with Storage(await OverlayBackend.over(FIXTURE, layer)) as store:
        assert await store.get_group("USER")["u1002", "profile"].get_value() is NoValue
        assert await store.get_group("USER")["u9", "name"].get_value() == "new"
    # A fresh layer starts from the fixture again.
    async with Storage(await OverlayBackend.over(FIXTURE, tmp_path / "fresh")) as store:
        assert await store.get_group("USER")["u1002", "profile"].get_value() is not NoValue
        assert await store.list_groups() == ["APP", "FEATURE_FLAGS", "USER"]


async def test_a_read_only_store_refuses_writes_and_leaves_its_directory_alone(
    tmp_path: Path,
) -> None:
    before = snapshot(FIXTURE)
    backend = await FileBackend.create_backend_instance(FIXTURE, "sample app", 1, read_only=True)
    async with Storage(backend) as store:
        handle = store.get_group("USER")["u1001", "settings"]
        assert (await handle.get_value())["theme"] == "dark"
        for write in (
            handle.set_value(1),
            handle.clear_value(),
            handle.update(lambda current: current),
            store.get_group("USER").clear_prefix("u1001"),
            store.get_group("USER").clear_group(),
        ):
            with pytest.raises(ReadOnlyStoreError, match="read-only"):
                await write
    assert snapshot(FIXTURE) == before
    with pytest.raises(Exception, match="not a store"):
        await FileBackend.create_backend_instance(tmp_path, "nothing", 1, read_only=True)


def test_overlays_import_no_other_backend() -> None:
    """An overlay is made of file stores: importing it leaves SQLite and PostgreSQL alone."""
    # The package's __init__ imports every backend, so it is left out: the modules listed are
    # those _overlay itself imports, directly or through others.
    program = (
        "import importlib.util, sys, types\n"
        "spec = importlib.util.find_spec('rapid_dev_storage')\n"
        "package = types.ModuleType('rapid_dev_storage')\n"
        "package.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['rapid_dev_storage'] = package\n"
        "import rapid_dev_storage._overlay\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    imported = result.stdout.split()
    assert "rapid_dev_storage._file" in imported
    assert [
        name
        for name in imported
        if name.startswith(("rapid_dev_storage._sql", "rapid_dev_storage._postgres", "asyncpg"))
        or name in ("rapid_dev_storage._locations", "sqlite3")
    ] == []
