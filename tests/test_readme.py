"""The README's code runs as written: the tour, the backend example, the original's examples."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from _postgres import fresh_schema, requires_postgres

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage
from rapid_dev_storage.testing import BackendConformance

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [
        code for lang, code in BLOCK.findall(README.read_text(encoding="utf-8")) if lang == language
    ]


def run_example(code: str, cwd: Path, **environment: str) -> list[str]:
    """Run a README example in a fresh interpreter; return the lines it printed."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **environment},
    )
    return result.stdout.splitlines()


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = BLOCK.search(text)
    assert first_block is not None
    assert text[: first_block.start()].count("\n") <= 2, "the commands come first"
    commands = first_block.group(2).strip().splitlines()
    assert len(commands) == 2
    assert "rapid-dev-storage demo" in commands[0]
    assert "pytest" in commands[1]


@pytest.mark.parametrize("name", ["tour", "live reload"])
def test_examples_run_and_print_what_they_say(tmp_path: Path, name: str) -> None:
    examples = [code for code in blocks("python") if "asyncio.run(main())" in code]
    assert len(examples) == 2
    tour = examples[["tour", "live reload"].index(name)]
    printed = run_example(tour, tmp_path)
    expected = [
        line.split("# ")[-1].strip()
        for line in tour.splitlines()
        if line.lstrip().startswith("print(") and "# " in line
    ]
    assert expected, "the tour documents its output in comments"
    for line in expected:
        assert line in printed, (line, printed)


def test_the_store_shown_on_disk_is_what_the_fixture_makes(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    listing = text[text.index("data/\n└── my%20app~1/") :]
    shown_record = re.search(r"reads:\n\n```json\n(.*?)```", text, re.DOTALL)
    assert shown_record is not None
    fixture = README.parent / "rapid_dev_storage" / "sample_app.jsonl"
    records = [json.loads(line) for line in fixture.read_text(encoding="utf-8").splitlines()]

    async def load() -> None:
        backend = await FileBackend.create_backend_instance(
            tmp_path / "data", "my app", 1, codec="json"
        )
        async with Storage(backend) as store:
            for record in records:
                await store.get_group(record["group"])[tuple(record["keys"])].set_value(
                    record["value"]
                )

    asyncio.run(load())
    store_directory = tmp_path / "data" / "my%20app~1"
    listing = listing[: listing.index("```")]
    groups = {p.name for p in store_directory.iterdir() if not p.name.startswith(".")}
    assert set(re.findall(r"── (\^\w+)/", listing)) == groups
    for shown in re.findall(r"[0-9a-f]{32}\.json", listing):
        assert list(store_directory.glob(f"*/{shown}")), shown
    settings = store_directory / "^user" / "193c3988e96237c75d199481aeb0e661.json"
    assert settings.read_text(encoding="utf-8") == shown_record.group(1)


def test_backend_example_runs_the_suite(tmp_path: Path) -> None:
    (example,) = [code for code in blocks("python") if "BackendConformance" in code]
    namespace: dict[str, Any] = {"MyBackend": SQLiteBackend}
    exec(example, namespace)
    suite = namespace["TestMyBackend"]
    assert issubclass(suite, BackendConformance)
    suite().test_overwrite_replaces("json", tmp_path)


@dataclasses.dataclass
class User:
    uuid: str


def test_original_customizing_example_runs(tmp_path: Path) -> None:
    (example,) = [code for code in blocks("py") if "class SpecificStorage" in code]
    namespace: dict[str, Any] = {"User": User}
    exec(example, namespace)

    async def use() -> list[Any]:
        store = await namespace["SpecificStorage"].new_storage(tmp_path / "original.sqlite3")
        ada, bob = User(str(uuid.uuid4())), User(str(uuid.uuid4()))
        await store.user(ada).set_value({"name": "Ada"})
        await store.user(bob).set_value({"name": "Bob"})
        found = sorted(
            [(keys, data) async for keys, data in store.all_users()],
            key=lambda item: item[1]["name"],
        )
        await store.close()
        assert found == [((ada.uuid,), {"name": "Ada"}), ((bob.uuid,), {"name": "Bob"})]
        return found

    asyncio.run(use())


def test_original_repl_session_prints_what_it_shows() -> None:
    (session,) = [code for code in blocks("py") if ">>>" in code]
    steps: list[tuple[str, list[str]]] = []
    for line in session.splitlines():
        if line.startswith(">>> "):
            steps.append((line[4:], []))
        elif steps and line.strip() and not line.startswith("#"):
            steps[-1][1].append(line)

    async def replay() -> None:
        namespace: dict[str, Any] = {}
        for source, expected in steps:
            output = io.StringIO()
            tree = ast.parse(source, mode="single")
            code = compile(tree, "<readme>", "single", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            with contextlib.redirect_stdout(output):
                result = eval(code, namespace)
                if asyncio.iscoroutine(result):
                    await result
            assert output.getvalue().splitlines() == expected, source
        await namespace["store"].close()  # the session never closes; Python 3.13 would warn

    asyncio.run(replay())


@requires_postgres
def test_postgres_example_prints_what_it_says(tmp_path: Path) -> None:
    (example,) = [code for code in blocks("python") if "PostgresBackend" in code]
    printed = run_example(example, tmp_path, DATABASE_URL=asyncio.run(fresh_schema()))
    expected = [line.split("# ")[-1].strip() for line in example.splitlines() if "print(" in line]
    assert printed == expected
