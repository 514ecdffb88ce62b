"""`_threads.alone`: a write checks the caller's value itself only where no other thread can run.

A write's check of a medium msgpack value (over 4 KiB) walks the value instead of decoding a
copy of its snapshot only while every other thread is one of ours that runs no program code
(`_threads.runs_no_program_code`). Run in a fresh interpreter each: pytest's own threads must
not decide the answer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import asyncio, sys, threading
from rapid_dev_storage import open_storage
from rapid_dev_storage import _coding, _threads

copies = []
real = _coding.RecordCoding._encode_snapshot
def counted(self, *args, **kwargs):
    copies.append(1)
    return real(self, *args, **kwargs)
_coding.RecordCoding._encode_snapshot = counted

ROWS = {str(i): {"a": i, "b": "x" * 20} for i in range(400)}  # about 14 KB of msgpack

async def main(path):
    files = await open_storage("file:" + path, "alone", 1)
    sql = await open_storage("sqlite:" + path + "/db.sqlite", "alone", 1)
    for storage in (files, sql):
        group = storage.get_group("G")
        await group["k"].set_value(ROWS)  # starts writer / worker threads
        await group["k"].set_value(ROWS)
        assert await group["k"].get_value() == ROWS
        [item async for item in group.all_items()]
    print("ours only", _threads.alone(), len(copies))
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    print("another", _threads.alone())
    await files.get_group("G")["k"].set_value(ROWS)
    print("copies", len(copies))
    release.set()
    other.join()
    print("after", _threads.alone())
    import signal
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    print("handler", _threads.alone())
    signal.signal(signal.SIGUSR1, previous)
    sys.settrace(lambda *_: None)
    traced = _threads.alone()
    sys.settrace(None)
    print("trace", traced, _threads.alone())
    for storage in (files, sql):
        await storage.close()

asyncio.run(main(sys.argv[1]))
"""


def test_alone_sees_our_threads_only_and_any_other(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # With only our writer, worker and one-off threads, the value is walked: no copy decoded.
    assert lines[0] == "ours only True 0"
    # Another thread of the program's: it could change the value, so the snapshot's copy is checked.
    assert lines[1] == "another False"
    assert lines[2] == "copies 1"
    assert lines[3] == "after True"
    # A signal handler of the program's runs between any two steps of the main thread; so
    # does a trace function. asyncio.run's own SIGINT handler (this script's) changes nothing.
    assert lines[4] == "handler False"
    assert lines[5] == "trace False True"
