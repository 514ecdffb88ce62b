"""Shared by every test module: a plain run says why the PostgreSQL tests were skipped.

pytest shows skip reasons only with ``-rs``; the README promises that a plain
``python -m pytest`` without a server says why its PostgreSQL tests were skipped. So the end of
the run says it: one line per reason, with the number of tests it skipped, instead of one line
per test.
"""

from __future__ import annotations

import collections

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
