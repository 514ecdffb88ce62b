"""``rapid-dev-storage git-setup`` in real repositories: what it writes, where, how git runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from _git_repo import git, open_store, tool

LINES = "*.json merge=rapid-dev-storage\n*.msgpack merge=rapid-dev-storage diff=rapid-dev-storage\n"


async def two_stores(repository: Path) -> list[Path]:
    git(repository, "init", "-q", "-b", "main")
    async with await open_store(repository, "json"):
        pass
    async with await open_store(repository / "nested" / "more", "msgpack"):
        pass
    return [repository / "data" / "app~1", repository / "nested" / "more" / "data" / "app~1"]


def attribute(repository: Path, name: str, path: str) -> str:
    return git(repository, "check-attr", name, "--", path).stdout.rsplit(": ", 1)[1].strip()


async def test_each_store_is_marked_once_and_other_json_is_left_alone(tmp_path: Path) -> None:
    stores = await two_stores(tmp_path)
    first = tool(tmp_path, "git-setup")
    assert first.returncode == 0, first.stderr
    for store in stores:
        assert (store / ".gitattributes").read_text() == LINES
        assert f"{store / '.gitattributes'}: written" in first.stdout
    assert not (tmp_path / ".gitattributes").exists()
    assert attribute(tmp_path, "merge", "package.json") == "unspecified"
    assert attribute(tmp_path, "merge", "data/app~1/^user/x.json") == "rapid-dev-storage"
    msgpack_record = "nested/more/data/app~1/^user/x.msgpack"
    assert attribute(tmp_path, "merge", msgpack_record) == "rapid-dev-storage"
    assert attribute(tmp_path, "diff", msgpack_record) == "rapid-dev-storage"
    config = git(tmp_path, "config", "--get-regexp", "rapid-dev-storage").stdout
    second = tool(tmp_path, "git-setup")
    assert second.returncode == 0, second.stderr
    assert "already there" in second.stdout
    for store in stores:
        assert (store / ".gitattributes").read_text() == LINES
    assert git(tmp_path, "config", "--get-regexp", "rapid-dev-storage").stdout == config
    assert config.count("\n") == 3  # textconv, merge name, merge driver: once each


def test_a_named_path_is_marked_even_before_it_holds_a_store(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / ".gitattributes").write_text("*.bin binary")  # no final newline
    done = tool(tmp_path, "git-setup", "--path", "fixtures", "--path", "later")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fixtures" / ".gitattributes").read_text() == "*.bin binary\n" + LINES
    assert (tmp_path / "later" / ".gitattributes").read_text() == LINES


def test_nothing_to_mark_and_no_repository_say_so(tmp_path: Path) -> None:
    outside = tool(tmp_path, "git-setup")
    assert outside.returncode == 2
    assert "not inside a git repository" in outside.stderr
    git(tmp_path, "init", "-q")
    empty = tool(tmp_path, "git-setup")
    assert empty.returncode == 1
    assert "--path DIR" in empty.stderr
    assert "merge-driver" in git(tmp_path, "config", "merge.rapid-dev-storage.driver").stdout
    elsewhere = tool(tmp_path, "git-setup", "--path", str(tmp_path.parent))
    assert elsewhere.returncode == 2
    assert "outside the repository" in elsewhere.stderr


def test_git_starts_the_tool_by_name_when_path_gives_this_one(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    scripts = sysconfig.get_path("scripts")
    assert Path(scripts, "rapid-dev-storage").exists()
    on_path = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    tool(tmp_path, "git-setup", env=on_path)
    driver = git(tmp_path, "config", "merge.rapid-dev-storage.driver").stdout.strip()
    assert driver == "rapid-dev-storage merge-driver %O %A %B %L %P"
    elsewhere = {**os.environ, "PATH": os.pathsep.join(("/usr/bin", "/bin"))}
    tool(tmp_path, "git-setup", env=elsewhere)
    driver = git(tmp_path, "config", "merge.rapid-dev-storage.driver").stdout.strip()
    assert driver == f"{sys.executable} -m rapid_dev_storage merge-driver %O %A %B %L %P"
    tool(tmp_path, "git-setup", "--command", "uvx rapid-dev-storage")
    textconv = git(tmp_path, "config", "diff.rapid-dev-storage.textconv").stdout.strip()
    assert textconv == "uvx rapid-dev-storage show"


def set_record(repository: Path, value: Any) -> Any:
    """Set the msgpack store's one record (if ``value`` is given); return what it holds."""

    async def work() -> Any:
        async with await open_store(repository, "msgpack") as store:
            if value is not None:
                await store.get_group("USER")["u1"].set_value(value)
            return await store.get_group("USER")["u1"].get_value()

    return asyncio.run(work())


def test_an_interpreter_in_a_path_with_spaces_diffs_and_merges(tmp_path: Path) -> None:
    """A virtual environment under "my tools/": git runs the quoted interpreter."""
    environment = tmp_path / "my tools" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    python = environment / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # This checkout and its dependencies, without installing anything.
    ours = sysconfig.get_path("purelib")
    checkout = Path(__file__).resolve().parents[1]
    Path(site, "rapid_dev_storage_test.pth").write_text(f"{checkout}\n{ours}\n")
    repository = tmp_path / "repo"
    repository.mkdir()
    git(repository, "init", "-q", "-b", "main")
    set_record(repository, {"a": 1, "b": 1})
    command = [str(python), "-m", "rapid_dev_storage", "git-setup"]
    done = subprocess.run(command, cwd=repository, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"'{python}' -m rapid_dev_storage" in done.stdout
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", "base")
    git(repository, "checkout", "-q", "-b", "other")
    set_record(repository, {"a": 1, "b": 2})
    diff = git(repository, "diff").stdout
    assert '-    "b": 1\n+    "b": 2' in diff  # the textconv: msgpack shown as JSON
    git(repository, "commit", "-q", "-am", "theirs")
    git(repository, "checkout", "-q", "main")
    set_record(repository, {"a": 2, "b": 1})
    git(repository, "commit", "-q", "-am", "ours")
    merged = git(repository, "merge", "-q", "--no-edit", "other", check=False)
    assert merged.returncode == 0, merged.stderr
    assert set_record(repository, None) == {"a": 2, "b": 2}
