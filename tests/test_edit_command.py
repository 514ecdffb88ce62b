"""``rapid-dev-storage edit`` through the real command: a scripted $EDITOR, real stores, a pty."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _postgres import fresh_schema, requires_postgres
from _postgres import open_store as open_postgres_store
from _scripted_editor import Editor

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage

pytestmark = pytest.mark.usefixtures("private_tmpdir")


def edit(
    tmp_path: Path, editor: Editor, *arguments: str, stdin: Any = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Run the command as a script would: standard input not a terminal unless given one."""
    environment = {**os.environ, "EDITOR": shlex.join(editor.command)}
    environment.pop("VISUAL", None)
    return subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", "edit", *arguments],
        check=False,
        cwd=tmp_path,
        env=environment,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def value_in(location: Path, *, sqlite: bool = False) -> Any:
    async def read() -> Any:
        kind = SQLiteBackend if sqlite else FileBackend
        backend = await kind.create_backend_instance(location, "app", 1)
        async with Storage(backend) as store:
            return await store.get_group("USER")["u1"].get_value()

    return asyncio.run(read())


def store_holding(location: Path, value: Any, *, sqlite: bool = False) -> None:
    async def write() -> None:
        kind = SQLiteBackend if sqlite else FileBackend
        backend = await kind.create_backend_instance(location, "app", 1)
        async with Storage(backend) as store:
            await store.get_group("USER")["u1"].set_value(value)

    asyncio.run(write())


def kept_file(stderr: str) -> Path:
    found = re.search(r"your text is in (\S+)", stderr)
    assert found, stderr
    return Path(found.group(1))


