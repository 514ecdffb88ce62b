"""Start-up: what importing the package and running a command load (never timed here).

Each check runs a fresh interpreter and looks at ``sys.modules``: optional, fallback and
command-line dependencies load when first used, and the public names are the same as ever.
tools/bench_startup.py measures the time.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import click
import pytest

import rapid_dev_storage
from rapid_dev_storage import FileBackend, cli
from rapid_dev_storage import _cli_lazy as lazy
from rapid_dev_storage._file_locks import StripeLocks
from rapid_dev_storage._file_write import RecordWrites

NEVER_FOR_A_GET = [
    "pathlib",  # with urllib.parse, ipaddress, fnmatch: 3-4 ms; Path is only an annotation
    "urllib.parse",  # only for a URL holding a %
    "hashlib",  # it loads OpenSSL: record names use CPython's own SHA-256
    "zlib",
    "encodings.utf_8_sig",
    "concurrent.futures.thread",  # and queue: a store's thread pools are made when first used
    "queue",
]
"""Loaded neither by the package nor by the command line's get of a small record."""
NEVER_READING_SMALL_RECORDS = [
    "rapid_dev_storage._file_jobs",
    "rapid_dev_storage._file_writers",
    "rapid_dev_storage._file_write_job",
    "rapid_dev_storage._file_commit",
    "rapid_dev_storage._file_locks",
    "rapid_dev_storage._file_write",
    "rapid_dev_storage._file_write_dirs",
    "rapid_dev_storage._record_keys",
    "rapid_dev_storage._file_scan",
    "rapid_dev_storage._file_scan_parts",
    "rapid_dev_storage._file_scan_decode",
    "rapid_dev_storage._file_sweep",
    "rapid_dev_storage._file_temps",  # and making a store's marker
]
"""A file store's threads, writes, scans and sweep: loaded by the first operation needing them."""
NEVER_AT_IMPORT = [
    "filelock",  # the fallback where flock(2) is missing
    "asyncpg",
    "watchfiles",
    "anyio",
    "click",
    "tqdm",
    "sqlite3",
    "multiprocessing",
    "importlib.metadata",
    "rapid_dev_storage._file",
    "rapid_dev_storage._sqlite",
    "rapid_dev_storage._postgres",
    "rapid_dev_storage._postgres_sql",
    "rapid_dev_storage._urls",
    "rapid_dev_storage._merge",
    "rapid_dev_storage._watch",  # with the first watch
    "dataclasses",  # a frozen dataclass costs ~0.7 ms to define: none on the way to a get
    "rapid_dev_storage._memory",
    *NEVER_FOR_A_GET,
]


