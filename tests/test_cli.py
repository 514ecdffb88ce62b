"""The rapid-dev-storage command: every subcommand on good and bad input."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import selectors
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from _postgres import fresh_schema, requires_postgres
from click.testing import CliRunner, Result

from rapid_dev_storage import FileBackend, PostgresBackend, SQLiteBackend, Storage
from rapid_dev_storage.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "rapid_dev_storage" / "sample_app.jsonl"


def run(*arguments: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(arguments), input=stdin, catch_exceptions=False)


def lines(result: Result) -> list[object]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A file store loaded from the bundled fixture, as a location."""
    location = f"file:{tmp_path / 'data'}"
    loaded = run(
        "load", location, str(FIXTURE), "--create", "--name", "app", "--id", "1", "--codec", "json"
    )
    assert loaded.exit_code == 0, loaded.output
    return location


def test_help_on_every_subcommand() -> None:
    for command in ("ls", "get", "set", "rm", "path", "show", "dump", "load", "copy", "watch"):
        assert run(command, "--help").exit_code == 0
    module = subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "dump" in module.stdout


def test_ls_get_set_rm(store: str) -> None:
    groups = lines(run("ls", store))
    assert {"group": "USER", "records": 10} in groups
    assert ["u1001", "settings"] in lines(run("ls", store, "USER"))
    got = run("get", store, "USER", "u1001", "settings")
    assert lines(got) == [
        {"language": "en", "notifications": {"email": True, "push": False}, "theme": "dark"}
    ]
    assert run("get", store, "USER", "nobody").exit_code == 1
    assert run("set", store, "FLAGS", "beta", "--value", '{"on": true}').exit_code == 0
    assert lines(run("get", store, "FLAGS", "beta")) == [{"on": True}]
    assert run("set", store, "FLAGS", "beta", "--value", "-", stdin="[1, 2]").exit_code == 0
    assert lines(run("get", store, "FLAGS", "beta")) == [[1, 2]]
    assert run("rm", store, "FLAGS", "beta").exit_code == 0
    assert run("get", store, "FLAGS", "beta").exit_code == 1


def test_bad_input_writes_nothing(store: str) -> None:
    before = run("dump", store).stdout
    assert run("set", store, "FLAGS", "x", "--value", "{not json").exit_code == 2
    assert run("set", store, "", "x", "--value", "1").exit_code == 2
    assert run("set", store, "G", "1", "2", "3", "4", "5", "6", "--value", "1").exit_code == 2
    assert run("get", "ftp:somewhere", "G", "k").exit_code == 2
    assert run("watch", "ftp:somewhere").exit_code == 2
    assert run("fsck", "file:" + str(Path(store[5:]) / "missing")).exit_code == 1  # not found
    assert run("copy", store, "nowhere").exit_code == 2
    assert run("ls", "sqlite:").exit_code == 2
    assert run("dump", store).stdout == before


def test_a_number_beyond_a_float_is_refused_not_stored_as_infinity(tmp_path: Path) -> None:
    location = f"file:{tmp_path}"
    created = ["--create", "--codec", "msgpack", "--name", "a", "--id", "1"]
    assert run("set", location, "G", "k", "--value", "[1]", *created).exit_code == 0
    result = run("set", location, "G", "k", "--value", '{"a": [2, 1e400]}')
    assert result.exit_code == 2
    assert "--value: the number 1e400 is beyond the range of a float" in result.output
    assert "is not JSON" not in result.output
    assert lines(run("get", location, "G", "k")) == [[1]]  # nothing written
    # Meant as infinity, it is written so (a msgpack store holds it), and 1.5e300 is a float.
    assert run("set", location, "G", "k", "--value", "[Infinity, 1.5e300]").exit_code == 0
    assert run("get", location, "G", "k").output.strip() == "[Infinity, 1.5e+300]"
    assert "is not JSON" in run("set", location, "G", "k", "--value", "{not json").output


