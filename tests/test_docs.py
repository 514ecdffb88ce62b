"""Every Python example in the README and docs/*.md runs as written, and every link lands.

A block that is not meant to run says so in the line before it: ``<!-- not run: the reason -->``.
Every other ``python`` or ``py`` block is one of the kinds below, and its test runs it: a script
(it calls ``asyncio.run``) runs in a fresh interpreter and must print what its ``print(...)  #``
comments say; the original library's examples, the conformance suite example and the pytest
plugin example each run in the setting they describe.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import io
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from _postgres import fresh_schema, requires_postgres

from rapid_dev_storage import SQLiteBackend
from rapid_dev_storage.testing import BackendConformance

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!-- not run: (.*\S)\s*-->$")
HEADING = re.compile(r"^(#{1,6}) (.*)$")
LINK = re.compile(r"\]\(([^)\s]+)\)")


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    language: str
    code: str
    not_run: str | None  # the reason given in the marker before it, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    opened: tuple[int, str, str | None] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if opened is None and fence:
            marker = NOT_RUN.match(lines[number - 2]) if number > 1 else None
            opened, body = (number, fence.group(1), marker.group(1) if marker else None), []
        elif opened is not None and line.startswith("```"):
            start, language, reason = opened
            found.append(Block(page, start, language, "\n".join(body) + "\n", reason))
            opened = None
        elif opened is not None:
            body.append(line)
    assert opened is None, f"{page.name}: a code block opened at line {opened[0]} never closes"
    return found


BLOCKS = [block for page in PAGES for block in read_blocks(page)]
PYTHON = [block for block in BLOCKS if block.language in ("python", "py")]


def kind(code: str) -> str | None:
    """Say which test runs a block of Python (None: none does)."""
    if re.search(r"^>>> ", code, re.MULTILINE):
        return "session"
    if "class SpecificStorage" in code:
        return "customizing"
    if "BackendConformance" in code:
        return "conformance"
    if "rapid_dev_storage_overlay" in code:
        return "pytest plugin"
    if "asyncio.run(" in code or "sync.open_storage(" in code:  # async, or the sync API
        return "script"
    return None


def examples(of_kind: str) -> list[Block]:
    return [block for block in PYTHON if block.not_run is None and kind(block.code) == of_kind]


def test_every_python_block_runs_or_says_why_not() -> None:
    assert len(PYTHON) >= 9, "the pages lost their examples"
    for block in PYTHON:
        if block.not_run is None:
            assert kind(block.code) is not None, f"{block.where}: no test runs this example"
    not_run = [block.where for block in PYTHON if block.not_run is not None]
    assert len(not_run) <= 2, f"keep the blocks that do not run few: {not_run}"


def expected_output(code: str) -> tuple[list[str], bool]:
    """Return what the ``print(...)  # output`` lines say, and whether every print says."""
    prints = [line for line in code.splitlines() if line.lstrip().startswith("print(")]
    said = [line.split("# ")[-1].strip() for line in prints if "# " in line]
    return said, len(said) == len(prints)


def script_params() -> list[Any]:
    params = []
    for block in examples("script"):
        marks = [requires_postgres] if "PostgresBackend" in block.code else []
        params.append(pytest.param(block, id=block.where, marks=marks))
    return params


@pytest.mark.parametrize("block", script_params())
def test_scripts_print_what_they_say(tmp_path: Path, block: Block) -> None:
    environment = dict(os.environ)
    if "PostgresBackend" in block.code:  # a server of its own: an empty schema
        environment["DATABASE_URL"] = asyncio.run(fresh_schema())
    result = subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    expected, every_print_says = expected_output(block.code)
    assert expected, "an example documents its output in comments"
    if every_print_says:
        assert printed == expected
    for line in expected:
        assert line in printed, (line, printed)


def test_the_readme_keeps_its_tour_and_live_reload() -> None:
    scripts = [block.code for block in examples("script") if block.page.name == "README.md"]
    assert len(scripts) == 2
    assert "users.all_items" in scripts[0]
    assert "settings.watch()" in scripts[1]


def test_backend_example_runs_the_suite(tmp_path: Path) -> None:
    (example,) = examples("conformance")
    namespace: dict[str, Any] = {"MyBackend": SQLiteBackend}
    exec(example.code, namespace)
    suite = namespace["TestMyBackend"]
    assert issubclass(suite, BackendConformance)
    suite().test_overwrite_replaces("json", tmp_path)


@dataclasses.dataclass
class User:
    uuid: str


def test_original_customizing_example_runs(tmp_path: Path) -> None:
    (example,) = examples("customizing")
    namespace: dict[str, Any] = {"User": User}
    exec(example.code, namespace)

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
    (session,) = examples("session")
    steps: list[tuple[str, list[str]]] = []
    for line in session.code.splitlines():
        if line.startswith(">>> "):
            steps.append((line[4:], []))
        elif steps and line.strip() and not line.startswith("#"):
            steps[-1][1].append(line)

    async def replay() -> None:
        namespace: dict[str, Any] = {}
        for source, expected in steps:
            output = io.StringIO()
            tree = ast.parse(source, mode="single")
            code = compile(tree, "<docs>", "single", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            with contextlib.redirect_stdout(output):
                result = eval(code, namespace)
                if asyncio.iscoroutine(result):
                    await result
            assert output.getvalue().splitlines() == expected, source
        await namespace["store"].close()  # the session never closes; Python 3.13 would warn

    asyncio.run(replay())


def test_pytest_plugin_example_passes_with_its_configuration(pytester: pytest.Pytester) -> None:
    (example,) = examples("pytest plugin")
    on_its_page = [block for block in BLOCKS if block.page == example.page]
    configuration = [block for block in on_its_page if block.language == "toml"]
    assert len(configuration) == 1, "the example's configuration is the page's toml block"
    fixture = ROOT / "fixtures" / "store"
    before = {path: path.read_bytes() for path in fixture.rglob("*") if path.is_file()}
    shutil.copytree(fixture, pytester.path / "fixtures" / "store")
    pytester.makefile(".toml", pyproject=configuration[0].code)
    pytester.makepyfile(test_example=example.code)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, warnings=0)
    assert {path: path.read_bytes() for path in fixture.rglob("*") if path.is_file()} == before
    copied = pytester.path / "fixtures" / "store"
    assert {p.relative_to(copied) for p in copied.rglob("*") if p.is_file()} == {
        p.relative_to(fixture) for p in before
    }, "the example's write went to its own layer, not to the fixture"


def anchors(page: Path) -> set[str]:
    """Return the anchors GitHub makes for a page's headings (outside code blocks)."""
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = HEADING.match(line)
        if heading and not fenced:
            text = heading.group(2).strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_links_land_on_pages_and_headings_that_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    outside_code = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    for target in LINK.findall(outside_code):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to missing {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: no heading for {target}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, page.name
