"""Checking a file store for damage, and repairing it without ever deleting data.

What a person or a tool can leave in a store: records that do not decode, records under another
record's file name (copied or renamed by hand), temp files of killed writers, files and
directories that are not ours, a missing or broken marker. ``repair`` renames misnamed records,
sweeps orphaned temp files, and moves undecodable records and unknown files into ``.quarantine/``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Callable

from ._file import MARKER, TEMP_PREFIX, TEMP_SUFFIX, FileBackend, is_orphan_temp
from ._names import decode_name, key_digest
from .errors import CorruptRecordError

QUARANTINE = ".quarantine"


@dataclasses.dataclass
class Problem:
    """One thing wrong, and what repair did about it (empty when not repaired)."""

    kind: str  # undecodable, misnamed, orphan-temp, unknown-file, unknown-directory, marker
    path: str
    detail: str
    repaired: str = ""


def check(
    backend: FileBackend, *, repair: bool, on_file: Callable[[], object] = lambda: None
) -> list[Problem]:
    """Return every problem in ``backend``'s store directory, repairing what can be if asked.

    ``on_file`` is called once per file checked (a progress bar counts them).
    """
    root = backend.location
    problems: list[Problem] = []
    if not os.path.isfile(os.path.join(root, MARKER)):
        problems.append(
            Problem("marker", os.path.join(root, MARKER), "the store marker is missing")
        )
    now = time.time()
    for entry in sorted(os.scandir(root), key=lambda item: item.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            problems.append(Problem("unknown-file", entry.path, "not a group directory"))
            continue
        try:
            group = decode_name(entry.name)
        except ValueError:
            problems.append(
                Problem("unknown-directory", entry.path, "not a group name this library writes")
            )
            continue
        for record in sorted(os.scandir(entry.path), key=lambda item: item.name):
            problems += _check_file(backend, group, record.path, record.name, now)
            on_file()
    if repair:
        for problem in problems:
            problem.repaired = _repair(backend, problem)
    return problems


def _check_file(
    backend: FileBackend, group: str, path: str, name: str, now: float
) -> list[Problem]:
    if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
        if is_orphan_temp(name, path, now):
            return [Problem("orphan-temp", path, "a write its process never finished")]
        return []
    extension = backend.codec.extension
    if not (len(name) == 32 + len(extension) and name.endswith(extension)):
        return [Problem("unknown-file", path, "not a record file of this store")]
    with open(path, "rb") as file:
        data = file.read()
    try:
        backend._decode_record(group, None, data, path)
    except CorruptRecordError as exc:  # it decodes, but holds another record's keys
        return [Problem("misnamed", path, str(exc))]
    except Exception as exc:
        return [Problem("undecodable", path, f"does not decode as {backend.codec.name}: {exc}")]
    return []


def _repair(backend: FileBackend, problem: Problem) -> str:
    if problem.kind == "orphan-temp":
        os.unlink(problem.path)  # an unfinished copy of a record whose old version is intact
        return "removed"
    if problem.kind == "misnamed":
        return _rename_misnamed(backend, problem.path)
    if problem.kind in ("undecodable", "unknown-file", "unknown-directory"):
        return "moved to " + _quarantine(backend, problem.path)
    return ""  # a marker: only a person knows which store this was meant to be


def _rename_misnamed(backend: FileBackend, path: str) -> str:
    with open(path, "rb") as file:
        record = backend.codec.loads(file.read())
    keys = tuple(record["keys"])
    target = os.path.join(os.path.dirname(path), key_digest(keys) + backend.codec.extension)
    if os.path.exists(target):  # the record exists under its own name too: keep both
        return "moved to " + _quarantine(backend, path)
    os.rename(path, target)
    return f"renamed to {os.path.basename(target)}"


def _quarantine(backend: FileBackend, path: str) -> str:
    relative = os.path.relpath(path, backend.location)
    target = os.path.join(backend.location, QUARANTINE, relative)
    while os.path.exists(target):
        target += ".again"
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(path, target)
    return os.path.relpath(target, backend.location)