@pytest.mark.parametrize(
    "arguments",
    [["set", "memory:", "G", "k", "--value", "1"], ["get", "memory:", "G", "k"], ["ls", "memory:"]],
)
def test_a_memory_store_is_no_store_to_a_command(arguments: list[str]) -> None:
    # Found by a new user: `set memory: ...` exited 0 with its write gone with the process.
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1
    assert "a memory store lives only as long as its process" in result.output


def test_a_copy_to_memory_checks_the_copy(store: str) -> None:
    result = run("copy", store, "memory:", "--create")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("copied and verified")


def test_path_names_the_file_before_it_exists(store: str) -> None:
    result = run("path", store, "USER", "u9", "settings")
    assert result.exit_code == 0
    path = Path(result.stdout.strip())
    assert not path.exists()
    path.write_text('{"keys": ["u9", "settings"], "value": "by hand"}', encoding="utf-8")
    assert lines(run("get", store, "USER", "u9", "settings")) == ["by hand"]
    database = f"sqlite:{path.parent.parent.parent / 'x.db'}"
    assert run("path", database, "G", "k").exit_code == 1  # no such store: none is made
    assert not Path(database[7:]).exists()
    assert (
        run(
            "set", database, "G", "k", "--value", "1", "--create", "--name", "a", "--id", "1"
        ).exit_code
        == 0
    )
    assert run("path", database, "G", "k").exit_code == 2  # a store without record files


def test_dump_is_sorted_and_load_round_trips(store: str, tmp_path: Path) -> None:
    dumped = run("dump", store)
    records = lines(dumped)
    assert records == sorted(records, key=lambda r: (r["group"], r["keys"]))  # type: ignore[index]
    assert len(records) == len(FIXTURE.read_text(encoding="utf-8").splitlines())
    target = f"sqlite:{tmp_path / 'copy.db'}"
    load = run(
        "load",
        target,
        "-",
        "--create",
        "--name",
        "app",
        "--id",
        "1",
        "--codec",
        "msgpack",
        stdin=dumped.stdout,
    )
    assert load.exit_code == 0
    assert run("dump", target).stdout == dumped.stdout


def test_load_checks_every_line_before_writing(tmp_path: Path) -> None:
    target = f"sqlite:{tmp_path / 'db.sqlite3'}"
    good = json.dumps({"group": "G", "keys": ["a"], "value": 1})
    for bad in (
        "not json",
        json.dumps({"group": "G", "keys": [], "value": 1}),
        json.dumps({"group": "G", "keys": ["a"]}),
        json.dumps({"group": "G", "keys": ["a"], "value": 1, "extra": 1}),
        json.dumps({"group": "G", "keys": ["a", 2], "value": 1}),
    ):
        result = run(
            "load", target, "-", "--create", "--name", "a", "--id", "1", stdin=f"{good}\n{bad}\n"
        )
        assert result.exit_code == 2
        assert "line 2" in result.output
        assert "nothing was written" in result.output
    assert run("ls", target).exit_code == 1  # no store: a bad load creates none


def test_copy_file_to_sqlite_and_back_is_equal(store: str, tmp_path: Path) -> None:
    sqlite_location = f"sqlite:{tmp_path / 'copy.db'}"
    assert run("copy", store, sqlite_location, "--create", "--codec", "msgpack").exit_code == 0
    back = f"file:{tmp_path / 'back'}"
    assert run("copy", sqlite_location, back, "--create").exit_code == 0  # json by default
    assert run("dump", back).stdout == run("dump", store).stdout

    async def codecs() -> tuple[str, str]:
        sqlite_backend = await SQLiteBackend.create_backend_instance(tmp_path / "copy.db", "app", 1)
        file_backend = await FileBackend.create_backend_instance(tmp_path / "back", "app", 1)
        async with Storage(sqlite_backend), Storage(file_backend):
            return sqlite_backend.codec.name, file_backend.codec.name

    assert asyncio.run(codecs()) == ("msgpack", "json")


