"""The command line never makes a store unasked, and finds the stores a person points it at."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rapid_dev_storage import open_storage
from rapid_dev_storage._fsck import check_store
from rapid_dev_storage.cli import main

CREATE = ("--create", "--name", "my app", "--id", "1")


def run(*arguments: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(arguments), input=stdin, catch_exceptions=False)


def tree(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` with a digest of its content (or "dir")."""
    return {
        str(path.relative_to(root)): (
            "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        )
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A directory holding one store, "my app" id 1, with one record."""
    made = run("set", f"file:{tmp_path / 'data'}", "USER", "u1", "--value", '{"a": 1}', *CREATE)
    assert made.exit_code == 0, made.output
    return tmp_path / "data"


READ_ONLY_COMMANDS = [
    ("ls",),
    ("ls", "USER"),
    ("get", "USER", "u1"),
    ("dump",),
    ("fsck",),
    ("path", "USER", "u1"),
    ("rm", "USER", "u1"),
    ("rm", "USER", "--group"),
    ("watch",),
    ("set", "USER", "u1", "--value", "2"),  # writes, but only into a store that exists
    ("load", "-"),
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_wrong_name_creates_nothing_and_lists_the_stores_there_are(
    data: Path, command: tuple[str, ...]
) -> None:
    before = tree(data.parent)
    verb, *rest = command
    for wrong in (("--name", "my ap"), ("--id", "2"), ("--name", "x", "--id", "1")):
        result = run(verb, f"file:{data}", *rest, *wrong, stdin="")
        assert result.exit_code == 1, result.output
        assert "no store" in result.stderr
        assert "it holds: --name 'my app' --id '1'" in result.stderr
        assert tree(data.parent) == before  # byte-identical: nothing made, nothing touched


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_missing_directory_or_sqlite_file_is_not_created(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    verb, *rest = command
    for location in (f"file:{tmp_path / 'nowhere'}", f"sqlite:{tmp_path / 'nowhere.db'}"):
        result = run(verb, location, *rest, "--name", "x", "--id", "1", stdin="")
        assert result.exit_code == 1, result.output
        assert "does not exist" in result.stderr
        assert "say which with --name" not in result.stderr  # the advice that created a store
    assert list(tmp_path.iterdir()) == []


def test_an_empty_directory_says_it_holds_no_stores(tmp_path: Path) -> None:
    result = run("ls", f"file:{tmp_path}")
    assert result.exit_code == 1
    assert f"no store at file:{tmp_path}: it holds no stores" in result.stderr


def test_a_typo_in_set_creates_nothing_and_names_the_stores(data: Path) -> None:
    before = tree(data.parent)
    typo = run("set", f"file:{data}", "USER", "u2", "--value", "1", "--name", "my ap")
    assert typo.exit_code == 1
    assert "no store --name 'my ap'" in typo.stderr
    assert "--name 'my app' --id '1'" in typo.stderr
    assert "nothing was written" in typo.stderr
    assert "--create" in typo.stderr  # says how to make one, if that was meant
    assert tree(data.parent) == before
    # Every plain command still works: no phantom second store.
    assert json.loads(run("get", f"file:{data}", "USER", "u1").stdout) == {"a": 1}


def test_create_needs_both_names(tmp_path: Path) -> None:
    result = run("set", f"file:{tmp_path}", "G", "k", "--value", "1", "--create", "--name", "a")
    assert result.exit_code == 2  # a usage error: nothing can be created
    assert "--create makes a new store, named by both --name and --id" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_stores_made_from_the_command_line_are_json_unless_asked(tmp_path: Path) -> None:
    location = f"file:{tmp_path}"
    assert run("set", location, "G", "k", "--value", "1", *CREATE).exit_code == 0
    assert len(list((tmp_path / "my%20app~1" / "^g").glob("*.json"))) == 1
    msgpack = ("--create", "--name", "b", "--id", "1", "--codec", "msgpack")
    assert run("set", location, "G", "k", "--value", "1", *msgpack).exit_code == 0
    assert len(list((tmp_path / "b~1" / "^g").glob("*.msgpack"))) == 1
    for command in ("set", "load", "copy"):
        help_text = " ".join(run(command, "--help").stdout.split())
        assert "default json: people read and diff its files" in help_text


def test_a_stores_own_directory_and_a_copy_beside_it_are_addressable(data: Path) -> None:
    own = data / "my%20app~1"
    assert json.loads(run("ls", f"file:{own}").stdout) == {"group": "USER", "records": 1}
    backup = data / "backup"
    shutil.copytree(own, backup)
    # Two stores of the same names: the directory that holds them cannot say which.
    both = run("get", f"file:{data}", "USER", "u1")
    assert both.exit_code == 2
    assert f"a copy is addressed by its own directory (file:{backup})" in both.stderr
    # Each is reached by its own directory, and a write goes only there.
    assert run("set", f"file:{backup}", "USER", "u1", "--value", '"restored"').exit_code == 0
    assert json.loads(run("get", f"file:{backup}", "USER", "u1").stdout) == "restored"
    assert json.loads(run("get", f"file:{own}", "USER", "u1").stdout) == {"a": 1}
    listed = [json.loads(line) for line in run("ls", f"file:{data}").stdout.splitlines()]
    assert [store["directory"] for store in listed] == [str(backup), str(own)]
    # A new store is not made inside a store's own directory.
    nested = run(
        "set", f"file:{own}", "G", "k", "--value", "1", "--create", "--name", "x", "--id", "2"
    )
    assert nested.exit_code == 2
    assert "is a store's own directory" in nested.stderr


def test_a_refused_load_or_copy_with_create_makes_no_store(tmp_path: Path) -> None:
    bytes_line = json.dumps({"group": "G", "keys": ["k"], "value": {"$bytes": "AAE="}})
    target = f"sqlite:{tmp_path / 'new.db'}"
    refused = run("load", target, "-", *CREATE, stdin=bytes_line)  # json cannot carry bytes
    assert refused.exit_code == 2
    assert "nothing was written" in refused.stderr
    assert list(tmp_path.iterdir()) == []
    source = f"file:{tmp_path / 'm'}"
    assert run("load", source, "-", *CREATE, "--codec", "msgpack", stdin=bytes_line).exit_code == 0
    copied = run("copy", source, f"file:{tmp_path / 'json'}", "--create")
    assert copied.exit_code == 2
    assert "bytes" in copied.stderr
    assert not (tmp_path / "json").exists()


@pytest.mark.parametrize("scheme", ["file", "sqlite"])
async def test_check_store_chooses_the_check_of_its_backend_and_counts_each_record(
    tmp_path: Path, scheme: str
) -> None:
    async with await open_storage(f"{scheme}:{tmp_path / 'store'}", "app", 1) as store:
        for index in range(3):
            await store.get_group("USER")[f"u{index}"].set_value(index)
        counted: list[None] = []
        report = await check_store(store, repair=False, on_file=lambda: counted.append(None))
    assert report.problems == []
    # A file store counts files (the marker's directory holds only records here); SQLite, records.
    assert len(counted) == 3
    if scheme == "sqlite":
        assert (report.records, report.groups) == (3, 1)
