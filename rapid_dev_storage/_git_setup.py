"""What ``rapid-dev-storage git-setup`` writes: git's config and ``.gitattributes`` for stores.

git learns two drivers named ``rapid-dev-storage`` in the repository's own config
(``.git/config``): a diff textconv (``show``: msgpack records read as JSON in ``git diff`` and
``git log -p``) and a merge driver (``merge-driver``: records merged by structure, `_merge_driver`).
Which files use them is said by ``.gitattributes`` lines, written in each store's own directory
(so the repository's other JSON files keep git's text merge), or in a directory a person names.
Running it again changes nothing: a line already there is not added twice, a config value is
replaced by the same one.

How git starts the tool is recorded per clone (``.git/config`` is never committed or shared; the
``.gitattributes`` that is shared holds no command). It is ``rapid-dev-storage`` by name when
the one on ``PATH`` is this installation: that survives rebuilding or moving the virtual
environment and follows whichever installation ``PATH`` gives. Otherwise it is this interpreter
by its absolute path (``python -m rapid_dev_storage``), quoted for the shell git runs drivers
with, so a path with spaces works. ``--command`` overrides both (a git GUI whose ``PATH`` lacks
the tool needs an absolute path).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from ._file_layout import MARKER

DRIVER = "rapid-dev-storage"
ATTRIBUTES = (
    f"*.json merge={DRIVER}",
    f"*.msgpack merge={DRIVER} diff={DRIVER}",
)
"""The ``.gitattributes`` lines for record files of both codecs."""
MERGE_ARGUMENTS = "merge-driver %O %A %B %L %P"
"""git fills in base, ours, theirs, the conflict marker size and the file's path (quoted)."""


class GitSetupError(Exception):
    """git-setup cannot do its work (the message says why and what to do)."""


@dataclasses.dataclass
class Setup:
    """What git-setup did: the repository, the command recorded, each attributes file."""

    top: Path
    command: str
    marked: list[tuple[Path, bool]]  # each .gitattributes, and whether lines were added to it


def repository_top(directory: Path) -> Path:
    """Return the top directory of the git repository holding ``directory``.

    Raises:
        GitSetupError: git is not installed, or ``directory`` is in no git repository.

    """
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise GitSetupError(f"cannot run git ({exc.strerror})") from exc
    if done.returncode != 0:
        raise GitSetupError(f"{directory} is not inside a git repository ({done.stderr.strip()})")
    return Path(done.stdout.strip())


def tool_command() -> str:
    """Return the shell command that starts this tool (see the module's docstring for why)."""
    found = shutil.which(DRIVER)
    scripts = sysconfig.get_path("scripts")
    if found is not None and Path(found).resolve().parent == Path(scripts).resolve():
        return DRIVER
    return f"{shlex.quote(sys.executable)} -m rapid_dev_storage"


def stores_in_repository(top: Path) -> list[Path]:
    """Return the directory of every file store in the repository, tracked or not, sorted.

    A store is found by its marker; files git ignores (a virtual environment, build output) are
    not looked at.
    """
    listing = ["ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    done = subprocess.run(
        ["git", "-C", str(top), *listing, "--", f":(glob)**/{MARKER}"],
        capture_output=True,
        check=True,
    )
    names = {os.fsdecode(name) for name in done.stdout.split(b"\0") if name}
    return sorted({(top / name).parent for name in names})


def add_attributes(directory: Path) -> bool:
    """Add the record files' lines to ``directory``'s ``.gitattributes``; True if any was added.

    Lines already there stay as they are, and are not added again.
    """
    directory.mkdir(parents=True, exist_ok=True)
    attributes = directory / ".gitattributes"
    existing = attributes.read_text(encoding="utf-8") if attributes.exists() else ""
    present = {line.strip() for line in existing.splitlines()}
    missing = [line for line in ATTRIBUTES if line not in present]
    if not missing:
        return False
    separator = "" if not existing or existing.endswith("\n") else "\n"
    added = "".join(f"{line}\n" for line in missing)
    attributes.write_text(f"{existing}{separator}{added}", encoding="utf-8")
    return True


def configure(top: Path, command: str) -> None:
    """Register the textconv and the merge driver in the repository's git config."""
    settings = {
        f"diff.{DRIVER}.textconv": f"{command} show",
        f"merge.{DRIVER}.name": "rapid_dev_storage records, merged by structure",
        f"merge.{DRIVER}.driver": f"{command} {MERGE_ARGUMENTS}",
    }
    for key, value in settings.items():
        subprocess.run(["git", "-C", str(top), "config", key, value], check=True)


def set_up(repository: Path, paths: list[Path], command: str | None = None) -> Setup:
    """Configure git in ``repository`` and mark ``paths``, or every store found in it.

    Raises:
        GitSetupError: not in a git repository, or a path outside it.

    """
    top = repository_top(repository)
    directories = [path.resolve() for path in paths] or stores_in_repository(top)
    for directory in directories:
        if not directory.is_relative_to(top.resolve()):
            raise GitSetupError(f"{directory} is outside the repository {top}: git ignores it")
    chosen = command or tool_command()
    configure(top, chosen)
    return Setup(top, chosen, [(directory, add_attributes(directory)) for directory in directories])
