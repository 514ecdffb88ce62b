"""The merge driver in real git repositories set up by git-setup: merge, rebase, cherry-pick,
stash pop, both codecs; reads of a conflicted record; the resolve command."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import sys
from pathlib import Path

import pytest
from _git_repo import branches, git, open_store, read, set_up, tool, write

from rapid_dev_storage import CorruptRecordError, FileBackend, NoValue, Storage

pytestmark = pytest.mark.usefixtures("private_tmpdir")

CONFLICT = "unresolved merge conflict in {}: edit it, then `git add`"


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
    message = CONFLICT.format(record)
    with pytest.raises(CorruptRecordError) as raised:
        await read(tmp_path, "json")
    assert str(raised.value) == message
    assert raised.value.location == str(record)
    async with await open_store(tmp_path, "json") as store:
        problems: list[CorruptRecordError] = []
        assert [
            item async for item in store.get_group("USER").all_items(on_corrupt=problems.append)
        ] == []
    assert [str(problem) for problem in problems] == [message]
    # fsck names it as a merge in progress, and --repair leaves it where the person works on it.
    before = record.read_bytes()
    for repair in ((), ("--repair",)):
        checked = tool(tmp_path, "fsck", "file:data", *repair)
        assert checked.returncode == 1
        assert f"merge-conflict: {record}: unresolved merge conflict" in checked.stdout
        assert "rapid-dev-storage resolve" in checked.stdout
    assert record.read_bytes() == before
    # Resolved by editing: keep theirs, drop the markers.
    record.write_text(
        text.replace('<<<<<<< ours\n    "b": 2,\n=======\n', "").replace(">>>>>>> theirs\n", "")
    )
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "--no-edit")
    assert await read(tmp_path, "json") == {"a": 1, "b": 3, "c": 9}
    assert git(tmp_path, "status", "--porcelain").stdout == ""
    assert tool(tmp_path, "fsck", "file:data").returncode == 0


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


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize("how", ["rebase", "cherry-pick"])
async def test_rebase_and_cherry_pick_use_the_driver(tmp_path: Path, how: str, codec: str) -> None:
    await branches(tmp_path, codec, {"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 2})
    if how == "rebase":
        git(tmp_path, "checkout", "-q", "other")
        done = git(tmp_path, "rebase", "-q", "main", check=False)
    else:
        done = git(tmp_path, "cherry-pick", "other", check=False)
    assert done.returncode == 0, done.stderr
    assert await read(tmp_path, codec) == {"a": 2, "b": 2}


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_stash_pop_uses_the_driver(tmp_path: Path, codec: str) -> None:
    await set_up(tmp_path, codec)
    await write(tmp_path, codec, {"a": 1, "b": 1}, "base")
    await write(tmp_path, codec, {"a": 1, "b": 2}, "work in progress")
    git(tmp_path, "reset", "-q", "--soft", "HEAD~1")
    git(tmp_path, "stash", "-q")
    await write(tmp_path, codec, {"a": 2, "b": 1}, "meanwhile")
    popped = git(tmp_path, "stash", "pop", check=False)
    assert popped.returncode == 0, popped.stderr
    assert await read(tmp_path, codec) == {"a": 2, "b": 2}


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_delete_against_modify_is_gits_own_conflict(tmp_path: Path, codec: str) -> None:
    await set_up(tmp_path, codec)
    record = await write(tmp_path, codec, {"a": 1}, "base")
    git(tmp_path, "checkout", "-q", "-b", "other")
    async with await open_store(tmp_path, codec) as store:
        await store.get_group("USER")["u1"].clear_value()
    git(tmp_path, "commit", "-q", "-am", "removed")
    git(tmp_path, "checkout", "-q", "main")
    await write(tmp_path, codec, {"a": 2}, "changed")
    merged = git(tmp_path, "merge", "--no-edit", "other", check=False)
    assert merged.returncode != 0
    assert "CONFLICT (modify/delete)" in merged.stdout
    assert git(tmp_path, "status", "--porcelain").stdout.startswith("UD ")
    assert await read(tmp_path, codec) == {"a": 2}  # the modified side stays, readable
    git(tmp_path, "rm", "-q", str(record))  # take the removal
    git(tmp_path, "commit", "-q", "--no-edit")
    assert await read(tmp_path, codec) is NoValue


async def test_a_side_that_does_not_decode_falls_back_to_git_text_merge(tmp_path: Path) -> None:
    record = await branches(tmp_path, "json", {"a": 1}, {"a": 2}, {"a": 1, "z": 1})
    git(tmp_path, "checkout", "-q", "other")
    record.write_text(record.read_text() + "not json\n")
    git(tmp_path, "commit", "-q", "-am", "broken")
    git(tmp_path, "checkout", "-q", "main")
    merged = git(tmp_path, "merge", "-q", "--no-edit", "other", check=False)
    assert "merged as text" in merged.stderr or "keeping ours" in merged.stderr
    assert "Traceback" not in merged.stderr


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize("side", ["ours", "theirs"])
async def test_resolve_settles_a_conflict_keeping_what_both_agree_on(
    tmp_path: Path, side: str, codec: str
) -> None:
    record = await branches(
        tmp_path,
        codec,
        {"a": 1, "b": 1, "c": 1},
        {"a": 1, "b": 2, "c": 1},
        {"a": 1, "b": 3, "c": 9},
    )
    git(tmp_path, "merge", "-q", "--no-edit", "other", check=False)
    shown = tool(tmp_path, "resolve", str(record))
    assert shown.returncode == 0, shown.stderr
    assert "value['b']:" in shown.stdout
    assert "ours   2" in shown.stdout
    assert "theirs 3" in shown.stdout
    done = tool(tmp_path, "resolve", str(record), f"--{side}")
    assert done.returncode == 0, done.stderr
    assert "git add" in done.stderr
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "--no-edit")
    assert await read(tmp_path, codec) == {"a": 1, "b": 2 if side == "ours" else 3, "c": 9}
    assert git(tmp_path, "status", "--porcelain").stdout == ""
    assert tool(tmp_path, "fsck", "file:data").returncode == 0
    again = tool(tmp_path, "resolve", str(record), "--theirs")
    assert again.returncode == 1
    assert "nothing to resolve" in again.stderr


def test_resolve_refuses_a_file_that_is_not_a_record(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    done = tool(tmp_path, "resolve", "notes.txt", "--ours")
    assert done.returncode == 2
    assert "not a record file" in done.stderr


async def test_resolve_in_the_editor(tmp_path: Path) -> None:
    record = await branches(tmp_path, "msgpack", {"b": 1}, {"b": 2}, {"b": 3})
    git(tmp_path, "merge", "-q", "--no-edit", "other", check=False)
    script = tmp_path / "editor.py"
    script.write_text(
        "import sys, pathlib\np = pathlib.Path(sys.argv[1])\n"
        "assert '#     theirs 3' in p.read_text(), p.read_text()\n"
        "p.write_text(p.read_text().replace('\"b\": 2', '\"b\": 23'))\n"
    )
    environment = {**os.environ, "EDITOR": shlex.join([sys.executable, str(script)])}
    environment.pop("VISUAL", None)
    done = tool(tmp_path, "resolve", str(record), "--edit", env=environment)
    assert done.returncode == 0, done.stderr
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


async def test_a_watcher_names_a_conflicted_record_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = await branches(tmp_path, "json", {"b": 1}, {"b": 2}, {"b": 3})
    backend = await FileBackend.create_backend_instance(tmp_path / "data", "app", 1, codec="json")
    async with Storage(backend) as store, store.watch("USER") as changes:
        merging = ["merge", "-q", "--no-edit", "other"]
        with caplog.at_level(logging.WARNING):
            assert await asyncio.to_thread(lambda: git(tmp_path, *merging, check=False).returncode)
            other = await open_store(tmp_path, "json")
            async with other as writer:
                await writer.get_group("USER")["end"].set_value(True)
            seen = []
            async for change in changes:
                if change.keys == ("end",):
                    break
                seen.append(change)
    assert seen == []
    warned = [
        entry.getMessage() for entry in caplog.records if "merge conflict" in entry.getMessage()
    ]
    assert warned == [CONFLICT.format(record)]
