"""Checking a file store for damage, and repairing it without ever deleting data.

What a person or a tool can leave in a store: records that do not decode, records under another
record's file name (copied or renamed by hand), temp files of killed writers, files and
directories that are not ours, a missing or broken marker. ``repair`` renames misnamed records,
sweeps orphaned temp files, and moves undecodable records and unknown files into ``.quarantine/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import time
from typing import Callable

from ._file import FileBackend
from ._file_io import Directory, kind_of, read_file, read_in
from ._file_layout import (
    GITIGNORE,
    LOCK_DIRECTORY,
    MARKER,
    QUARANTINE,
    decode_record,
    group_of_directory,
    is_bookkeeping,
    is_record_name,
    is_temp_name,
    misnamed_record,
    record_file_name,
)
from ._file_temps import abandoned_temp


@dataclasses.dataclass
class Problem:
    """One thing wrong, and what repair did about it (empty when not repaired)."""

    kind: str  # undecodable, unreadable, misnamed, orphan-temp, unknown-file,
    # unknown-directory, marker, symlink, not-a-file
    path: str
    detail: str
    repaired: str = ""


def check(
    backend: FileBackend, *, repair: bool, on_file: Callable[[], object] = lambda: None
) -> list[Problem]:
    """Return every problem in ``backend``'s store directory, repairing what can be if asked.

    ``on_file`` is called once per file checked (a progress bar counts them). Links are
    reported and never followed; FIFOs and devices are reported and never opened.
    """
    root = backend.location
    problems = _bookkeeping_problems(root)
    now = time.time()
    for entry in sorted(os.scandir(root), key=lambda item: item.name):
        if is_bookkeeping(entry.name):
            continue
        if entry.is_symlink():
            problems.append(_link_problem(entry.path))
            continue
        if not entry.is_dir(follow_symlinks=False):
            problems.append(Problem("unknown-file", entry.path, "not a group directory"))
            continue
        group = group_of_directory(entry.name)
        if group is None:
            problems.append(
                Problem("unknown-directory", entry.path, "not a group name this library writes")
            )
            continue
        try:
            directory = Directory(entry.path)
        except FileNotFoundError:
            continue  # removed since it was listed
        except OSError as exc:
            problems.append(Problem("unreadable", entry.path, exc.strerror or str(exc)))
            continue
        with directory:
            for name in sorted(directory.names()):
                problems += _check_file(backend, group, directory, name, now)
                on_file()
    if repair:
        for problem in problems:
            problem.repaired = _repair(backend, problem)
    return problems


def _bookkeeping_problems(root: str) -> list[Problem]:
    """Return what is wrong with the marker, .gitignore, .locks and .quarantine."""
    problems: list[Problem] = []
    marker = os.path.join(root, MARKER)
    if not os.path.lexists(marker):
        problems.append(Problem("marker", marker, "the store marker is missing"))
    for name in (MARKER, GITIGNORE, LOCK_DIRECTORY, QUARANTINE):
        path = os.path.join(root, name)
        if os.path.islink(path):
            problems.append(_link_problem(path))
        elif name == LOCK_DIRECTORY and os.path.lexists(path) and not os.path.isdir(path):
            problems.append(Problem("not-a-file", path, "not a directory: the lock directory"))
    locks = os.path.join(root, LOCK_DIRECTORY)
    if os.path.isdir(locks) and not os.path.islink(locks):
        for entry in sorted(os.scandir(locks), key=lambda item: item.name):
            if entry.is_symlink():
                problems.append(_link_problem(entry.path))
            elif not entry.is_file(follow_symlinks=False):
                problems.append(Problem("not-a-file", entry.path, "not a lock file"))
    return problems


def _link_problem(path: str) -> Problem:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return Problem(
        "symlink",
        path,
        f"a symbolic link (to {target}): the store never follows links, so it is not used; "
        "put a real directory or file there",
    )


def _check_file(
    backend: FileBackend, group: str, directory: Directory, name: str, now: float
) -> list[Problem]:
    path = directory.join(name)
    try:
        status = directory.lstat(name)
    except FileNotFoundError:
        return []
    if stat.S_ISLNK(status.st_mode):
        return [_link_problem(path)]
    if is_temp_name(name) and stat.S_ISREG(status.st_mode):
        abandoned = abandoned_temp(directory, name, now, remove=False)
        return [Problem("orphan-temp", path, "a write its process never finished")] * abandoned
    if not stat.S_ISREG(status.st_mode):
        kind = kind_of(status.st_mode)
        return [Problem("not-a-file", path, f"a {kind}, not a record file")]
    if not is_record_name(name, backend.codec.extension):
        return [Problem("unknown-file", path, "not a record file of this store")]
    problem = _record_problem(backend, group, directory, name)
    return [] if problem is None else [problem]


def _record_problem(
    backend: FileBackend, group: str, directory: Directory, name: str
) -> Problem | None:
    """Return what is wrong with the bytes of a record file, if anything."""
    path = directory.join(name)
    try:
        data = read_in(directory, name) or b""
    except OSError as exc:  # not its content's fault: left where it is
        return Problem("unreadable", path, f"cannot be read: {exc.strerror or exc}")
    try:
        keys = decode_record(backend.codec, data)[0]
    except Exception as exc:
        return Problem("undecodable", path, f"does not decode as {backend.codec.name}: {exc}")
    extension = backend.codec.extension
    if record_file_name(keys, extension) != name:  # it decodes, but holds another record's keys
        return Problem("misnamed", path, str(misnamed_record(group, keys, path, extension)))
    return None


def _repair(backend: FileBackend, problem: Problem) -> str:
    if problem.kind == "orphan-temp":
        # An unfinished copy of a record whose old version is intact; its lock is checked
        # again, in case a writer took the name meanwhile (it cannot: names are random).
        with Directory(os.path.dirname(problem.path)) as directory:
            name = os.path.basename(problem.path)
            if abandoned_temp(directory, name, time.time(), remove=True):
                return "removed"
        return ""
    if problem.kind == "misnamed":
        return _rename_misnamed(backend, problem.path)
    if problem.kind == "symlink" and os.path.dirname(problem.path) == os.path.join(
        backend.location, LOCK_DIRECTORY
    ):
        os.unlink(problem.path)  # a lock file's name: the link itself goes, it is made again
        return "removed"
    quarantined = ("undecodable", "unknown-file", "unknown-directory", "symlink", "not-a-file")
    if problem.kind in quarantined:
        moved = _quarantine(backend, problem.path)
        return "" if moved is None else "moved to " + moved
    return ""  # a marker: only a person knows which store this was meant to be


def _rename_misnamed(backend: FileBackend, path: str) -> str:
    keys = decode_record(backend.codec, read_file(path) or b"")[0]
    target = os.path.join(os.path.dirname(path), record_file_name(keys, backend.codec.extension))
    if os.path.lexists(target):  # the record exists under its own name too: keep both
        moved = _quarantine(backend, path)
        return "" if moved is None else "moved to " + moved
    os.rename(path, target)
    return f"renamed to {os.path.basename(target)}"


def _quarantine(backend: FileBackend, path: str) -> str | None:
    """Move ``path`` (a link itself, never its target) into the store's quarantine.

    Return where it went, or None when the way there is not safe (a link in .quarantine: that
    is reported as a problem of its own, and nothing is moved through it).
    """
    root = backend.location
    target = os.path.join(root, QUARANTINE, os.path.relpath(path, root))
    folder = root
    for part in os.path.relpath(os.path.dirname(target), root).split(os.sep):
        folder = os.path.join(folder, part)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
        if os.path.islink(folder) or not os.path.isdir(folder):
            return None
    while os.path.lexists(target):
        target += ".again"
    os.rename(path, target)
    return os.path.relpath(target, root)
