"""Shared by every test module: a plain run says why the PostgreSQL tests were skipped; and
a fixture that gives a test its own temporary directory for what the code under test keeps there.

pytest shows skip reasons only with ``-rs``; the README promises that a plain
``python -m pytest`` without a server says why its PostgreSQL tests were skipped. So the end of
the run says it: one line per reason, with the number of tests it skipped, instead of one line
per test.
"""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path

import pytest

POSTGRES_SETTING = "RAPID_DEV_STORAGE_TEST_POSTGRES"
"""Every PostgreSQL skip reason names the variable to set (and the _DIR one for restarts)."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many PostgreSQL tests were skipped for each reason."""
    reasons: collections.Counter[str] = collections.Counter()
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            if POSTGRES_SETTING in reason:
                reasons[reason] += 1
    for reason, count in reasons.most_common():
        tests = "test" if count == 1 else "tests"
        terminalreporter.write_line(f"{count} PostgreSQL {tests} skipped: {reason}")


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``TMPDIR`` (and this process's `tempfile`) into the test's own directory.

    ``edit`` keeps a person's text in the temporary directory when nothing could be written: a
    test that makes it do so must not leave those files in the machine's shared /tmp.
    """
    kept = tmp_path / "tmpdir"
    kept.mkdir()
    monkeypatch.setenv("TMPDIR", str(kept))
    monkeypatch.setattr(tempfile, "tempdir", str(kept))
    return kept