@requires_postgres
@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_copy_through_postgresql_and_back_is_equal(store: str, tmp_path: Path, codec: str) -> None:
    server = asyncio.run(fresh_schema())
    assert run("copy", store, server, "--create", "--codec", codec).exit_code == 0
    assert lines(run("ls", server)) == lines(run("ls", store))
    assert (
        run("get", server, "USER", "u1001", "settings").stdout
        == run("get", store, "USER", "u1001", "settings").stdout
    )
    back = f"sqlite:{tmp_path / 'back.db'}"
    assert run("copy", server, back, "--create").exit_code == 0
    assert run("dump", back).stdout == run("dump", store).stdout

    async def stored_codec() -> str:
        backend = await PostgresBackend.create_backend_instance(server, "app", 1)
        async with Storage(backend):
            return backend.codec.name

    assert asyncio.run(stored_codec()) == codec
    unreachable = run("ls", "postgresql://postgres@127.0.0.1:1/postgres")
    assert unreachable.exit_code == 1  # the store failed, not the command line
    assert "cannot connect to postgresql://postgres@127.0.0.1:1/postgres" in unreachable.stderr


def test_show_prints_any_record_file(store: str, tmp_path: Path) -> None:
    msgpack_store = f"file:{tmp_path / 'm'}"
    assert run("copy", store, msgpack_store, "--create", "--codec", "msgpack").exit_code == 0
    path = run("path", msgpack_store, "USER", "u1001", "settings").stdout.strip()
    shown = json.loads(run("show", path).stdout)
    assert shown["keys"] == ["u1001", "settings"]
    assert shown["value"]["theme"] == "dark"
    broken = tmp_path / "broken.msgpack"
    broken.write_bytes(b"\xc1")
    assert run("show", str(broken)).exit_code == 1  # a damaged record: not a usage error


def test_several_stores_need_a_name(tmp_path: Path) -> None:
    location = f"file:{tmp_path}"
    for identifier in ("1", "2"):
        created = ("--create", "--name", "a", "--id", identifier)
        assert run("set", location, "G", "k", "--value", identifier, *created).exit_code == 0
    assert run("set", location, "G", "k", "--value", "3").exit_code == 2
    listed = lines(run("ls", location))
    assert listed == [
        {"name": "a", "id": "1", "directory": str(tmp_path / "a~1")},
        {"name": "a", "id": "2", "directory": str(tmp_path / "a~2")},
    ]
    assert lines(run("get", location, "G", "k", "--id", "2")) == [2]


def test_watch_prints_changes_as_json_lines(store: str) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "rapid_dev_storage", "watch", store, "FLAGS"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        for attempt in range(50):  # until the watcher is up, keep writing
            run("set", store, "FLAGS", "beta", "--value", str(attempt))
            line = _read_line_within(watcher, 0.2)
            if line:
                change = json.loads(line)
                assert (change["kind"], change["keys"]) == ("set", ["beta"])
                assert change["origin"] == "external"
                break
        else:
            pytest.fail("the watch printed nothing")
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
        if watcher.stdout is not None:
            watcher.stdout.close()


