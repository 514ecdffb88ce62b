"""The merge driver in real git repositories: merge, rebase, cherry-pick, both codecs."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rapid_dev_storage import FileBackend, Storage, _resolve
from rapid_dev_storage._merge import pick
from rapid_dev_storage._resolve import ResolveError, conflicted, describe, resolve_in_editor

DRIVER = (
    f"{shlex.quote(sys.executable)} -c 'import sys; from rapid_dev_storage._merge_driver "
    "import main; sys.exit(main(sys.argv[1:]))' %O %A %B %L %P"
)


def git(repository: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments],
        cwd=repository,
        check=check,
        capture_output=True,
        text=True,
    )


def set_up(repository: Path) -> None:
    git(repository, "init", "-q", "-b", "main")
    git(repository, "config", "merge.rapid-dev-storage.driver", DRIVER)
    (repository / ".gitattributes").write_text(
        "*.json merge=rapid-dev-storage\n*.msgpack merge=rapid-dev-storage\n"
    )


async def write(repository: Path, codec: str, value: Any, message: str) -> Path:
    """Set the one record, commit it, and return its file."""
    backend = await FileBackend.create_backend_instance(repository / "data", "app", 1, codec=codec)
    async with Storage(backend) as store:
        await store.get_group("USER")["u1"].set_value(value)
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", message)
    (record,) = (repository / "data").rglob(f"{'[0-9a-f]' * 32}.{codec}")
    return record


async def read(repository: Path, codec: str) -> Any:
    backend = await FileBackend.create_backend_instance(repository / "data", "app", 1, codec=codec)
    async with Storage(backend) as store:
        return await store.get_group("USER")["u1"].get_value()


async def branches(repository: Path, codec: str, base: Any, ours: Any, theirs: Any) -> Path:
    """Commit ``base`` on main, ``theirs`` on branch "other", ``ours`` on main again."""
    set_up(repository)
    await write(repository, codec, base, "base")
    git(repository, "checkout", "-q", "-b", "other")
    await write(repository, codec, theirs, "theirs")
    git(repository, "checkout", "-q", "main")
    return await write(repository, codec, ours, "ours")


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_adjacent_and_nested_changes_merge_cleanly(tmp_path: Path, codec: str) -> None:
    base = {"a": 1, "b": 1, "c": 1, "nested": {"x": 1, "y": [1]}}
    ours = {"a": 1, "b": 2, "c": 1, "nested": {"x": 2, "y": [1]}}
    theirs = {"a": 1, "b": 1, "c": 3, "nested": {"x": 1, "y": [1, 2]}, "new": True}
    record = await branches(tmp_path, codec, base, ours, theirs)
    merged = git(tmp_path, "merge", "-q", "--no-edit", "other")
    assert merged.returncode == 0, merged.stderr
    expected = {"a": 1, "b": 2, "c": 3, "nested": {"x": 2, "y": [1, 2]}, "new": True}
    assert await read(tmp_path, codec) == expected
    assert git(tmp_path, "status", "--porcelain").stdout == ""
    if codec == "json":  # the canonical bytes, as the store itself writes them
        canonical = json.dumps({"keys": ["u1"], "value": expected}, indent=2, sort_keys=True)
        assert record.read_text() == canonical + "\n"


async def test_a_real_conflict_marks_only_that_entry_until_resolved(tmp_path: Path) -> None:
    record = await branches(
        tmp_path,
        "json",
        {"a": 1, "b": 1, "c": 1},
        {"a": 1, "b": 2, "c": 1},
        {"a": 1, "b": 3, "c": 9},
    )
    merged = git(tmp_path, "merge", "-q", "--no-edit", "other", check=False)
    assert merged.returncode != 0
    assert "conflict in" in merged.stderr
    assert "value['b']" in merged.stderr
    assert git(tmp_path, "status", "--porcelain").stdout.startswith("UU ")
    text = record.read_text()
    assert (
        '    "a": 1,\n<<<<<<< ours\n    "b": 2,\n=======\n    "b": 3,\n>>>>>>> theirs\n    "c": 9\n'
        in text
    )
    record.write_text(
        text.replace('<<<<<<< ours\n    "b": 2,\n=======\n', "").replace(">>>>>>> theirs\n", "")
    )
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "--no-edit")
    assert await read(tmp_path, "json") == {"a": 1, "b": 3, "c": 9}


async def test_a_msgpack_conflict_keeps_ours_for_that_place_and_merges_the_rest(
    tmp_path: Path,
) -> None:
    await branches(
        tmp_path,
        "msgpack",
        {"a": 1, "b": 1, "c": 1},
        {"a": 1, "b": 2, "c": 1},
        {"a": 1, "b": 3, "c": 9},
    )
    merged = git(tmp_path, "merge", "-q", "--no-edit", "other", check=False)
    assert merged.returncode != 0
    assert "rapid-dev-storage resolve" in merged.stderr
    assert git(tmp_path, "status", "--porcelain").stdout.startswith("UU ")
    assert await read(tmp_path, "msgpack") == {"a": 1, "b": 2, "c": 9}


@pytest.mark.parametrize("how", ["rebase", "cherry-pick"])
async def test_rebase_and_cherry_pick_use_the_driver(tmp_path: Path, how: str) -> None:
    await branches(tmp_path, "json", {"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 2})
    if how == "rebase":
        git(tmp_path, "checkout", "-q", "other")
        done = git(tmp_path, "rebase", "-q", "main", check=False)
    else:
        done = git(tmp_path, "cherry-pick", "other", check=False)
    assert done.returncode == 0, done.stderr
    assert await read(tmp_path, "json") == {"a": 2, "b": 2}


async def test_a_side_that_does_not_decode_falls_back_to_git_text_merge(tmp_path: Path) -> None:
    record = await branches(tmp_path, "json", {"a": 1}, {"a": 2}, {"a": 1, "z": 1})
    git(tmp_path, "checkout", "-q", "other")
    record.write_text(record.read_text() + "not json\n")
    git(tmp_path, "commit", "-q", "-am", "broken")
    git(tmp_path, "checkout", "-q", "main")
    merged = git(tmp_path, "merge", "-q", "--no-edit", "other", check=False)
    assert "merged as text" in merged.stderr or "keeping ours" in merged.stderr
    assert "Traceback" not in merged.stderr


@pytest.mark.parametrize("side", ["ours", "theirs"])
async def test_resolve_settles_a_msgpack_conflict_keeping_what_both_agree_on(
    tmp_path: Path, side: str
) -> None:
    record = await branches(
        tmp_path,
        "msgpack",
        {"a": 1, "b": 1, "c": 1},
        {"a": 1, "b": 2, "c": 1},
        {"a": 1, "b": 3, "c": 9},
    )
    git(tmp_path, "merge", "-q", "--no-edit", "other", check=False)
    found = conflicted(record)
    assert [where for where, _ in found.places()] == ["value['b']"]
    shown = describe(found)
    assert "value['b']:" in shown
    assert "ours   2" in shown
    assert "theirs 3" in shown
    _resolve.write(found, pick(found.merged, side))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "--no-edit")
    assert await read(tmp_path, "msgpack") == {"a": 1, "b": 2 if side == "ours" else 3, "c": 9}
    with pytest.raises(ResolveError, match="no unresolved merge"):
        conflicted(record)


async def test_resolve_in_the_editor(tmp_path: Path) -> None:
    record = await branches(tmp_path, "msgpack", {"b": 1}, {"b": 2}, {"b": 3})
    git(tmp_path, "merge", "-q", "--no-edit", "other", check=False)
    script = tmp_path / "editor.py"
    script.write_text(
        "import sys, pathlib\np = pathlib.Path(sys.argv[1])\n"
        "assert '#     theirs 3' in p.read_text(), p.read_text()\n"
        "p.write_text(p.read_text().replace('\"b\": 2', '\"b\": 23'))\n"
    )
    editor = [sys.executable, str(script)]
    found = conflicted(record)
    outcome = await resolve_in_editor(found, editor=editor, interactive=False, say=print, ask=any)
    assert outcome.status == "saved"
    assert await read(tmp_path, "msgpack") == {"b": 23}


async def test_a_watcher_sees_the_merged_record_once(tmp_path: Path) -> None:
    await branches(tmp_path, "json", {"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 2})
    backend = await FileBackend.create_backend_instance(tmp_path / "data", "app", 1, codec="json")
    async with Storage(backend) as store, store.watch("USER") as changes:
        merging = ["merge", "-q", "--no-edit", "other"]
        assert await asyncio.to_thread(lambda: git(tmp_path, *merging).returncode) == 0
        # A later write to another record, by another instance (so it too comes through the
        # file watcher, after git's), marks the end: every change before it has arrived.
        other = await FileBackend.create_backend_instance(tmp_path / "data", "app", 1, codec="json")
        async with Storage(other) as writer:
            await writer.get_group("USER")["end"].set_value(True)
        seen = []
        async for change in changes:
            if change.keys == ("end",):
                break
            seen.append((change.keys, change.value))
    assert seen == [(("u1",), {"a": 2, "b": 2})]
