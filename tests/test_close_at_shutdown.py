"""A store whose close is under way when asyncio.run's main returns is released whole.

asyncio.run cancels the tasks left at its end; the task releasing a closing store refuses
(`_release_task`), so the shutdown waits for it. In a real process: no thread of the store left
running, no descriptor of a file in the store left open.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = """
import asyncio, json, os, sys, threading
from rapid_dev_storage import FileBackend, SQLiteBackend, Storage

root, kind = sys.argv[1], sys.argv[2]

async def main() -> None:
    if kind == "file":
        backend = await FileBackend.create_backend_instance(root, "app", 1)
    else:
        backend = await SQLiteBackend.create_backend_instance(
            os.path.join(root, "app.db"), "app", 1
        )
    store = Storage(backend)
    for number in range(50):
        await store.get_group("G")[f"k{number}"].set_value(number)
    asyncio.ensure_future(store.close())  # main returns while the close is under way
    await asyncio.sleep(0)

asyncio.run(main())
open_files = []
for fd in os.listdir("/proc/self/fd"):
    try:
        open_files.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
print(json.dumps({
    "threads": [t.name for t in threading.enumerate() if t is not threading.main_thread()],
    "open": sorted(path for path in open_files if path.startswith(root)),
}))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists descriptors in /proc")
@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_close_under_way_when_main_returns_releases_everything(tmp_path: Path, kind: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path), kind],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    left = json.loads(done.stdout)
    assert left == {"threads": [], "open": []}, left
