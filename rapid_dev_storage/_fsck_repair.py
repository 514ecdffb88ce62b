"""What fsck --repair does about each problem `_fsck` finds, never deleting data.

A record under a name not its own (``alice.json``, a copied digest name, a directory made by
hand: ``USER/``) is put under its own name in its group's directory. The person's file never
overwrites another: where the record's file already exists, a copy of the same record is removed
(nothing is lost) and a different one is kept beside it as ``<name>.conflict<extension>``,
reported until a person keeps one. Only what does not decode, and what is not a file, goes
into ``.quarantine/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
import time

from ._codecs import Codec
from ._file import FileBackend
from ._file_io import Directory, read_file
from ._file_layout import (
    LOCK_DIRECTORY,
    QUARANTINE,
    conflict_copy_name,
    decode_record,
    encode_record,
    group_directory_name,
    hand_made_group,
    is_conflict_copy,
    is_leftover,
    is_temp_name,
    record_file_name,
)
from ._file_temps import abandoned_temp
from ._types import Keys


@dataclasses.dataclass
class Problem:
    """One thing wrong, and what repair did about it (empty when not repaired)."""

    kind: str  # undecodable, merge-conflict, unreadable, misnamed, conflict, hand-made-directory,
    # orphan-temp, unknown-file, unknown-directory, marker, symlink, not-a-file
    path: str
    detail: str
    repaired: str = ""


def repair(backend: FileBackend, problem: Problem) -> tuple[str, list[Problem]]:
    """Repair ``problem`` if it can be; return what was done, and any problem it leaves."""
    if problem.kind in _MOVES:
        return _MOVES[problem.kind](backend, problem.path)
    return _remove_or_quarantine(backend, problem), []


def _remove_or_quarantine(backend: FileBackend, problem: Problem) -> str:
    """Remove what is certainly not data, quarantine what does not decode; say which."""
    if problem.kind == "orphan-temp":
        # An unfinished copy of a record whose old version is intact; its lock is checked
        # again, in case a writer took the name meanwhile (it cannot: names are random).
        with Directory(os.path.dirname(problem.path)) as directory:
            name = os.path.basename(problem.path)
            return "removed" if abandoned_temp(directory, name, time.time(), remove=True) else ""
    if problem.kind == "symlink" and os.path.dirname(problem.path) == os.path.join(
        backend.location, LOCK_DIRECTORY
    ):
        os.unlink(problem.path)  # a lock file's name: the link itself goes, it is made again
        return "removed"
    if problem.kind == "unknown-directory" and not os.listdir(problem.path):
        os.rmdir(problem.path)  # holds nothing at all
        return "removed: it was empty"
    quarantined = ("undecodable", "unknown-file", "unknown-directory", "symlink", "not-a-file")
    if problem.kind in quarantined:
        moved = _quarantine(backend, problem.path)
        return "" if moved is None else "moved to " + moved
    return ""  # a marker: only a person knows which store this was meant to be; a conflict


def _rename_misnamed(backend: FileBackend, path: str) -> tuple[str, list[Problem]]:
    return place_record(backend, path, os.path.dirname(path))


def clash(codec: Codec, data: bytes, target: str) -> bytes | None:
    """Return the bytes of the record file ``target`` if it holds another record than ``data``.

    None: there is no such file. Empty: it holds the same keys and value (written alike, or
    laid out differently by hand: nothing would be lost without the copy). Raises what
    reading it raises.
    """
    existing = read_file(target)
    if existing is None or existing == data:
        return None if existing is None else b""
    try:
        same = _canonical(codec, existing) == _canonical(codec, data)
    except Exception:  # the record's own file does not decode: reported on its own
        same = False
    return b"" if same else existing


def _canonical(codec: Codec, data: bytes) -> bytes:
    """Return ``data``'s record as a writer writes it (``1`` and ``1.0`` stay apart)."""
    return encode_record(codec, *decode_record(codec, data))


def conflict_detail(path: str, keys: Keys, target: str) -> str:
    """Return what to say of ``path``, a copy of the record ``keys`` that differs from its file."""
    return (
        f"holds the record of keys {list(keys)!r} differently from its file {target} (the one "
        "reads use): keep one of them and delete the other"
    )


