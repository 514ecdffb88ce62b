"""Regenerate ``fixtures/store``, the sample store the tests use, from its source.

The source is ``rapid_dev_storage/sample_app.jsonl`` (one ``{"group", "keys", "value"}`` per
line, as ``rapid-dev-storage dump`` writes; it ships with the package for the demo): a small
app's users, settings and feature flags. The store is a FileBackend store in the JSON codec, so
git shows its records as readable diffs.

    python tools/make_fixtures.py [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from rapid_dev_storage import Storage
from rapid_dev_storage._demo import build_sample_store

STORE = Path(__file__).resolve().parent.parent / "fixtures" / "store"


async def build(root: Path) -> None:
    """Write the sample store under ``root``."""
    async with Storage(await build_sample_store(root)):
        pass


def differences(left: Path, right: Path) -> list[str]:
    """Return the files that differ between two trees (lock files aside)."""
    found = []
    comparison = filecmp.dircmp(left, right, ignore=[".locks"])
    found += [str(left / name) for name in comparison.left_only + comparison.right_only]
    found += [str(left / name) for name in comparison.diff_files]
    for name in comparison.common_dirs:
        found += differences(left / name, right / name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if fixtures/store is stale")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "store"
        asyncio.run(build(fresh))
        if arguments.check:
            stale = differences(STORE, fresh) if STORE.exists() else [str(STORE)]
            if stale:
                print("stale: " + ", ".join(stale), file=sys.stderr)
                sys.exit(1)
            return
        shutil.rmtree(STORE, ignore_errors=True)
        shutil.copytree(fresh, STORE, ignore=shutil.ignore_patterns(".locks"))
    print(f"wrote {STORE}")


if __name__ == "__main__":
    main()
