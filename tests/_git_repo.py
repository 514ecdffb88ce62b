"""Real git repositories for the merge tests: one record on two branches, set up by git-setup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from rapid_dev_storage import FileBackend, Storage


def git(repository: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments],
        cwd=repository,
        check=check,
        capture_output=True,
        text=True,
    )


def tool(
    directory: Path, *arguments: str, env: dict[str, str] | None = None, stdin: Any = None
) -> subprocess.CompletedProcess[str]:
    """Run ``rapid-dev-storage ARGUMENTS`` in ``directory``."""
    return subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", *arguments],
        cwd=directory,
        check=False,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
    )


async def open_store(repository: Path, codec: str) -> Storage:
    backend = await FileBackend.create_backend_instance(repository / "data", "app", 1, codec=codec)
    return Storage(backend)


async def set_up(repository: Path, codec: str) -> None:
    """A repository holding an empty store, set up by ``git-setup`` as a person would."""
    git(repository, "init", "-q", "-b", "main")
    async with await open_store(repository, codec):
        pass
    done = tool(repository, "git-setup")
    assert done.returncode == 0, done.stderr


async def write(repository: Path, codec: str, value: Any, message: str) -> Path:
    """Set the one record, commit it, and return its file."""
    async with await open_store(repository, codec) as store:
        await store.get_group("USER")["u1"].set_value(value)
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", message)
    return record_file(repository, codec)


def record_file(repository: Path, codec: str) -> Path:
    (record,) = (repository / "data").rglob(f"{'[0-9a-f]' * 32}.{codec}")
    return record


async def read(repository: Path, codec: str) -> Any:
    async with await open_store(repository, codec) as store:
        return await store.get_group("USER")["u1"].get_value()


async def branches(repository: Path, codec: str, base: Any, ours: Any, theirs: Any) -> Path:
    """Commit ``base`` on main, ``theirs`` on branch "other", ``ours`` on main again."""
    await set_up(repository, codec)
    await write(repository, codec, base, "base")
    git(repository, "checkout", "-q", "-b", "other")
    await write(repository, codec, theirs, "theirs")
    git(repository, "checkout", "-q", "main")
    return await write(repository, codec, ours, "ours")
