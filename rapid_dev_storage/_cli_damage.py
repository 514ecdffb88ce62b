"""Records that do not decode, met by the command line: reported one by one, never fatal unasked.

Group commands (``ls``, ``dump``, ``copy``) pass a `Damage` as ``all_items``'s ``on_corrupt``:
each bad record is reported on stderr as it is met (its file and why; a merge conflict named as
one, with what to do), the command carries on, and exits 1 at the end. ``--strict`` stops at the
first instead. Imported only by the command line.
"""

from __future__ import annotations

import os

import click

from ._file_io import read_regular_file
from ._file_layout import hand_made_group, hand_made_message
from .errors import CorruptRecordError


def corrupt_message(error: CorruptRecordError) -> str:
    """Say which record does not decode and why; a merge conflict, with what to do about it."""
    where = error.location or (f"{error.group} {list(error.keys)}" if error.keys else error.group)
    if error.location is not None and _conflicted(error.location):
        return f"unresolved merge conflict in {error.location}: edit it, then `git add`"
    return f"{where}: {error}" if where and str(where) not in str(error) else str(error)


def _conflicted(path: str) -> bool:
    from ._merge_text import has_conflict_markers  # noqa: PLC0415  (errors only: start-up time)

    try:
        data = read_regular_file(path)
    except OSError:
        return False  # a table name, or a file gone meanwhile: no markers to find
    return data is not None and has_conflict_markers(data)


class Damage:
    """Counts and reports undecodable records; pass `on_corrupt` to ``all_items``."""

    def __init__(self, *, strict: bool) -> None:
        self.count = 0
        # Strict: no handler, so the first bad record raises and the command stops there (its
        # message made by `corrupt_message` too, in `_cli_output.reported_errors`).
        self.on_corrupt = None if strict else self._report

    def _report(self, error: CorruptRecordError) -> None:
        self.count += 1
        click.echo(f"error: {corrupt_message(error)}", err=True)

    def exit_status(self) -> int:
        """Return 1 if any record did not decode (saying how many), else 0."""
        if self.count:
            click.echo(f"{counted(self.count)} could not be read (above)", err=True)
            return 1
        return 0


def counted(count: int) -> str:
    """Return ``"1 record"``, ``"2 records"``: how every message counts records."""
    return f"{count} record{'' if count == 1 else 's'}"


def hand_made_hint(store_directory: str, group: str) -> str:
    """Return why a record of ``group`` may seem missing: a directory made by hand holds it.

    Reads never look there (see `_file_layout.hand_made_group`); ``get`` says so instead of a
    bare "no value". Empty when there is no such directory.
    """
    try:
        names = os.listdir(store_directory)
    except OSError:
        return ""
    for name in sorted(names):
        if hand_made_group(name) == group and os.path.isdir(os.path.join(store_directory, name)):
            return f"; {hand_made_message(store_directory, name)}"  # as the store warns of it
    return ""
