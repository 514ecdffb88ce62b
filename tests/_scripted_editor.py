"""A scripted $EDITOR for the edit tests: each run takes the next step of a plan.

The plan is a JSON list in a file; a step may first write the record from this other process
(``elsewhere``, into the store at ``store``: a file store's directory, or an SQLite file with
``"sqlite": true``), the way a colleague's script would while the person is still typing, then
write, or replace text in, the file it was given, and exit with ``status``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

EDITOR = """
import asyncio, json, sys
from pathlib import Path
plan_file, target = Path(sys.argv[1]), Path(sys.argv[2])
plan = json.loads(plan_file.read_text())
step = plan.pop(0)
plan_file.write_text(json.dumps(plan))
Path(str(plan_file) + ".seen").open("a").write(json.dumps(target.read_text()) + "\\n")
if "elsewhere" in step:
    from rapid_dev_storage import FileBackend, SQLiteBackend, Storage
    async def write():
        kind = SQLiteBackend if step.get("sqlite") else FileBackend
        backend = await kind.create_backend_instance(step["store"], "app", 1)
        async with Storage(backend) as store:
            await store.get_group("USER")["u1"].set_value(step["elsewhere"])
    asyncio.run(write())
if "write" in step:
    target.write_text(step["write"])
if "replace" in step:
    old, new = step["replace"]
    target.write_text(target.read_text().replace(old, new))
sys.exit(step.get("status", 0))
"""


class Editor:
    """The editor command (``command``) and what it saw, for one plan of ``steps``."""

    def __init__(self, tmp_path: Path, steps: list[dict[str, Any]]) -> None:
        self.plan = tmp_path / "plan.json"
        self.plan.write_text(json.dumps(steps))
        Path(f"{self.plan}.seen").unlink(missing_ok=True)
        script = tmp_path / "editor.py"
        script.write_text(EDITOR)
        self.command = [sys.executable, str(script), str(self.plan)]

    @property
    def seen(self) -> list[str]:
        """The text the editor was opened on, each time."""
        seen = Path(f"{self.plan}.seen")
        return [json.loads(line) for line in seen.read_text().splitlines()] if seen.exists() else []

    @property
    def steps_left(self) -> int:
        return len(json.loads(self.plan.read_text()))
