"""The benchmark still runs (with --quick); it is measured by people, never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench.py"


def test_quick_benchmark_prints_every_row_and_target(tmp_path: Path) -> None:
    markdown = tmp_path / "bench.md"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--markdown", str(markdown)],
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