def place_record(backend: FileBackend, path: str, directory: str) -> tuple[str, list[Problem]]:
    """Put the record file ``path`` under its own name in the group directory ``directory``."""
    extension = backend.codec.extension
    data = read_file(path) or b""
    keys = decode_record(backend.codec, data)[0]
    target = os.path.join(directory, record_file_name(keys, extension))
    if target == path:
        return "", []
    where = os.path.relpath(target, backend.location)
    differing = clash(backend.codec, data, target)
    if differing is None:
        if _move_without_overwriting(path, target):
            same = os.path.dirname(path) == directory
            return (f"renamed to {os.path.basename(target)}" if same else f"moved to {where}"), []
        differing = clash(backend.codec, data, target)  # written meanwhile
    if differing == b"":
        os.unlink(path)  # the same record stays under its own name: nothing is lost
        return f"removed: the same record as {where}", []
    if os.path.dirname(path) == directory and is_conflict_copy(os.path.basename(path), extension):
        return "", []  # kept from an earlier repair: a person decides
    name = conflict_copy_name(
        os.path.basename(path),
        extension,
        lambda name: os.path.lexists(os.path.join(directory, name)),
    )
    kept = os.path.join(directory, name)
    if not _move_without_overwriting(path, kept):
        return "", []
    left = Problem("conflict", kept, conflict_detail(kept, keys, target))
    return f"kept as {os.path.relpath(kept, backend.location)}: it differs from {where}", [left]


def _move_without_overwriting(source: str, target: str) -> bool:
    """Rename ``source`` to ``target`` unless something is there; return whether it moved."""
    try:
        os.link(source, target, follow_symlinks=False)  # fails, atomically, if target exists
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(target):  # no hard links here: check, then rename
            return False
        os.rename(source, target)
        return True
    os.unlink(source)
    return True


def _empty_hand_made_directory(backend: FileBackend, path: str) -> tuple[str, list[Problem]]:
    """Move the records of the directory ``path``, made by hand, into their group's directory.

    Then remove ``path`` if nothing is left in it (an editor's swap file keeps it there).
    """
    group = hand_made_group(os.path.basename(path)) or ""
    directory = os.path.join(backend.location, group_directory_name(group))
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory)
    if os.path.islink(directory) or not os.path.isdir(directory):
        return "", []  # reported as a problem of its own; nothing is moved through a link
    done: dict[str, int] = {}
    left: list[Problem] = []
    with Directory(path) as listing:
        names = sorted(listing.names())
    for name in names:
        file = os.path.join(path, name)
        try:
            regular = stat.S_ISREG(os.lstat(file).st_mode)
        except OSError:
            continue  # gone meanwhile
        if is_leftover(name) or is_temp_name(name) or not regular:
            continue  # an editor's, or reported as a problem of its own
        try:
            what, problems = place_record(backend, file, directory)
        except Exception:  # does not decode: reported, and quarantined, as its own problem
            continue
        if what:
            outcome = what.split(" ")[0].rstrip(":")  # moved, removed or kept
            done[outcome] = done.get(outcome, 0) + 1
        left += problems
    if not done:
        return "", left  # nothing of it was a record: as fsck reported it
    to = os.path.relpath(directory, backend.location)
    said = {"moved": "moved", "removed": "already there (removed)", "kept": "kept as .conflict"}
    text = f"into {to}: " + ", ".join(
        f"{done[what]} {words}" for what, words in said.items() if what in done
    )
    try:
        os.rmdir(path)
    except OSError:  # not empty: what is left stays, for a person
        left.append(still_there(path, sorted(os.listdir(path))))
        return f"{text}; the directory stays", left
    return f"{text}; the directory is removed", left


def still_there(path: str, names: list[str]) -> Problem:
    """Return the problem of a directory made by hand that holds no record, but ``names``."""
    detail = (
        f"made by hand for group {os.path.basename(path)!r}, it holds no record, only "
        f"{names}: an editor's files stay where they are; remove it once the editor is closed"
    )
    return Problem("hand-made-directory", path, detail)


_MOVES = {"misnamed": _rename_misnamed, "hand-made-directory": _empty_hand_made_directory}
"""Repairs that put records under their own names."""


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