def _read_line_within(process: subprocess.Popen[str], seconds: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if selector.select(seconds):
            return process.stdout.readline()
    return ""


def test_demo_tours_a_copy_of_the_fixture_store() -> None:
    store = ROOT / "fixtures" / "store"
    before = {path: path.read_bytes() for path in store.rglob("*.json")}
    result = run("demo", "--fixtures", str(store))
    assert result.exit_code == 0, result.output
    assert "logins: 42 + 100 =                     142" in result.stdout
    assert '"theme": "dark"' in result.stdout  # the record shown as it is on disk
    assert {path: path.read_bytes() for path in store.rglob("*.json")} == before


def test_demo_names_the_fixtures_given_when_they_hold_no_store() -> None:
    # Found by a new user: the error named the demo's scratch copy, not the directory given.
    fixtures = ROOT / "fixtures"  # the store's parent, not the store
    result = CliRunner().invoke(main, ["demo", "--fixtures", str(fixtures)])
    assert result.exit_code == 1
    assert f"--fixtures {fixtures} holds no store" in result.output
    assert "rds-demo-" not in result.output


def test_the_fixture_store_is_what_its_source_makes() -> None:
    script = ROOT / "tools" / "make_fixtures.py"
    check = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


def test_fsck_finds_each_kind_of_damage_and_repair_leaves_a_clean_store(
    store: str, tmp_path: Path
) -> None:
    assert run("fsck", store).exit_code == 0
    root = tmp_path / "data" / "app~1"
    users = root / "^user"
    settings = Path(run("path", store, "USER", "u1001", "settings").stdout.strip())
    original = {path: path.read_bytes() for path in root.rglob("*.json")}
    # Each kind of damage a person or a crash leaves behind.
    broken = users / ("0" * 32 + ".json")
    broken.write_text("<<<<<<< HEAD\n{", encoding="utf-8")  # an undecodable record
    misnamed = users / ("1" * 32 + ".json")
    misnamed.write_text('{"keys": ["u7", "settings"], "value": 7}', encoding="utf-8")
    duplicate = users / ("2" * 32 + ".json")
    shutil.copy(settings, duplicate)  # a copy under a name that is not its own
    orphan = users / f".rds-{2**22 + 7}-abc.tmp"
    orphan.write_bytes(b"half")
    notes = users / "notes.txt"
    notes.write_text("mine", encoding="utf-8")
    stray = root / "Not A Group"
    stray.mkdir()
    checked = run("fsck", store, "--json")
    assert checked.exit_code == 1
    kinds = sorted(problem["kind"] for problem in lines(checked))  # type: ignore[index]
    assert kinds == [
        "misnamed",
        "misnamed",
        "orphan-temp",
        "undecodable",
        "unknown-directory",
        "unknown-file",
    ]
    repaired = run("fsck", store, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert run("fsck", store).exit_code == 0
    assert lines(run("get", store, "USER", "u7", "settings")) == [7]  # renamed to its own name
    quarantined = {path.name for path in (root / ".quarantine").rglob("*") if path.is_file()}
    assert {broken.name, notes.name} <= quarantined  # moved, never deleted
    assert not duplicate.exists()  # a byte-identical copy of a record: nothing is lost
    assert not orphan.exists()
    for path, data in original.items():  # the good records are untouched
        assert path.read_bytes() == data


def test_git_diff_shows_msgpack_records_as_json(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repository), *arguments], capture_output=True, text=True, check=True
        ).stdout

    git("init", "-q")
    git("config", "user.email", "tests@example.org")
    git("config", "user.name", "tests")
    location = f"file:{repository / 'data'}"
    setting = ["--create", "--name", "app", "--id", "1", "--codec", "msgpack"]
    assert (
        run("set", location, "USER", "u1", "--value", '{"theme": "dark"}', *setting).exit_code == 0
    )
    assert run("git-setup", "--repo", str(repository)).exit_code == 0
    attributes = repository / "data" / "app~1" / ".gitattributes"  # in the store found
    assert "diff=rapid-dev-storage" in attributes.read_text()
    git("add", "-A")
    git("commit", "-qm", "first")
    assert run("set", location, "USER", "u1", "--value", '{"theme": "light"}').exit_code == 0
    diff = git("diff")
    assert '-    "theme": "dark"' in diff
    assert '+    "theme": "light"' in diff
    assert run("git-setup", "--repo", str(tmp_path / "not a repo")).exit_code == 2


def test_progress_bars_only_on_a_terminal(store: str) -> None:
    assert "records" not in run("dump", store).stderr  # CliRunner's stderr is no terminal
    main_side, terminal_side = pty.openpty()
    # A terminal of 24 lines by 80 columns, as a real one would say.
    fcntl.ioctl(terminal_side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    dump = subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", "dump", store],
        stdout=subprocess.PIPE,
        stderr=terminal_side,
        check=True,
    )
    os.close(terminal_side)
    shown = b""
    while select.select([main_side], [], [], 0.5)[0]:
        try:
            chunk = os.read(main_side, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_side)
    assert b"dump" in shown
    assert b"records" in shown
    assert len(dump.stdout.splitlines()) == 15
