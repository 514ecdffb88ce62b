"""The command line on records: bad ones survived, copies checked, removals counted, bytes shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rapid_dev_storage.cli import main

CONFLICT = (
    '<<<<<<< HEAD\n{"keys": ["u2"], "value": 1}\n=======\n{"keys": ["u2"], "value": 2}\n>>>>>>> b\n'
)
LINES = [
    {"group": "APP", "keys": ["motd"], "value": "hi"},
    {"group": "USER", "keys": ["u1", "profile"], "value": {"name": "Ada"}},
    {"group": "USER", "keys": ["u1", "settings"], "value": {"theme": "dark"}},
    {"group": "USER", "keys": ["u3", "profile"], "value": {"name": "Grace"}},
]


def run(*arguments: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(arguments), input=stdin, catch_exceptions=False)


def load(location: str, records: list[dict[str, object]], *options: str) -> None:
    text = "".join(json.dumps(record) + "\n" for record in records)
    loaded = run(
        "load", location, "-", "--create", "--name", "app", "--id", "1", *options, stdin=text
    )
    assert loaded.exit_code == 0, loaded.output


@pytest.fixture
def store(tmp_path: Path) -> str:
    location = f"file:{tmp_path / 'data'}"
    load(location, LINES)
    return location


@pytest.fixture
def conflicted(store: str, tmp_path: Path) -> Path:
    """The store with one USER record left as git leaves a conflicted merge."""
    path = Path(run("path", store, "USER", "u2").stdout.strip())
    path.write_text(CONFLICT, encoding="utf-8")
    return path


def test_group_commands_report_a_conflicted_record_and_carry_on(
    store: str, conflicted: Path, tmp_path: Path
) -> None:
    said = f"unresolved merge conflict in {conflicted}: edit it, then `git add`"
    for command in (("ls",), ("ls", "USER"), ("dump",), ("dump", "USER")):
        result = run(command[0], store, *command[1:])
        assert result.exit_code == 1, result.output
        assert said in result.stderr
        assert "1 record could not be read" in result.stderr
    assert {"group": "USER", "records": 3} in map(json.loads, run("ls", store).stdout.splitlines())
    assert len(run("ls", store, "USER").stdout.splitlines()) == 3  # every good record listed
    assert len(run("dump", store).stdout.splitlines()) == 4
    copy = run("copy", store, f"sqlite:{tmp_path / 'c.db'}", "--create")
    assert copy.exit_code == 1
    assert said in copy.stderr
    assert "copied and verified 4 records" in copy.stderr
    assert len(run("dump", f"sqlite:{tmp_path / 'c.db'}").stdout.splitlines()) == 4


def test_strict_stops_at_the_first_bad_record(store: str, conflicted: Path, tmp_path: Path) -> None:
    for command in (("ls",), ("ls", "USER"), ("dump",)):
        result = run(command[0], store, *command[1:], "--strict")
        assert result.exit_code == 1
        assert "unresolved merge conflict" in result.stderr
        assert "could not be read" not in result.stderr
    strict_copy = run("copy", store, f"sqlite:{tmp_path / 'c.db'}", "--create", "--strict")
    assert strict_copy.exit_code == 1
    assert not (tmp_path / "c.db").exists()  # stopped while reading: nothing was written


def test_get_of_a_corrupt_record_exits_1_naming_the_file(store: str, tmp_path: Path) -> None:
    path = Path(run("path", store, "USER", "u1", "profile").stdout.strip())
    path.write_text("{", encoding="utf-8")
    result = run("get", store, "USER", "u1", "profile")
    assert result.exit_code == 1
    assert str(path) in result.stderr
    path.write_text(CONFLICT, encoding="utf-8")
    assert "unresolved merge conflict in" in run("get", store, "USER", "u1", "profile").stderr


def test_copy_refuses_a_destination_holding_records_unless_merge_or_replace(
    store: str, tmp_path: Path
) -> None:
    destination = f"file:{tmp_path / 'other'}"
    load(
        destination,
        [
            {"group": "USER", "keys": ["u1", "profile"], "value": {"name": "Old"}},
            {"group": "X", "keys": ["only"], "value": 0},
        ],
    )
    before = run("dump", destination).stdout
    refused = run("copy", store, destination)
    assert refused.exit_code == 2
    assert "already holds USER (1 record), X (1 record); nothing was written" in refused.stderr
    assert run("dump", destination).stdout == before
    load(destination, [{"group": f"G{n:02}", "keys": ["k"], "value": n} for n in range(20)])
    many = run("copy", store, destination).stderr
    assert "already holds G00 (1 record), G01 (1 record)," in many
    assert "G09 (1 record), 12 groups more (12 records); nothing was written" in many
    before = run("dump", destination).stdout
    assert run("copy", store, destination, "--merge", "--replace").exit_code == 2
    merged = run("copy", store, destination, "--merge")
    assert merged.exit_code == 0, merged.output
    assert 'overwritten: USER ["u1", "profile"]' in merged.stderr
    assert json.loads(run("get", destination, "USER", "u1", "profile").stdout) == {"name": "Ada"}
    assert json.loads(run("get", destination, "X", "only").stdout) == 0  # kept by a merge
    replaced = run("copy", store, destination, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert run("dump", destination).stdout == run("dump", store).stdout
    missing = run("copy", store, f"sqlite:{tmp_path / 'new.db'}")
    assert missing.exit_code == 1  # no such store, and no --create
    assert not (tmp_path / "new.db").exists()


def test_rm_of_a_record_a_prefix_and_a_group(store: str) -> None:
    absent = run("rm", store, "USER", "nobody")
    assert absent.exit_code == 1
    assert 'nothing to remove at USER ["nobody"]' in absent.stderr
    by_prefix = run("rm", store, "USER", "u1", "--prefix")
    assert by_prefix.exit_code == 0
    assert "removed 2 records" in by_prefix.stderr
    assert run("ls", store, "USER").stdout.splitlines() == ['["u3", "profile"]']
    assert run("rm", store, "USER", "u1", "--prefix").exit_code == 1  # nothing left under it
    one = run("rm", store, "USER", "u3", "profile")
    assert (one.exit_code, one.stderr.strip()) == (0, "removed 1 record")
    group = run("rm", store, "APP", "--group")
    assert (group.exit_code, group.stderr.strip()) == (0, "removed 1 record")
    assert run("ls", store, "APP").stdout == ""
    assert run("rm", store, "APP").exit_code == 2  # no keys and no --group: usage
    assert run("rm", store, "APP", "k", "--group").exit_code == 2


def test_rm_removes_a_record_that_does_not_decode(store: str, conflicted: Path) -> None:
    assert run("rm", store, "USER", "u2").exit_code == 0
    assert not conflicted.exists()


def test_bytes_in_every_command_through_the_json_view(tmp_path: Path) -> None:
    location = f"file:{tmp_path / 'm'}"
    value = {"blob": {"$bytes": "AAEC"}, "text": "b'\\x00'", "tag": {"$dict": {"$bytes": "x"}}}
    created = ("--create", "--name", "m", "--id", "1", "--codec", "msgpack")
    assert run("set", location, "G", "k", "--value", json.dumps(value), *created).exit_code == 0
    assert json.loads(run("get", location, "G", "k").stdout) == value
    shown = json.loads(run("show", run("path", location, "G", "k").stdout.strip()).stdout)
    assert shown == {"keys": ["k"], "value": value}  # bytes and a string like them told apart
    first = run("dump", location).stdout
    copy = f"file:{tmp_path / 'n'}"
    assert run("load", copy, "-", *created, stdin=first).exit_code == 0
    assert run("dump", copy).stdout == first  # dump -> load -> dump: byte-identical


def test_load_messages_and_a_byte_order_mark(tmp_path: Path) -> None:
    location = f"file:{tmp_path}"
    bad = json.dumps({"group": "G", "keys": "b", "value": 1})
    result = run("load", location, "-", "--create", "--name", "a", "--id", "1", stdin=bad)
    assert result.exit_code == 2
    assert 'line 1: "keys" must be a list of 1 to 5 strings, got "b"' in result.stderr
    source = tmp_path / "bom.jsonl"
    source.write_text(
        json.dumps({"group": "G", "keys": ["k"], "value": 1}) + "\n", encoding="utf-8-sig"
    )
    loaded = run("load", location, str(source), "--create", "--name", "a", "--id", "1")
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(run("get", location, "G", "k").stdout) == 1


def test_no_help_shows_raw_restructured_text() -> None:
    commands = [name for name in main.commands]  # type: ignore[attr-defined]
    for command in ["", *commands]:
        shown = run(*([command] if command else []), "--help").stdout
        assert "`" not in shown, (command, shown)


def test_demo_runs_from_any_directory(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert demo.returncode == 0, demo.stderr
    assert "logins: 42 + 100 =" in demo.stdout
    assert "the sample data that ships with rapid_dev_storage" in demo.stdout
    assert list(tmp_path.iterdir()) == []  # its scratch store is gone, and nothing was left here


def test_the_library_loads_neither_click_nor_tqdm() -> None:
    imported = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rapid_dev_storage"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in imported.splitlines()}
    assert "rapid_dev_storage" in modules
    assert not modules & {"click", "tqdm"}