def loaded_after(code: str, *arguments: str) -> set[str]:
    """Run ``code`` in a fresh interpreter; return the modules it loaded.

    Not those the interpreter loaded before it (an editable install's finder imports pathlib).
    """
    script = (
        f"import sys\n_before = set(sys.modules)\n{code}\nimport json\n"
        "print(json.dumps(sorted(set(sys.modules) - _before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_package_loads_no_optional_fallback_or_command_line_dependency() -> None:
    loaded = loaded_after("import rapid_dev_storage")
    assert sorted(loaded & set(NEVER_AT_IMPORT)) == []


def test_every_public_name_resolves_and_is_listed() -> None:
    names = rapid_dev_storage.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(rapid_dev_storage, name) is not None
    assert set(names) <= set(dir(rapid_dev_storage))
    for name in set(dir(rapid_dev_storage)) - set(names):  # not Any, importlib, _LAZY...
        if not name.startswith(("__", "@")):  # "@py_builtins": pytest's assertion rewriting
            assert inspect.ismodule(getattr(rapid_dev_storage, name)), name
    with pytest.raises(AttributeError, match="no attribute 'NoSuchBackend'"):
        rapid_dev_storage.NoSuchBackend  # type: ignore[attr-defined]  # noqa: B018


def test_a_lazy_name_is_the_class_of_its_module_and_loads_it() -> None:
    code = (
        "import sys, rapid_dev_storage\n"
        "assert 'rapid_dev_storage._sqlite' not in sys.modules\n"
        "from rapid_dev_storage import PostgresBackend, SQLiteBackend, open_storage\n"
        "from rapid_dev_storage._sqlite import SQLiteBackend as Real\n"
        "assert SQLiteBackend is Real and PostgresBackend.__name__ == 'PostgresBackend'\n"
        "import rapid_dev_storage._open_storage as o\n"
        "assert open_storage is o.open_storage"
    )
    assert "rapid_dev_storage._sqlite" in loaded_after(code)


def test_a_file_store_loads_neither_sqlite_nor_postgresql_nor_the_watcher(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from rapid_dev_storage import open_storage\n"
        "async def main():\n"
        "    async with await open_storage(f'file:{sys.argv[1]}', 'app', 1) as store:\n"
        "        await store.get_group('G')['k'].set_value(1)\n"
        "asyncio.run(main())"
    )
    loaded = loaded_after(code, str(tmp_path))
    unwanted = ["sqlite3", "watchfiles", "filelock", "asyncpg", "rapid_dev_storage._postgres"]
    assert "rapid_dev_storage._file" in loaded
    assert sorted(loaded & set(unwanted)) == []


def test_watching_a_file_store_loads_the_watcher(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from rapid_dev_storage import open_storage\n"
        "async def main():\n"
        "    async with await open_storage(f'file:{sys.argv[1]}', 'app', 1) as store:\n"
        "        subscription = await store.subscribe(lambda change: None, 'G')\n"
        "        await subscription.close()\n"
        "asyncio.run(main())"
    )
    loaded = loaded_after(code, str(tmp_path))
    assert "watchfiles" in loaded
    assert "rapid_dev_storage._watch" in loaded


def test_get_on_the_command_line_loads_only_what_get_needs(tmp_path: Path) -> None:
    location = f"file:{tmp_path}"
    created = ["set", location, "G", "k", "-v", "[1]", "--create", "--name", "app", "--id", "1"]
    subprocess.run([sys.executable, "-m", "rapid_dev_storage", *created], check=True)
    code = (
        "import sys\n"
        "from rapid_dev_storage.cli import main\n"
        "main(sys.argv[1:], standalone_mode=False)"
    )
    loaded = loaded_after(code, "get", location, "G", "k")
    unwanted = [
        "tqdm",
        "importlib.metadata",
        "sqlite3",
        "asyncpg",
        "watchfiles",
        "filelock",
        "rapid_dev_storage._postgres",
        "rapid_dev_storage._fsck",
        "rapid_dev_storage._cli_git",
        "rapid_dev_storage._cli_stores",
        "rapid_dev_storage._cli_copy",
        "rapid_dev_storage._edit",
        "rapid_dev_storage._merge",
        "rapid_dev_storage._demo",
        "rapid_dev_storage._watch",
        "rapid_dev_storage._memory",
        "dataclasses",
        *NEVER_FOR_A_GET,
        *NEVER_READING_SMALL_RECORDS,
    ]
    assert "click" in loaded
    assert sorted(loaded & set(unwanted)) == []


@pytest.mark.parametrize(
    ("module", "listed"),
    [("_cli_git", lazy.GIT_COMMANDS), ("_cli_stores", lazy.STORE_COMMANDS)],
)
def test_lazy_commands_are_listed_and_found_before_their_module_loads(
    module: str, listed: tuple[str, ...]
) -> None:
    defined = importlib.import_module(f"rapid_dev_storage.{module}")
    commands = getattr(defined, "GIT_COMMANDS" if module == "_cli_git" else "STORE_COMMANDS")
    assert sorted(command.name for command in commands) == sorted(listed)
    context = click.Context(cli.main)
    assert set(listed) <= set(cli.main.list_commands(context))
    for name in listed:
        command = cli.main.get_command(context, name)
        assert command is not None
        assert command.name == name


def test_a_file_stores_first_write_loads_what_writes_need_and_reads_did_not(
    tmp_path: Path,
) -> None:
    code = (
        "import asyncio, sys\n"
        "from rapid_dev_storage import open_storage\n"
        "async def main():\n"
        "    async with await open_storage(f'file:{sys.argv[1]}', 'app', 1) as store:\n"
        "        record = store.get_group('G')['k']\n"
        "        assert await record.get_value() is NoValue\n"
        "        loaded = set(sys.modules)\n"
        "        assert not loaded & set(sys.argv[2:]), sorted(loaded & set(sys.argv[2:]))\n"
        "        await record.set_value([1])\n"
        "        assert await record.get_value() == [1]\n"
        "        assert [item async for item in store.get_group('G')] == [(('k',), [1])]\n"
        "from rapid_dev_storage import NoValue\n"
        "asyncio.run(main())"
    )
    opening = ["rapid_dev_storage._file_sweep", "rapid_dev_storage._file_temps"]  # this open's
    lazy = [name for name in NEVER_READING_SMALL_RECORDS if name not in opening]
    loaded = loaded_after(code, str(tmp_path), *lazy)
    assert sorted(set(lazy) - loaded) == []


async def test_a_file_stores_write_machinery_is_made_once_on_the_loops_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Made when the first write starts, on the loop: writer threads starting their first jobs
    # together must never each make their own (each set of stripes excludes only its users).
    made: list[tuple[str, str]] = []
    for made_class in (RecordWrites, StripeLocks):
        original = made_class.__init__

        def noting(self: Any, *arguments: Any, _original: Any = original, **named: Any) -> None:
            made.append((type(self).__name__, threading.current_thread().name))
            _original(self, *arguments, **named)

        monkeypatch.setattr(made_class, "__init__", noting)
    backend = await FileBackend.create_backend_instance(tmp_path, "app", 1)
    try:
        assert made == []
        await asyncio.gather(*(backend.write_data("G", f"k{i}", value=i) for i in range(32)))
        await backend.clear_group("G")
    finally:
        await backend.close()
    loop_thread = threading.current_thread().name
    assert sorted(made) == [("RecordWrites", loop_thread), ("StripeLocks", loop_thread)]


async def test_a_file_store_that_only_reads_starts_no_writer_thread(tmp_path: Path) -> None:
    # Found by a new user: the first read of any kind started all eight writer threads too.
    writing = await FileBackend.create_backend_instance(tmp_path, "app", 1, inline_limit=0)
    await writing.write_data("G", "small", value=1)
    await writing.write_data("G", "large", value="x" * 300_000)  # read on a reader thread
    await writing.close()

    def writer_threads() -> list[str]:
        prefix = "rapid-dev-storage-write"
        return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]

    before = writer_threads()
    backend = await FileBackend.create_backend_instance(tmp_path, "app", 1, inline_limit=0)
    try:
        assert await backend.list_groups() == ["G"]
        assert await backend.get_data("G", "large") == "x" * 300_000
        assert len([item async for item in backend.get_all_by_group("G")]) == 2
        assert writer_threads() == before
        await backend.write_data("G", "small", value=2)
        assert len(writer_threads()) > len(before)
    finally:
        await backend.close()
    assert writer_threads() == before