def test_a_change_is_saved_and_no_change_writes_nothing(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", {"theme": "dark"})
    done = edit(
        tmp_path, Editor(tmp_path, [{"replace": ["dark", "light"]}]), "file:data", "USER", "u1"
    )
    assert done.returncode == 0, done.stderr
    assert "saved USER ['u1']" in done.stderr
    assert value_in(tmp_path / "data") == {"theme": "light"}
    files = {path: path.stat().st_mtime_ns for path in (tmp_path / "data").rglob("*.msgpack")}
    done = edit(tmp_path, Editor(tmp_path, [{}]), "file:data", "USER", "u1")
    assert (done.returncode, done.stderr) == (0, "no change: nothing written\n")
    assert {path: path.stat().st_mtime_ns for path in files} == files


def test_invalid_json_exits_1_keeping_the_text_and_from_starts_there(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", {"a": 1})
    broken = Editor(tmp_path, [{"write": '{"a": 2,\n  "b": }\n'}, {}])
    done = edit(tmp_path, broken, "file:data", "USER", "u1")
    assert done.returncode == 1
    assert "not JSON" in done.stderr
    assert "Re-open" not in done.stderr  # standard input is no terminal: never a question
    assert broken.steps_left == 1  # and the editor was not opened again
    kept = kept_file(done.stderr)
    assert '"b": }' in kept.read_text()
    assert value_in(tmp_path / "data") == {"a": 1}
    fixed = Editor(tmp_path, [{"replace": ['"b": }', '"b": 3}']}])
    done = edit(tmp_path, fixed, "file:data", "USER", "u1", "--from", str(kept))
    assert done.returncode == 0, done.stderr
    assert value_in(tmp_path / "data") == {"a": 2, "b": 3}


@pytest.mark.parametrize("sqlite", [False, True], ids=["file", "sqlite"])
def test_a_change_by_another_process_while_editing_is_never_overwritten(
    tmp_path: Path, sqlite: bool
) -> None:
    location = tmp_path / ("app.db" if sqlite else "data")
    store_holding(location, {"n": 1}, sqlite=sqlite)
    step = {"elsewhere": {"n": 100}, "store": str(location), "sqlite": sqlite, "write": '{"n": 2}'}
    scheme = "sqlite" if sqlite else "file"
    done = edit(tmp_path, Editor(tmp_path, [step]), f"{scheme}:{location.name}", "USER", "u1")
    assert done.returncode == 1
    assert "changed while you edited it" in done.stderr
    assert '{"n": 2}' in kept_file(done.stderr).read_text()
    assert value_in(location, sqlite=sqlite) == {"n": 100}


def test_an_sqlite_store_is_created_only_with_create(tmp_path: Path) -> None:
    adds = Editor(tmp_path, [{"replace": ["creates the record.\n", "creates the record.\n[1]\n"]}])
    done = edit(tmp_path, adds, "sqlite:app.db", "USER", "u1", "--name", "app", "--id", "1")
    assert done.returncode == 1  # not found, as for every command
    assert "--create" in done.stderr
    assert not (tmp_path / "app.db").exists()
    arguments = ("sqlite:app.db", "USER", "u1", "--name", "app", "--id", "1", "--create")
    done = edit(tmp_path, adds, *arguments)
    assert done.returncode == 0, done.stderr
    assert value_in(tmp_path / "app.db", sqlite=True) == [1]


def test_a_wrong_store_name_creates_nothing(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", 1)
    before = sorted(path.name for path in (tmp_path / "data").iterdir())
    done = edit(tmp_path, Editor(tmp_path, [{}]), "file:data", "USER", "u1", "--name", "typo")
    assert done.returncode == 1
    assert "--name 'app' --id '1'" in done.stderr  # the stores that are there
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == before
    done = edit(tmp_path, Editor(tmp_path, [{}]), "file:nowhere", "USER", "u1")
    assert done.returncode == 1
    assert not (tmp_path / "nowhere").exists()


def test_a_new_store_from_the_command_line_is_json(tmp_path: Path) -> None:
    adds = Editor(tmp_path, [{"replace": ["creates the record.\n", 'creates the record.\n"x"\n']}])
    arguments = ("file:data", "USER", "u1", "--name", "app", "--id", "1", "--create")
    assert edit(tmp_path, adds, *arguments).returncode == 0
    (record,) = (tmp_path / "data").rglob("[0-9a-f]*.json")
    assert record.suffix == ".json"
    assert '"value": "x"' in record.read_text()


def test_an_editor_that_fails_exits_1_naming_the_kept_text(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", 1)
    done = edit(
        tmp_path, Editor(tmp_path, [{"write": "2", "status": 3}]), "file:data", "USER", "u1"
    )
    assert done.returncode == 1
    assert "exited with status 3" in done.stderr
    assert value_in(tmp_path / "data") == 1


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", 1)
    assert edit(tmp_path, Editor(tmp_path, []), "file:data", "USER").returncode == 2  # no keys
    done = edit(tmp_path, Editor(tmp_path, []), "file:data", "USER", *"abcdef")  # six keys
    assert done.returncode == 2
    assert value_in(tmp_path / "data") == 1


def test_at_a_terminal_a_problem_offers_to_reopen_the_editor(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", 1)
    editor = Editor(tmp_path, [{"write": "[1, 2"}, {"replace": ["[1, 2", "[1, 2]"]}])
    controller, terminal = pty.openpty()
    try:
        # The answer waits in the terminal's input until the question reads it.
        os.write(controller, b"y\n")
        done = edit(tmp_path, editor, "file:data", "USER", "u1", stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 0, done.stderr
    assert "Re-open the editor?" in done.stderr
    assert editor.steps_left == 0
    assert editor.seen[1].startswith("# ERROR: not JSON")
    assert value_in(tmp_path / "data") == [1, 2]


@requires_postgres
def test_a_postgresql_store_is_edited_too(tmp_path: Path) -> None:
    server = asyncio.run(fresh_schema())
    creating = ("USER", "u1", "--name", "app", "--id", "1", "--create")
    adds = Editor(
        tmp_path, [{"replace": ["creates the record.\n", 'creates the record.\n{"n": 1}\n']}]
    )
    done = edit(tmp_path, adds, server, *creating)
    assert done.returncode == 0, done.stderr
    done = edit(
        tmp_path, Editor(tmp_path, [{"replace": ['"n": 1', '"n": 2']}]), server, "USER", "u1"
    )
    assert done.returncode == 0, done.stderr

    async def read() -> Any:
        async with await open_postgres_store(server) as store:
            return await store.get_group("USER")["u1"].get_value()

    assert asyncio.run(read()) == {"n": 2}


class RawEditor:
    """An editor that writes the given bytes over the file it is given."""

    def __init__(self, tmp_path: Path, data: bytes) -> None:
        source = tmp_path / "payload.bin"
        source.write_bytes(data)
        script = tmp_path / "raw_editor.py"
        script.write_text(
            "import sys, pathlib\n"
            f"pathlib.Path(sys.argv[1]).write_bytes(pathlib.Path({str(source)!r}).read_bytes())\n"
        )
        self.command = [sys.executable, str(script)]


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"[" * 100_000, "nested too deeply"),
        (b'"\\ud800"', "surrogate"),
    ],
    ids=["not-utf8", "deep", "surrogate"],
)
def test_what_cannot_be_a_value_is_kept_with_a_message_not_a_traceback(
    tmp_path: Path, data: bytes, said: str
) -> None:
    store_holding(tmp_path / "data", {"n": 1})
    done = edit(tmp_path, RawEditor(tmp_path, data), "file:data", "USER", "u1")  # type: ignore[arg-type]
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert said in done.stderr
    kept = re.search(r"your text is in (\S+)", done.stderr)
    assert kept is not None
    assert data in Path(kept.group(1)).read_bytes()
    assert value_in(tmp_path / "data") == {"n": 1}


def test_from_refuses_what_is_not_a_regular_text_file(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", {"n": 1})
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "binary").write_bytes(b"\xff\x00")
    for source in ("fifo", "binary", "/dev/zero"):
        done = edit(tmp_path, Editor(tmp_path, [{}]), "file:data", "USER", "u1", "--from", source)
        assert done.returncode == 2, (source, done.stderr)
        assert "cannot be read as text" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_kept_text_given_back_never_overwrites_a_change_made_since(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", {"n": 1})
    # A first attempt leaves its text kept (the editor writes something that is not JSON).
    first = edit(tmp_path, Editor(tmp_path, [{"write": '{"n": 2'}]), "file:data", "USER", "u1")
    kept = re.search(r"your text is in (\S+)", first.stderr)
    assert first.returncode == 1
    assert kept is not None
    fixed = Path(kept.group(1)).read_text().replace('{"n": 2', '{"n": 2}')
    Path(kept.group(1)).write_text(fixed)
    store_holding(tmp_path / "data", {"n": 3})  # someone writes after the text was kept
    again = edit(
        tmp_path, Editor(tmp_path, [{}]), "file:data", "USER", "u1", "--from", kept.group(1)
    )
    assert again.returncode == 1, again.stderr
    assert "changed while you edited it" in again.stderr
    assert value_in(tmp_path / "data") == {"n": 3}
    # Given back once more, now opened on {"n": 3}: it is saved.
    kept_again = re.search(r"your text is in (\S+)", again.stderr)
    assert kept_again is not None
    last = edit(
        tmp_path, Editor(tmp_path, [{}]), "file:data", "USER", "u1", "--from", kept_again.group(1)
    )
    assert last.returncode == 0, last.stderr
    assert value_in(tmp_path / "data") == {"n": 2}


def test_a_stale_kept_text_that_is_not_json_is_kept_again(tmp_path: Path) -> None:
    store_holding(tmp_path / "data", {"n": 1})
    first = edit(tmp_path, Editor(tmp_path, [{"write": '{"n": 2'}]), "file:data", "USER", "u1")
    kept = re.search(r"your text is in (\S+)", first.stderr)
    assert kept is not None
    store_holding(tmp_path / "data", {"n": 3})  # changed since the text was kept
    # Given back and still not JSON: kept once more, naming the state it was opened on.
    again = edit(
        tmp_path, Editor(tmp_path, [{}]), "file:data", "USER", "u1", "--from", kept.group(1)
    )
    assert again.returncode == 1, again.stderr
    assert "Traceback" not in again.stderr
    assert "not JSON" in again.stderr
    kept_again = re.search(r"your text is in (\S+)", again.stderr)
    assert kept_again is not None
    opened_on = re.findall(r"^# Opened on state (\w+)$", Path(kept.group(1)).read_text(), re.M)
    assert (
        re.findall(r"^# Opened on state (\w+)$", Path(kept_again.group(1)).read_text(), re.M)
        == opened_on
    )
    assert value_in(tmp_path / "data") == {"n": 3}
