"""The benchmark still runs (with --quick); it is measured by people, never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
BENCH = TOOLS / "bench.py"


@pytest.mark.slow  # the quick benchmark: 5-15 s
def test_quick_benchmark_prints_every_row_and_target(tmp_path: Path) -> None:
    markdown, kept = tmp_path / "bench.md", tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--markdown", str(markdown), "--json", str(kept)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    subjects = ["FileBackend msgpack full", "SQLiteBackend fast", "MemoryBackend", "raw files"]
    subjects += ["plain sqlite3 FULL", "diskcache.Cache", "aiosqlite FULL"]
    for subject in subjects:
        assert subject in result.stdout
    target_lines = [
        line for line in result.stdout.splitlines() if line.startswith(("met ", "MISS"))
    ]
    assert len(target_lines) >= 14
    assert "| target | measured ratio | met |" in markdown.read_text(encoding="utf-8")
    # Two runs' ranges: the same run twice gives every ratio as a range of one value.
    ranges = subprocess.run(
        [sys.executable, str(TOOLS / "bench_ranges.py"), str(kept), str(kept)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "| target | ratio over 2 runs | met in |" in ranges
    for line in target_lines:
        ratio = line.split()[1].removesuffix("x")
        assert f"{ratio}-{ratio}x" in ranges, (line, ranges)
