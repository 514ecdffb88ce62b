"""What a person makes by hand in a file store: directories under a group's own name (``USER/``),
record files under names of their own (``alice.json``), an editor's leftovers beside them.
Nothing of it is silently ignored, and nothing is lost. Real files, the real command, real vim."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rapid_dev_storage import FileBackend, NoValue, SQLiteBackend, Storage
from rapid_dev_storage._file_layout import hand_made_message

PROMPT = 10.0


async def open_store(path: Path) -> Storage:
    return Storage(await FileBackend.create_backend_instance(path, "app", 1, codec="json"))


def record_bytes(*keys: str, value: Any) -> bytes:
    """A record as a person types it: any layout will do."""
    return json.dumps({"keys": list(keys), "value": value}).encode()


def digest_name(store: Storage, group: str, *keys: str) -> str:
    backend = store.backend
    assert isinstance(backend, FileBackend)
    return os.path.basename(backend.record_path(group, keys))


def fsck(root: Path | str, *arguments: str) -> subprocess.CompletedProcess[str]:
    location = root if isinstance(root, str) else f"file:{root}"
    return subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", "fsck", location, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def problems(checked: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    return [json.loads(line) for line in checked.stdout.splitlines()]


def files_under(root: Path) -> dict[str, bytes]:
    files = (path for path in root.rglob("*") if path.is_file())
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


# --- directories made by hand ----------------------------------------------------------------


async def make_by_hand(tmp_path: Path) -> tuple[Path, dict[str, bytes], dict[str, str]]:
    """A store whose group USER holds u1 and u4, and what a person made beside it.

    Return the store's directory, the files made (by path in it), and where each belongs.
    """
    async with await open_store(tmp_path) as store:
        await store.get_group("USER")["u1"].set_value({"name": "one"})
        await store.get_group("USER")["u4"].set_value({"name": "four"})
        name = functools.partial(digest_name, store)
    root = Path(store.backend.location)
    made = {
        # Under its digest name, a record the group does not hold yet.
        "USER/" + name("USER", "u2"): record_bytes("u2", value={"name": "two"}),
        # Under a name of its own.
        "USER/alice.json": record_bytes("u3", value={"name": "alice"}),
        # The very bytes the group already holds.
        "USER/" + name("USER", "u1"): (root / "^user" / name("USER", "u1")).read_bytes(),
        # The same record, changed by hand: both are kept.
        "USER/bob.json": record_bytes("u4", value={"name": "FOUR, edited"}),
        "Users/anyone.json": record_bytes("x", value=1),
        "my orders/o1.json": record_bytes("o1", value={"total": 3}),
    }
    for path, data in made.items():
        (root / path).parent.mkdir(exist_ok=True)
        (root / path).write_bytes(data)
    belongs = {
        "USER/" + name("USER", "u2"): "^user/" + name("USER", "u2"),
        "USER/alice.json": "^user/" + name("USER", "u3"),
        "USER/" + name("USER", "u1"): "^user/" + name("USER", "u1"),
        "USER/bob.json": "^user/bob.conflict.json",
        "Users/anyone.json": "^u^sers/" + name("Users", "x"),
        "my orders/o1.json": "my%20orders/" + name("my orders", "o1"),
    }
    return root, made, belongs


async def test_hand_made_group_directories_are_reported_and_merged_into_their_groups(
    tmp_path: Path,
) -> None:
    root, made, belongs = await make_by_hand(tmp_path)
    swap = root / "USER" / ".bob.json.swp"  # an editor still has bob.json open: it stays
    swap.write_bytes(b"b0VIM 9.0\0swap")
    # Before repair, reads do not look there: a read stays one open of the digest path.
    async with await open_store(tmp_path) as store:
        assert await store.get_group("USER")["u2"].get_value() is NoValue

    checked = fsck(tmp_path, "--json")
    assert checked.returncode == 1
    found = {Path(problem["path"]).name: problem for problem in problems(checked)}
    assert sorted(found) == ["USER", "Users", "my orders"]
    assert {problem["kind"] for problem in found.values()} == {"hand-made-directory"}
    assert "group 'USER', which lives in ^user" in found["USER"]["detail"]
    assert "group 'Users', which lives in ^u^sers" in found["Users"]["detail"]
    assert "group 'my orders', which lives in my%20orders" in found["my orders"]["detail"]
    assert json.loads(checked.stderr.splitlines()[-1])["problems"] == 3  # the summary

    repaired = fsck(tmp_path, "--repair")
    assert repaired.returncode == 1, repaired.stdout  # the differing copy waits for a person
    summary = repaired.stdout.splitlines()[-1]
    assert summary == "records: 2, groups: 1, problems: 5 (repaired: 3, left: 2)"
    assert "into ^user: 2 moved, 1 already there (removed), 1 kept as .conflict" in repaired.stdout
    async with await open_store(tmp_path) as store:
        users = store.get_group("USER")
        assert await users["u1"].get_value() == {"name": "one"}
        assert await users["u2"].get_value() == {"name": "two"}
        assert await users["u3"].get_value() == {"name": "alice"}
        assert await users["u4"].get_value() == {"name": "four"}  # never overwritten
        assert await store.get_group("Users")["x"].get_value() == 1
        assert await store.get_group("my orders")["o1"].get_value() == {"total": 3}
        assert sorted(await store.list_groups()) == ["USER", "Users", "my orders"]
    after = files_under(root)
    for path, place in belongs.items():  # nothing lost: each file made is somewhere, as it was
        assert after[place] == made[path], path
    assert after["USER/.bob.json.swp"] == b"b0VIM 9.0\0swap"  # the editor's file stays...
    assert sorted(os.listdir(root / "USER")) == [".bob.json.swp"]  # ...and so its directory
    assert not (root / "Users").exists()
    assert not (root / "my orders").exists()


async def test_what_a_repair_leaves_for_a_person_is_reported_until_done(tmp_path: Path) -> None:
    root = (await make_by_hand(tmp_path))[0]
    (root / "USER" / ".bob.json.swp").write_bytes(b"b0VIM 9.0\0swap")
    assert fsck(tmp_path, "--repair").returncode == 1
    again = fsck(tmp_path, "--json")
    assert again.returncode == 1
    left = {problem["kind"]: problem for problem in problems(again)}
    assert sorted(left) == ["conflict", "hand-made-directory"]
    assert left["conflict"]["path"] == str(root / "^user" / "bob.conflict.json")
    assert "differently from its file" in left["conflict"]["detail"]
    assert ".bob.json.swp" in left["hand-made-directory"]["detail"]
    assert fsck(tmp_path, "--repair").returncode == 1  # nothing more it can do
    assert (root / "USER" / ".bob.json.swp").exists()
    (root / "^user" / "bob.conflict.json").unlink()  # the person keeps the store's one
    (root / "USER" / ".bob.json.swp").unlink()  # the editor is closed
    assert fsck(tmp_path, "--repair").returncode == 0  # the empty USER/ goes
    assert not (root / "USER").exists()
    clean = fsck(tmp_path)
    assert clean.returncode == 0, clean.stdout
    assert clean.stdout == "records: 6, groups: 3, problems: 0\n"


async def test_reads_warn_once_of_a_hand_made_directory_and_never_look_in_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await open_store(tmp_path) as store:
        await store.get_group("other")["k"].set_value(1)
    root = Path(store.backend.location)
    (root / "USER").mkdir()
    (root / "USER" / "alice.json").write_bytes(record_bytes("u1", value=1))
    with caplog.at_level(logging.WARNING, logger="rapid_dev_storage"):
        async with await open_store(tmp_path) as store:
            for _ in range(3):
                assert await store.list_groups() == ["other"]
                assert [item async for item in store.get_group("USER").all_items()] == []
            assert await store.get_group("USER")["u1"].get_value() is NoValue
        async with await open_store(tmp_path) as store:
            assert [item async for item in store.get_group("USER").all_items()] == []
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2, warnings  # once per store opened, whoever met it first
    for warning in warnings:
        assert str(root / "USER") in warning
        assert str(root / "^user") in warning
        assert "fsck --repair" in warning


async def test_the_watcher_warns_once_of_a_hand_made_directory_made_while_watching(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await open_store(tmp_path) as store:
        backend = store.backend
        assert isinstance(backend, FileBackend)
        root = Path(backend.location)
        await store.get_group("G")["start"].set_value(0)

        async def write_by_hand_and_see(key: str) -> None:
            """Another writer's record: once it is reported, every earlier event was applied."""
            Path(backend.record_path("G", (key,))).write_bytes(record_bytes(key, value=key))
            change = await asyncio.wait_for(changes.__anext__(), PROMPT)
            assert change.keys == (key,)

        with caplog.at_level(logging.WARNING, logger="rapid_dev_storage"):
            async with store.watch("G") as changes:
                (root / "USER").mkdir()
                (root / "USER" / "alice.json").write_bytes(record_bytes("u1", value=1))
                (root / "my orders").mkdir()
                await write_by_hand_and_see("first")
                # More events for the same directories, and a new group's directory (which
                # has the watcher list the store's directory again).
                (root / "USER" / "bob.json").write_bytes(record_bytes("u2", value=2))
                os.utime(root / "USER")
                os.utime(root / "my orders")
                (root / "fresh").mkdir()
                await write_by_hand_and_see("second")
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2, warnings
    [user] = [warning for warning in warnings if str(root / "USER") in warning]
    assert f"live in {root / '^user'}" in user
    [orders] = [warning for warning in warnings if str(root / "my orders") in warning]
    assert f"live in {root / 'my%20orders'}" in orders


