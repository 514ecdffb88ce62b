"""What the README promises a newcomer: its two commands first, the store as it shows it, and a
test run that says why the PostgreSQL tests were skipped. Its examples run in test_docs.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from _postgres import requires_postgres

from rapid_dev_storage import FileBackend, Storage

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = BLOCK.search(text)
    assert first_block is not None
    assert text[: first_block.start()].count("\n") <= 2, "the commands come first"
    commands = first_block.group(2).strip().splitlines()
    assert len(commands) == 2
    assert "rapid-dev-storage demo" in commands[0]
    assert "pytest" in commands[1]


def test_the_readme_stays_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, "reference material belongs in docs/, linked from the README"
    headings = [line[3:] for line in lines if line.startswith("## ")]
    for section in ("A tour", "Editing by hand", "Git", "Watching", "Documentation"):
        assert section in headings


def test_the_store_shown_on_disk_is_what_the_fixture_makes(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    listing = text[text.index("data/\n└── my%20app~1/") :]
    shown_record = re.search(r"reads:\n\n```json\n(.*?)```", text, re.DOTALL)
    assert shown_record is not None
    fixture = ROOT / "rapid_dev_storage" / "sample_app.jsonl"
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


def test_a_plain_run_says_why_the_postgresql_tests_were_skipped(tmp_path: Path) -> None:
    # The README's second command, on a few tests, without a server: no -rs, no -v.
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RAPID_DEV_STORAGE_TEST_POSTGRES", "PYTEST_"))
    }
    selection = [
        "tests/test_readme.py::test_readme_starts_with_the_two_commands",
        "tests/test_postgres_backend.py",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *selection, f"--basetemp={tmp_path / 'run'}"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    said = re.findall(r"^(\d+) PostgreSQL tests? skipped: (.*)$", result.stdout, re.MULTILINE)
    counts = {reason: int(count) for count, reason in said}
    assert len(counts) == len(said), "one line per reason"
    assert counts.get(requires_postgres.kwargs["reason"], 0) >= 10, result.stdout
    skipped = re.search(r"passed, (\d+) skipped in", result.stdout)
    assert skipped is not None, result.stdout
    assert sum(counts.values()) == int(skipped.group(1)), "every PostgreSQL test, and only those"
