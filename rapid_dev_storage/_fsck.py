"""Checking a file store for damage, and repairing it without ever deleting data.

What a person or a tool can leave in a store: records that do not decode, records under a name
not their own (copied, renamed, or named by hand: ``alice.json``), directories made by hand
for a group (``USER/`` where the group lives in ``^user/``), temp files of killed writers,
files and directories that are not ours, a missing or broken marker. Editors' leftovers
(``.x.json.swp``, ``x.json~``, ``4913``, ``.DS_Store``) are neither reported nor touched.
What ``repair`` does about each is `_fsck_repair`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
import time
from typing import TYPE_CHECKING, Callable

from ._codecs import Codec
from ._coding import TOO_LARGE_TO_DECODE, conflict_message, record_label
from ._file import FileBackend
from ._file_io import Directory, kind_of, read_in
from ._file_layout import (
    GITIGNORE,
    LOCK_DIRECTORY,
    MARKER,
    QUARANTINE,
    decode_record,
    group_directory_name,
    group_of_directory,
    hand_made_group,
    is_conflict_copy,
    is_leftover,
    is_record_name,
    is_temp_name,
    record_file_name,
)
from ._file_temps import abandoned_temp
from ._fsck_repair import Problem, clash, conflict_detail, still_there
from ._fsck_repair import repair as repair_problem
from ._merge_text import has_conflict_markers
from ._types import Keys
from ._validate import unstorable_reason

if TYPE_CHECKING:
    from ._api import Storage

__all__ = ["Problem", "Report", "check", "check_records", "check_store"]


@dataclasses.dataclass
class Report:
    """What fsck found: each problem, and how many records (in how many groups) are fine."""

    problems: list[Problem]
    records: int = 0
    groups: int = 0

    @property
    def clean(self) -> bool:
        """Whether nothing is left to fix (every problem, if any, was repaired)."""
        return all(problem.repaired for problem in self.problems)

    def summary(self) -> dict[str, int]:
        """Return the counts the summary line gives."""
        repaired = sum(1 for problem in self.problems if problem.repaired)
        return {
            "groups": self.groups,
            "problems": len(self.problems),
            "records": self.records,
            "repaired": repaired,
        }

    def lines(self, *, as_json: bool) -> list[tuple[str, bool]]:
        """Return what to print, each line with whether it goes to stderr.

        A line per problem, then the summary (``--json``: a JSON object per problem on
        stdout, the summary's object on stderr, so stdout holds problems only).
        """
        printed: list[tuple[str, bool]] = []
        for problem in self.problems:
            if as_json:
                text = json.dumps(dataclasses.asdict(problem), ensure_ascii=False, sort_keys=True)
            else:
                done = f" -> {problem.repaired}" if problem.repaired else ""
                text = f"{problem.kind}: {problem.path}: {problem.detail}{done}"
            printed.append((text, False))
        counts = self.summary()
        if as_json:
            printed.append((json.dumps(counts, sort_keys=True), True))
        else:
            left = counts["problems"] - counts["repaired"]
            repaired = (
                f" (repaired: {counts['repaired']}, left: {left})" if counts["repaired"] else ""
            )
            text = f"records: {self.records}, groups: {self.groups}, problems: {len(self.problems)}"
            printed.append((text + repaired, False))
        return printed


def check(
    backend: FileBackend, *, repair: bool, on_file: Callable[[], object] = lambda: None
) -> Report:
    """Return every problem in ``backend``'s store directory, repairing what can be if asked.

    ``on_file`` is called once per file checked (a progress bar counts them). Links are
    reported and never followed; FIFOs and devices are reported and never opened.
    """
    root = backend.location
    report = Report(_bookkeeping_problems(root))
    now = time.time()
    for entry in sorted(os.scandir(root), key=lambda item: item.name):
        if is_leftover(entry.name):  # bookkeeping (a dot name) too
            continue
        if entry.is_symlink():
            report.problems.append(_link_problem(entry.path))
        elif not entry.is_dir(follow_symlinks=False):
            report.problems.append(Problem("unknown-file", entry.path, "not a group directory"))
        else:
            _check_directory(backend, entry.path, report, now, on_file)
    if repair:
        for problem in list(report.problems):
            try:
                problem.repaired, left = repair_problem(backend, problem)
            except Exception as exc:  # changed meanwhile, say: left as it is, and reported
                problem.detail += f" (repair failed: {exc})"
                continue
            report.problems += left
    return report


async def check_store(
    store: Storage, *, repair: bool, on_file: Callable[[], object] = lambda: None
) -> Report:
    """Return what fsck finds in ``store``: `check` for a file store, else `check_records`.

    A file store is checked file by file on a thread (and repaired if asked); any other
    backend holds only records, which are checked through the API (nothing to repair).
    ``on_file`` is called once per file or record checked.
    """
    backend = store.backend
    if isinstance(backend, FileBackend):
        return await asyncio.to_thread(check, backend, repair=repair, on_file=on_file)
    return await check_records(store, on_record=on_file)


async def check_records(
    store: Storage, *, on_record: Callable[[], object] = lambda: None
) -> Report:
    """Return a problem for each record of ``store`` that does not decode (any backend)."""
    report = Report([])
    for group_name in await store.list_groups():
        report.groups += 1
        async for _ in store.get_group(group_name).all_items(
            on_corrupt=lambda error: report.problems.append(
                Problem("undecodable", str(error.location), str(error))
            )
        ):
            report.records += 1
            on_record()
    return report


def _check_directory(
    backend: FileBackend, path: str, report: Report, now: float, on_file: Callable[[], object]
) -> None:
    """Check the store's directory ``path``: a group's, or one made by hand for a group."""
    name = os.path.basename(path)
    group = group_of_directory(name)
    made_by_hand = group is None
    if made_by_hand:
        group = hand_made_group(name)
        if group is None:
            report.problems.append(
                Problem("unknown-directory", path, "not a group name this library writes")
            )
            return
    assert group is not None
    try:
        directory = Directory(path)
    except FileNotFoundError:
        return  # removed since it was listed
    except OSError as exc:
        report.problems.append(Problem("unreadable", path, exc.strerror or str(exc)))
        return
    problems: list[Problem] = []
    records, leftovers = 0, []
    with directory:
        for file_name in sorted(directory.names()):
            on_file()
            if is_leftover(file_name) and not is_temp_name(file_name):
                leftovers.append(file_name)  # an editor's: a live vim swap file must stay
                continue
            found = _check_file(backend, group, directory, file_name, now, made_by_hand)
            if found is None:
                records += 1
            else:
                problems += found
    if not made_by_hand:
        report.problems += problems
        report.records += records
        report.groups += records > 0
    elif records:  # after its files' problems: their repair may empty it
        right = group_directory_name(group)
        detail = (
            f"a directory made by hand for group {group!r}, which lives in {right}: reads do "
            f"not look here, so its {records} records are not seen; --repair moves them there"
        )
        report.problems += [*problems, Problem("hand-made-directory", path, detail)]
    elif leftovers:  # never moved whole: it holds an editor's files
        report.problems += [*problems, still_there(path, leftovers)]
    else:
        detail = (
            f"not a group directory, and it holds no record (group {group!r} lives in "
            f"{group_directory_name(group)})"
        )
        report.problems.append(Problem("unknown-directory", path, detail))


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
    backend: FileBackend,
    group: str,
    directory: Directory,
    name: str,
    now: float,
    made_by_hand: bool,
) -> list[Problem] | None:
    """Return the problems of a group directory's file ``name``; None if it is a record.

    In a directory made by hand, a record is any file that decodes, whatever its name.
    """
    path = directory.join(name)
    try:
        status = directory.lstat(name)
    except FileNotFoundError:
        return []
    if is_temp_name(name) and stat.S_ISREG(status.st_mode):
        abandoned = abandoned_temp(directory, name, now, remove=False)
        return [Problem("orphan-temp", path, "a write its process never finished")] * abandoned
    if stat.S_ISLNK(status.st_mode):
        return [_link_problem(path)]
    if not stat.S_ISREG(status.st_mode):
        kind = kind_of(status.st_mode)
        return [Problem("not-a-file", path, f"a {kind}, not a record file")]
    return _record_problem(backend, group, directory, name, made_by_hand)


def _record_problem(
    backend: FileBackend, group: str, directory: Directory, name: str, made_by_hand: bool
) -> list[Problem] | None:
    """Return what is wrong with a file's bytes and name, if anything; None if nothing."""
    path = directory.join(name)
    codec = backend.codec
    try:
        data = read_in(directory, name)
    except OSError as exc:  # not its content's fault: left where it is
        return [Problem("unreadable", path, f"cannot be read: {exc.strerror or exc}")]
    if data is None:
        return []  # removed since it was listed
    try:
        keys, value = decode_record(codec, data)
    except Exception as exc:
        return [_undecodable(path, name, data, codec, exc)]
    reason = unstorable_reason(codec, data, value)  # a get's rule: it would refuse the record
    if reason is not None:
        detail = (
            f"the record of {record_label(group, keys)} holds what cannot be written back, "
            f"so reads refuse it: {reason}"
        )
        return [Problem("undecodable", path, detail)]
    own = record_file_name(keys, codec.extension)
    if made_by_hand or own == name:
        return None
    return [_misnamed(directory, path, data, keys, own, codec)]


def _undecodable(path: str, name: str, data: bytes, codec: Codec, exc: Exception) -> Problem:
    """Return the problem of a file that does not decode (``exc`` says why)."""
    if isinstance(exc, MemoryError):  # not damaged: too large for this process; left in place
        return Problem("unreadable", path, f"{TOO_LARGE_TO_DECODE} {codec.name}: {exc}")
    if has_conflict_markers(data):
        # A merge in progress: a person settles it; --repair never moves it away.
        todo = f"{conflict_message(path)} (or `rapid-dev-storage resolve {path}`)"
        return Problem("merge-conflict", path, todo)
    if is_record_name(name, codec.extension):
        return Problem("undecodable", path, f"does not decode as {codec.name}: {exc}")
    # Quarantine is for what does not decode: a person's notes.txt too, never a record.
    reason = f"not a record file of this store: it does not decode as {codec.name} ({exc})"
    return Problem("unknown-file", path, reason)


def _misnamed(
    directory: Directory, path: str, data: bytes, keys: Keys, own: str, codec: Codec
) -> Problem:
    """Return the problem of ``path``, whose bytes ``data`` are the record ``keys`` of ``own``."""
    target = directory.join(own)
    try:
        differing = clash(codec, data, target)
    except OSError:
        differing = None  # not a record file there: reported as a problem of its own
    if differing and is_conflict_copy(os.path.basename(path), codec.extension):
        return Problem("conflict", path, conflict_detail(path, keys, target))
    about = f"holds the record of keys {list(keys)!r}, whose file is {own}"
    if differing is None:
        detail = f"{about}: --repair renames it"
    elif not differing:
        detail = f"{about}, which holds the same: --repair removes this copy"
    else:
        detail = f"{about}, which differs: --repair keeps both, this one as a .conflict copy"
    return Problem("misnamed", path, detail)
