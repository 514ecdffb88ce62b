"""The pytest plugin: each test sees the fixture store through its own fresh overlay."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store"

TESTS = """
import asyncio

import pytest


def test_writes_and_clears(rapid_dev_storage_overlay):
    async def body():
        async with rapid_dev_storage_overlay() as store:
            users = store.get_group("USER")
            await users["u1001", "settings"].set_value("mine")
            await users.clear_prefix("u1002")
            assert await users["u1001", "settings"].get_value() == "mine"
            assert [keys async for keys, _ in users.all_items("u1002")] == []

    asyncio.run(body())


def test_the_next_test_sees_the_fixture_again(rapid_dev_storage_overlay):
    async def body():
        async with rapid_dev_storage_overlay() as store:
            settings = await store.get_group("USER")["u1001", "settings"].get_value()
            assert settings["theme"] == "dark"
            assert len([k async for k, _ in store.get_group("USER").all_items("u1002")]) == 3

    asyncio.run(body())


@pytest.mark.rapid_dev_storage_fixtures("nowhere")
def test_a_marker_names_another_store(rapid_dev_storage_overlay):
    async def body():
        async with rapid_dev_storage_overlay():
            pass

    with pytest.raises(Exception, match="holds 0 matching stores"):
        asyncio.run(body())
"""


def test_each_test_gets_a_fresh_overlay(pytester: pytest.Pytester) -> None:
    before = {path: path.read_bytes() for path in FIXTURE.rglob("*") if path.is_file()}
    pytester.makeini(f"[pytest]\nrapid_dev_storage_fixtures = {FIXTURE}\n")
    pytester.makepyfile(test_with_overlays=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert {path: path.read_bytes() for path in FIXTURE.rglob("*") if path.is_file()} == before


def test_a_missing_configuration_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unconfigured="def test_it(rapid_dev_storage_overlay):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*rapid_dev_storage_fixtures*"])
    assert result.ret != 0
