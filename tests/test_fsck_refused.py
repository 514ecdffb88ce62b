"""fsck reports every record a get refuses, as a get judges it, and --repair quarantines it.

Records made by hand in the layout docs/format.md gives (a map of "keys" and "value"): bytes
that decode, but hold what cannot be written back, so a get raises `CorruptRecordError`.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from rapid_dev_storage import CorruptRecordError, FileBackend, Storage


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


REFUSED = {
    "timestamp": msgpack.packb(
        {"keys": ["k"], "value": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)},
        datetime=True,
    ),
    "bin key": msgpack.packb({"keys": ["k"], "value": {b"bin": 1}}, use_bin_type=True),
    "too deep": msgpack.packb({"keys": ["k"], "value": nested(300)}, use_bin_type=True),
}


def fsck(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rapid_dev_storage", "fsck", f"file:{root}", "--json", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("what", list(REFUSED))
async def test_a_record_a_get_refuses_is_reported_and_quarantined(
    tmp_path: Path, what: str
) -> None:
    backend = await FileBackend.create_backend_instance(tmp_path, "app", 1, codec="msgpack")
    async with Storage(backend) as store:
        handle = store.get_group("G")["k"]
        await handle.set_value(1)
        path = Path(backend.record_path("G", ("k",)))
        path.write_bytes(REFUSED[what])
        with pytest.raises(CorruptRecordError):
            await handle.get_value()
    checked = fsck(tmp_path)
    assert checked.returncode == 1, checked
    [problem] = [json.loads(line) for line in checked.stdout.splitlines()]
    assert problem["kind"] == "undecodable"
    assert problem["path"] == str(path)
    assert "group 'G' keys ('k',)" in problem["detail"]
    assert "cannot be written back" in problem["detail"]
    repaired = fsck(tmp_path, "--repair")
    assert repaired.returncode == 0, repaired
    assert not path.exists()
    quarantined = list((Path(backend.location) / ".quarantine").rglob(path.name))
    assert [moved.read_bytes() for moved in quarantined] == [REFUSED[what]]
    assert fsck(tmp_path).returncode == 0
