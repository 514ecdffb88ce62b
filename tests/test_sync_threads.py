"""rapid_dev_storage.sync across threads, forks and processes; watching and subscribing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from rapid_dev_storage import Change, NoValue, UnsupportedOperationError, sync

THREADS = 8
OPERATIONS = 150


@pytest.mark.parametrize("url", ["file:{}", "sqlite:{}/app.db", "memory:"])
def test_eight_threads_share_one_store(tmp_path: Path, url: str) -> None:
    """Each thread owns some records (a dict model each) and all update one counter."""
    with sync.open_storage(url.format(tmp_path), "threads", 1) as store:
        group = store.get_group("T")
        counter = group["counter"]
        start = threading.Barrier(THREADS)
        failures: list[BaseException] = []

        def work(number: int) -> None:
            model: dict[str, Any] = {}
            try:
                start.wait()
                for step in range(OPERATIONS):
                    key = f"t{number}-{step % 7}"
                    if step % 5 == 4:
                        group[key].clear_value()
                        model.pop(key, None)
                    else:
                        group[key].set_value([number, step])
                        model[key] = [number, step]
                    counter.update(lambda n: (n or 0) + 1)
                    assert group[key].get_value() == model.get(key, NoValue)
                mine = {k[0]: v for k, v in group.all_items() if k[0].startswith(f"t{number}-")}
                assert mine == model
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert counter.get_value() == THREADS * OPERATIONS


def test_watch_is_a_plain_iterator_with_a_timeout(tmp_path: Path) -> None:
    with sync.open_storage(f"file:{tmp_path}", "w", 1) as store:
        handle = store.get_group("G")["k"]
        with handle.watch(timeout=0.3) as changes:
            handle.set_value(1)
            handle.clear_value()
            seen = [(change.kind, change.value, change.origin) for change in changes]
        assert seen == [("set", 1, "local"), ("cleared", NoValue, "local")]
        started = time.monotonic()
        assert list(store.watch("G", timeout=0.2)) == []  # nothing comes: ends after the timeout
        assert time.monotonic() - started >= 0.2


def test_closing_a_watch_from_another_thread_ends_its_iteration(tmp_path: Path) -> None:
    with sync.open_storage(f"file:{tmp_path}", "w", 1) as store:
        watch = store.watch().start()
        ended = threading.Event()
        seen: list[Change] = []

        def consume() -> None:
            seen.extend(watch)
            ended.set()

        consumer = threading.Thread(target=consume)
        consumer.start()
        store.get_group("G")["k"].set_value(1)
        while not seen:  # the consumer got the change: it now waits for the next
            assert consumer.is_alive()
            time.sleep(0.01)
        watch.close()
        assert ended.wait(10)
        consumer.join()
        assert [change.value for change in seen] == [1]


def test_closing_the_store_ends_watches_and_subscriptions(tmp_path: Path) -> None:
    store = sync.open_storage(f"file:{tmp_path}", "w", 1)
    calls: list[Change] = []
    subscription = store.subscribe(calls.append)
    watch = store.watch().start()
    done = threading.Event()
    threading.Thread(target=lambda: (list(watch), done.set())).start()
    store.close()
    assert done.wait(10)
    subscription.cancel()  # after the store: harmless


def test_subscribe_calls_back_on_a_thread_that_may_use_the_store(tmp_path: Path) -> None:
    with sync.open_storage(f"file:{tmp_path}", "s", 1) as store:
        settings = store.get_group("APP")["settings"]
        mirror = store.get_group("APP")["mirror"]
        mirrored = threading.Event()
        threads: set[str] = set()

        def on_change(change: Change) -> None:
            threads.add(threading.current_thread().name)
            if change.keys == ("settings",):
                if change.value == "boom":
                    raise RuntimeError("a failing callback stays subscribed")
                mirror.set_value(settings.get_value())  # the store, from the callback
            elif change.keys == ("mirror",) and change.value == {"theme": "dark"}:
                mirrored.set()

        subscription = store.subscribe(on_change, "APP")
        settings.set_value("boom")
        settings.set_value({"theme": "dark"})
        assert mirrored.wait(10)
        subscription.cancel()
        assert threads == {"rapid-dev-storage-subscription"}
        settings.set_value("after")
        assert mirror.get_value() == {"theme": "dark"}


def test_a_callback_that_closes_its_store_ends_the_subscription_quietly(tmp_path: Path) -> None:
    store = sync.open_storage(f"file:{tmp_path}", "s", 1)
    called = threading.Event()
    failures: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda hook: failures.append(hook.exc_value)  # type: ignore[assignment, misc]
    try:

        def closer(change: Change) -> None:
            store.close()
            called.set()

        subscription = store.subscribe(closer, "G")
        store.get_group("G")["a"].set_value(3)
        assert called.wait(10)
        subscription.join()
    finally:
        threading.excepthook = previous
    assert failures == []
    assert not subscription.running


def test_a_sync_watch_sees_another_process_write(tmp_path: Path) -> None:
    url = f"file:{tmp_path}?codec=json"
    program = (
        "import sys\n"
        "from rapid_dev_storage import sync\n"
        "with sync.open_storage(sys.argv[1], 'shared', 1) as store:\n"
        "    store.get_group('G')['from', 'child'].set_value({'pid': 1})\n"
    )
    with sync.open_storage(url, "shared", 1) as store, store.watch(timeout=30) as changes:
        subprocess.run([sys.executable, "-c", program, url], check=True, timeout=60)
        change = next(changes)
        assert (change.keys, change.value, change.origin) == (
            ("from", "child"),
            {"pid": 1},
            "external",
        )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_child_writes_and_the_parent_reads(tmp_path: Path) -> None:
    """A store opened before fork (gunicorn's preload) works in the child, opened anew there."""
    with sync.open_storage(f"file:{tmp_path}", "forked", 1) as store:
        group = store.get_group("G")
        group["parent"].set_value("before fork")
        reading, writing = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking a process that has threads: that is the point.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: report through the pipe, never return into pytest
            status = 1
            try:
                seen = group["parent"].get_value()
                group["child"].update(lambda _: {"saw": seen, "pid": os.getpid()})
                store.close()
                status = 0
            finally:
                os.write(writing, b"ok" if status == 0 else b"failed")
                os._exit(status)
        os.close(writing)
        with os.fdopen(reading, "rb") as pipe:
            assert pipe.read() == b"ok"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert group["child"].get_value() == {"saw": "before fork", "pid": pid}
        group["parent"].set_value("after fork")  # the parent's store is untouched
        assert group["parent"].get_value() == "after fork"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_watch_made_before_fork_refuses_the_child_instead_of_hanging(tmp_path: Path) -> None:
    """The watch's loop thread stayed in the parent: the child gets a clear error at once."""
    with sync.open_storage(f"file:{tmp_path}", "forked", 1) as store:
        group = store.get_group("G")
        changes = group.watch(timeout=5).start()
        subscription = store.subscribe(lambda change: None, "G")
        reading, writing = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # as in the test above
            pid = os.fork()
        if pid == 0:  # the child: report through the pipe, never return into pytest
            report = "failed"
            try:
                with pytest.raises(UnsupportedOperationError, match=r"made before os\.fork\(\)"):
                    next(changes)
                changes.close()  # does not wait for the parent's loop
                subscription.cancel()
                group["child"].set_value("written")  # the store itself opens again
                store.close()
                report = "ok"
            finally:
                os.write(writing, report.encode())
                os._exit(0)
        os.close(writing)
        with os.fdopen(reading, "rb") as pipe:
            assert pipe.read() == b"ok"
        os.waitpid(pid, 0)
        assert next(changes).keys == ("child",)  # the parent's watch goes on
        subscription.cancel()
        changes.close()


TYPED_EXAMPLE = """
from __future__ import annotations

from typing import Any

from rapid_dev_storage import Change, Keys, NoValue, sync


def count_logins(url: str, user: str) -> int:
    with sync.open_storage(url, "my app", 1, codec="json") as store:
        logins: sync.StorageValue = store.get_group("USER")[user, "logins"]
        total: Any = logins.update(lambda n: (n or 0) + 1)
        items: list[tuple[Keys, Any]] = list(store.get_group("USER").all_items(user))
        groups: list[str] = store.list_groups()
        changes: sync.Watch = logins.watch(timeout=0.1)
        for change in changes:
            seen: Change = change
            print(seen.kind)
        subscription: sync.Subscription = store.subscribe(print, "USER")
        subscription.cancel()
        assert logins.get_value() is not NoValue, (items, groups)
        return int(total)
"""


def mypy_strict(example: Path) -> subprocess.CompletedProcess[str]:
    # The package from this checkout (an editable install is invisible to mypy's finder),
    # checked with its own settings (which third-party modules have no types).
    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "MYPYPATH": str(root)}
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    command += ["--config-file", str(root / "pyproject.toml"), str(example)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=example.parent,
        env=environment,
    )


def test_code_using_the_sync_api_passes_mypy_strict(tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(TYPED_EXAMPLE)
    result = mypy_strict(example)
    assert result.returncode == 0, result.stdout
    example.write_text(TYPED_EXAMPLE.replace("logins.update(lambda", "logins.update(1, lambda"))
    result = mypy_strict(example)
    assert result.returncode == 1  # the types are checked, not Any
    assert "update" in result.stdout
