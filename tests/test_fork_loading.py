"""A fork while a file store loads its write machinery: the child still writes (real fork).

A store's first write imports the write modules on the loop's thread (start-up is measured: a
`get` never loads them). An attacker forked while that import ran: the child had the module
half made, and its writes failed ("partially initialized module") or hung for good. Forks now
wait until a lazy import is done (`_threads.loading`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, os, signal, sys, threading
    from rapid_dev_storage import sync

    # The import of the write machinery is held until the fork has happened (or for at most
    # FORK_WAIT seconds: with forks waiting for imports, it never happens meanwhile).
    FORK_WAIT = 2.0
    started, fork_asked, forked = threading.Event(), threading.Event(), threading.Event()

    class Held(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "rapid_dev_storage._file_jobs":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                started.set()
                fork_asked.wait(FORK_WAIT)
                forked.wait(FORK_WAIT)
                run(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Held())
    os.register_at_fork(before=fork_asked.set, after_in_parent=forked.set)
    store = sync.open_storage(f"file:{sys.argv[1]}?codec=msgpack", "fork", 1)
    group = store.get_group("G")
    group["r"].get_value()  # used once, by a read: the write machinery is not loaded yet
    first = threading.Thread(target=lambda: group["p"].set_value("parent"))
    first.start()
    started.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)  # without the fix some children hung for good
        try:
            group["c"].set_value("child")
            os._exit(0 if group["c"].get_value() == "child" else 3)
        except BaseException as exc:
            print("child:", type(exc).__name__, exc, file=sys.stderr)
            os._exit(4)
    first.join()
    _, status = os.waitpid(pid, 0)
    store.close()
    print("signal" if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    """
)


def test_a_fork_during_a_stores_first_write_leaves_the_child_able_to_write(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "store")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", result.stderr
