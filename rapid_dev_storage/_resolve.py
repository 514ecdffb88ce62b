"""Settling a record's merge conflict (``rapid-dev-storage resolve FILE``).

git keeps the three versions of a conflicted file in its index (stages 1, 2 and 3: base, ours,
theirs). This reads them, merges them by structure again (`_merge`) and writes the record file
with every conflicting place settled: ``--ours``, ``--theirs``, or ``--edit`` (the value in the
person's editor, with each conflict's two sides shown in comments; `_edit.edit_loop`). Without
a choice it shows the conflicts. Every change both sides agree on is kept whatever the choice.
It works for both codecs; for msgpack records, which no person can edit as text, it is the way
to settle a conflict. The file is written whole (beside it, then renamed); ``git add`` it after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
import subprocess
from pathlib import Path
from typing import Any

from ._edit import Outcome, Person, Refused, edit_loop, header_lines, text_for
from ._file_layout import decode_record, encode_record
from ._json_view import dumps
from ._merge import MISSING, Conflict, merge, pick
from ._merge_driver import codec_for, replace_file
from ._types import Keys


class ResolveError(Exception):
    """The file cannot be resolved this way (the message says why and what to do)."""


@dataclasses.dataclass
class Conflicted:
    """A conflicted record file: where it is, its keys, and its merge (with `Conflict` places)."""

    path: Path
    keys: Keys
    merged: Any

    def places(self) -> list[tuple[str, Conflict]]:
        """Return each conflict with its path (``value['b']``)."""
        found: list[tuple[str, Conflict]] = []

        def walk(value: Any, where: str) -> None:
            if isinstance(value, Conflict):
                found.append((where, value))
            elif isinstance(value, dict):
                for key, entry in value.items():
                    walk(entry, f"{where}[{key!r}]")

        walk(self.merged, "value")
        return found


def _git(directory: Path, *arguments: str) -> bytes:
    done = subprocess.run(["git", *arguments], cwd=directory, capture_output=True, check=False)
    if done.returncode != 0:
        raise ResolveError(done.stderr.decode(errors="replace").strip() or "git failed")
    return done.stdout


def conflicted(file: Path) -> Conflicted:
    """Read ``file``'s three versions from git's index and merge them.

    Raises:
        ResolveError: not in a git repository, not a record file, not conflicted, or a side
            that does not decode (then git's own ``checkout --ours/--theirs`` is the way).

    """
    codec = codec_for(file.name)
    if codec is None:
        raise ResolveError(f"{file} is not a record file (.json or .msgpack)")
    directory = file.resolve().parent
    listing = _git(directory, "ls-files", "-u", "-z", "--", file.name).split(b"\0")
    stages: dict[int, bytes] = {}
    for entry in filter(None, listing):
        info, _, _ = entry.partition(b"\t")
        _, blob, stage = info.split()
        stages[int(stage)] = _git(directory, "cat-file", "blob", blob.decode())
    if 2 not in stages or 3 not in stages:
        raise ResolveError(f"{file} has no unresolved merge in git: nothing to resolve")
    try:
        keys, ours = decode_record(codec, stages[2])
        their_keys, theirs = decode_record(codec, stages[3])
        base = decode_record(codec, stages[1])[1] if 1 in stages else MISSING
    except ValueError as exc:
        raise ResolveError(
            f"{file}: a side does not decode as a record ({exc}): choose a whole side with "
            f"`git checkout --ours -- {shlex.quote(str(file))}` (or --theirs)"
        ) from None
    if their_keys != keys:
        raise ResolveError(f"{file}: the sides hold different keys: choose one with git checkout")
    return Conflicted(file, keys, merge(base, ours, theirs))


def describe(record: Conflicted) -> str:
    """Return the conflicts as text a person reads: where, and each side's value."""
    lines = [f"{record.path}: keys {list(record.keys)}"]
    for where, conflict in record.places():
        lines.append(f"  {where}:")
        for side in ("base", "ours", "theirs"):
            value = getattr(conflict, side)
            shown = "(absent)" if value is MISSING else dumps(value)
            lines.append(f"    {side:<6} {shown}")
    if len(lines) == 1:
        lines.append("  no conflicting places: --ours or --theirs writes the merge")
    return "\n".join(lines)


def write(record: Conflicted, value: Any) -> None:
    """Write the record file with ``value``, whole: beside it, then renamed over it."""
    codec = codec_for(record.path.name)
    assert codec is not None  # conflicted() checked the name
    replace_file(record.path, encode_record(codec, record.keys, value))


async def resolve_in_editor(record: Conflicted, person: Person) -> Outcome:
    """Let a person settle the conflicts in an editor, starting from "ours" at each place."""
    codec = codec_for(record.path.name)
    assert codec is not None  # conflicted() checked the name
    header = header_lines(f"the merge of {record.path.name} (keys {list(record.keys)})")
    header += ["Each conflict starts as ours; the sides were:", *describe(record).split("\n")[1:]]
    text = text_for(pick(record.merged, "ours"), header)

    async def save(value: Any, _: str) -> Refused | None:
        await asyncio.to_thread(write, record, value)
        return None

    saved = f"resolved {record.path}: now `git add` it"
    # An unchanged buffer writes nothing, as the header says: quitting the editor backs out.
    return await edit_loop(text, unchanged=text, codec=codec, person=person, save=save, saved=saved)