# --- record files named by hand --------------------------------------------------------------


async def test_hand_named_record_files_are_renamed_to_their_digest_names(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.get_group("USER")["same"].set_value("as on disk")
        await store.get_group("USER")["differs"].set_value("the store's")
        group = Path(store.backend.record_path("USER", ("same",))).parent  # type: ignore[attr-defined]
        names = {key: digest_name(store, "USER", key) for key in ("new", "same", "differs")}
    made = {
        "alice.json": record_bytes("new", value={"by": "hand"}),
        "copy of same.json": (group / names["same"]).read_bytes(),
        "same, laid out by hand.json": record_bytes("same", value="as on disk"),
        "edited.json": record_bytes("differs", value="the person's"),
    }
    for name, data in made.items():
        (group / name).write_bytes(data)
    checked = fsck(tmp_path, "--json")
    assert checked.returncode == 1
    details = {Path(problem["path"]).name: problem for problem in problems(checked)}
    assert sorted(details) == sorted(made)
    assert {problem["kind"] for problem in details.values()} == {"misnamed"}
    assert "renames it" in details["alice.json"]["detail"]
    assert "holds the same" in details["copy of same.json"]["detail"]
    assert "holds the same" in details["same, laid out by hand.json"]["detail"]
    assert ".conflict copy" in details["edited.json"]["detail"]

    repaired = fsck(tmp_path, "--repair")
    assert repaired.returncode == 1
    assert f"renamed to {names['new']}" in repaired.stdout
    async with await open_store(tmp_path) as store:
        users = store.get_group("USER")
        assert await users["new"].get_value() == {"by": "hand"}
        assert await users["same"].get_value() == "as on disk"
        assert await users["differs"].get_value() == "the store's"
    assert (group / names["new"]).read_bytes() == made["alice.json"]
    assert (group / "edited.conflict.json").read_bytes() == made["edited.json"]
    assert sorted(os.listdir(group)) == sorted([*names.values(), "edited.conflict.json"])
    [left] = problems(fsck(tmp_path, "--json"))
    assert (left["kind"], Path(left["path"]).name) == ("conflict", "edited.conflict.json")


async def test_a_file_named_by_hand_that_does_not_decode_is_quarantined(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.get_group("G")["k"].set_value(1)
        group = Path(store.backend.record_path("G", ("k",))).parent  # type: ignore[attr-defined]
    (group / "notes.txt").write_text("remember the milk", encoding="utf-8")
    [problem] = problems(fsck(tmp_path, "--json"))
    assert problem["kind"] == "unknown-file"
    assert "does not decode" in problem["detail"]
    assert fsck(tmp_path, "--repair").returncode == 0
    quarantined = Path(store.backend.location) / ".quarantine" / group.name / "notes.txt"
    assert quarantined.read_text(encoding="utf-8") == "remember the milk"


# --- editors' leftovers ----------------------------------------------------------------------

LEFTOVERS = {
    ".DS_Store": b"\0\0\0\1Bud1",
    ".alice.json.swp": b"b0VIM 9.0",
    "alice.json.swp": b"b0VIM 9.0",
    "alice.swx": b"",
    "4913": b"",
    "#alice.json#": b'{"keys": ["k"], "value": 2}',
    ".#alice.json": b"user@host.1234",
}


async def test_fsck_never_reports_or_moves_an_editors_leftovers(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.get_group("G")["k"].set_value(1)
        record = Path(store.backend.record_path("G", ("k",)))  # type: ignore[attr-defined]
    leftovers = {**LEFTOVERS, record.name + "~": record.read_bytes()}  # a backup: a valid record
    for name, data in leftovers.items():
        (record.parent / name).write_bytes(data)
    (record.parent.parent / "notes~").write_bytes(b"")  # in the store's directory too
    before = files_under(record.parent.parent)
    for arguments in ((), ("--repair",)):
        checked = fsck(tmp_path, *arguments)
        assert checked.returncode == 0, checked.stdout
        assert checked.stdout == "records: 1, groups: 1, problems: 0\n"
    assert files_under(record.parent.parent) == before


def start_vim(path: Path) -> subprocess.Popen[bytes]:
    """vim editing ``path`` (in Ex mode, reading its commands from our pipe)."""
    command = ["vim", "-u", "NONE", "-N", "-i", "NONE", "-e", "-s", str(path)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, cwd=path.parent)


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
async def test_a_live_vim_swap_file_stays_where_it_is_through_a_repair(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        await store.get_group("G")["k"].set_value(1)
        record = Path(store.backend.record_path("G", ("k",)))  # type: ignore[attr-defined]
    (record.parent / "broken.json").write_text("<<<<<<< HEAD", encoding="utf-8")
    swap = record.parent / f".{record.name}.swp"
    vim = start_vim(record)
    try:
        deadline = time.monotonic() + PROMPT
        while not swap.exists() or swap.stat().st_size == 0:  # vim's own: no event of ours
            assert time.monotonic() < deadline, "vim made no swap file"
            await asyncio.sleep(0.01)
        repaired = fsck(tmp_path, "--repair")
        assert repaired.returncode == 0, repaired.stdout
        assert "broken.json" in repaired.stdout  # the store's own damage is still repaired
        assert ".swp" not in repaired.stdout
        assert swap.exists()  # where vim keeps it (vim may write it anew: its name is the test)
        quarantine = Path(store.backend.location) / ".quarantine"
        assert [path.name for path in quarantine.rglob("*.swp")] == []
        assert vim.poll() is None
    finally:
        assert vim.stdin is not None
        vim.communicate(b"q!\n", timeout=PROMPT)
    assert not swap.exists()  # vim took its swap file away itself: it was where vim left it


# --- the summary -----------------------------------------------------------------------------


async def test_fsck_ends_with_a_summary_and_json_keeps_stdout_to_problems(tmp_path: Path) -> None:
    async with await open_store(tmp_path) as store:
        for group in ("A", "B"):
            for key in ("x", "y"):
                await store.get_group(group)[key].set_value(key)
        broken = Path(store.backend.record_path("A", ("x",)))  # type: ignore[attr-defined]
    clean = fsck(tmp_path)
    assert (clean.returncode, clean.stdout) == (0, "records: 4, groups: 2, problems: 0\n")
    broken.write_text("{", encoding="utf-8")
    checked = fsck(tmp_path)
    assert checked.returncode == 1
    first, summary = checked.stdout.splitlines()
    assert first.startswith(f"undecodable: {broken}: ")
    assert summary == "records: 3, groups: 2, problems: 1"
    as_json = fsck(tmp_path, "--json")
    assert [problem["kind"] for problem in problems(as_json)] == ["undecodable"]
    assert json.loads(as_json.stderr) == {"groups": 2, "problems": 1, "records": 3, "repaired": 0}
    repaired = fsck(tmp_path, "--repair")
    last = repaired.stdout.splitlines()[-1]
    assert last == "records: 3, groups: 2, problems: 1 (repaired: 1, left: 0)"


async def test_fsck_of_an_sqlite_store_ends_with_its_summary(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    backend = await SQLiteBackend.create_backend_instance(database, "app", 1)
    async with Storage(backend) as store:
        await store.get_group("A")["x"].set_value(1)
        await store.get_group("B")["y"].set_value(2)
        await store.get_group("B")["z"].set_value(3)
    checked = fsck(f"sqlite:{database}")
    assert (checked.returncode, checked.stdout) == (0, "records: 3, groups: 2, problems: 0\n")


def test_get_of_a_record_only_a_hand_made_directory_holds_says_where_it_is(
    tmp_path: Path,
) -> None:
    asyncio.run(_one_record(tmp_path))
    hand_made = tmp_path / "app~1" / "USER"
    hand_made.mkdir()
    (hand_made / "u8.json").write_bytes(record_bytes("u8", value=1))
    command = [sys.executable, "-m", "rapid_dev_storage", "get", f"file:{tmp_path}", "USER", "u8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "no value at USER" in done.stderr
    assert hand_made_message(str(tmp_path / "app~1"), "USER") in done.stderr
    assert f"{hand_made} is not read" in done.stderr
    assert str(tmp_path / "app~1" / "^user") in done.stderr
    assert "fsck --repair" in done.stderr
    fsck(tmp_path, "--repair")
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "1"


async def _one_record(path: Path) -> None:
    async with await open_store(path) as store:
        await store.get_group("OTHER")["x"].set_value(1)
