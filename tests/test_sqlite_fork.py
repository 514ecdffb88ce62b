"""A SQLite store forked in the middle of its work: the child writes (real processes, os.fork).

SQLite keeps a file's lock bookkeeping in process memory; a fork while one of the store's
connections held a lock copied it into the child, which then could never write the file
(LockTimeoutError, even after the parent closed). Forks now wait for the store to be between
operations. The forks here land at random points of a busy store, several times each, so
without that wait at least one child fails.
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Callable

import pytest

from rapid_dev_storage import sync

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

CHILDREN = 20
CHILD_DEADLINE = 10
"""Seconds a child may take: without the fix some hung for ever (inside SQLite, on a mutex
the parent's thread held at the fork), others failed."""


def _child(go: int, done: int, store: sync.Storage, path: Path, index: int) -> None:
    """In a child: wait for the parent's word, write, then check no lock is left held."""
    report = b"failed"
    try:
        os.read(go, 1)  # the parent has stopped and closed its store by now
        record = store.get_group("G")["c"]
        for step in range(5):
            record.set_value(1000 * index + step)
        store.close()
        # A lock the parent's connections held at the fork would still count as held here:
        # a checkpoint that empties the WAL needs every one free.
        connection = sqlite3.connect(path, timeout=1)
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        connection.close()
        report = b"ok" if busy == 0 else b"checkpoint busy"
    except Exception as exc:  # reported through the pipe: a child never returns into pytest
        report = f"{type(exc).__name__}: {exc}".encode()
    finally:
        os.write(done, report)
        os._exit(0)


def _hear_from(pid: int, go: int, done: int) -> str:
    """Let a child go and return its report; a child that hangs is killed ("hung")."""
    try:
        os.write(go, b"!")
        with os.fdopen(done, "rb") as pipe:
            if select.select([pipe], [], [], CHILD_DEADLINE)[0]:
                return pipe.read().decode()
            os.kill(pid, signal.SIGKILL)
            return "hung"
    finally:
        os.close(go)
        os.waitpid(pid, 0)


@pytest.mark.parametrize(
    ("durability", "work"),
    [
        ("full", lambda record: record.update(lambda value: value + 1)),  # the worker writes
        ("fast", lambda record: record.set_value(1)),  # the loop's thread writes inline
        ("full", lambda record: record.get_value()),  # the loop's thread reads inline
    ],
    ids=["worker-updates", "inline-writes", "inline-reads"],
)
def test_children_forked_while_the_store_works_can_write(
    tmp_path: Path, durability: str, work: Callable[[sync.StorageValue], object]
) -> None:
    path = tmp_path / "db.sqlite"
    store = sync.open_storage(f"sqlite:{path}", "app", 1, durability=durability, lock_timeout=1)
    record = store.get_group("G")["c"]
    record.set_value(0)
    stop = threading.Event()

    def keep_working() -> None:
        while not stop.is_set():
            work(record)

    worker = threading.Thread(target=keep_working)
    worker.start()
    children: list[tuple[int, int, int]] = []
    try:
        for index in range(CHILDREN):
            go_read, go_write = os.pipe()
            done_read, done_write = os.pipe()
            stop.wait(0.01)  # let the work go on between forks
            with warnings.catch_warnings():
                # Python 3.12+ warns about forking a process that has threads: that is the point.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                for _, earlier_go, earlier_done in children:  # so a parent's exit ends us
                    os.close(earlier_go)
                    os.close(earlier_done)
                _child(go_read, done_write, store, path, index)
            os.close(go_read)
            os.close(done_write)
            children.append((pid, go_write, done_read))
    finally:
        stop.set()
        worker.join()
        store.close()
    # One at a time, so that children do not wait for each other's locks.
    reports = [_hear_from(*child) for child in children]
    assert reports == ["ok"] * CHILDREN
