"""The store's own .gitignore (lock files and unfinished writes are not data) is made again.

A person or a tool may remove it alone (the marker stays): the next open that may write makes
it again; one a person edited is kept as it is; a read-only open never writes it.
"""

from __future__ import annotations

from pathlib import Path

from _git_repo import git

from rapid_dev_storage import FileBackend, Storage
from rapid_dev_storage._file_layout import GITIGNORE_TEXT


async def open_store(repository: Path, **options: object) -> Storage:
    backend = await FileBackend.create_backend_instance(
        repository / "data", "app", 1, codec="json", **options
    )
    return Storage(backend)


def untracked(repository: Path) -> list[str]:
    listed = git(repository, "status", "--porcelain", "--untracked-files=all").stdout
    return sorted(line[3:] for line in listed.splitlines())


async def test_a_removed_gitignore_is_made_again_at_the_next_open(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    async with await open_store(tmp_path) as store:
        await store.get_group("G")["k"].set_value(1)
        root = Path(store.backend.location)
    gitignore = root / ".gitignore"
    assert ".locks" not in " ".join(untracked(tmp_path))
    gitignore.unlink()
    assert any("/.locks/" in name for name in untracked(tmp_path))  # what it keeps out

    async with await open_store(tmp_path, read_only=True) as store:
        assert await store.get_group("G")["k"].get_value() == 1
    assert not gitignore.exists()  # a read-only open writes nothing

    async with await open_store(tmp_path) as store:
        await store.get_group("G")["k"].set_value(2)
    assert gitignore.read_text(encoding="utf-8") == GITIGNORE_TEXT
    listed = untracked(tmp_path)
    assert not [name for name in listed if "/.locks/" in name or name.endswith(".tmp")], listed

    edited = GITIGNORE_TEXT + "notes/\n"  # a person's edit is theirs: never written over
    gitignore.write_text(edited, encoding="utf-8")
    async with await open_store(tmp_path) as store:
        await store.get_group("G")["k"].set_value(3)
    assert gitignore.read_text(encoding="utf-8") == edited
