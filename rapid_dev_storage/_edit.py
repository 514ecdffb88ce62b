"""Editing one record's value in a person's own editor, safely (the command line's ``edit``).

The editor gets the *value* in its JSON view (`_json_view`), never the record's wrapper, under a
few ``#`` comment lines that say what is being edited. When the editor exits, the text is checked
and written as a compare-and-swap against the value the editor was opened on: a change another
process made meanwhile is never overwritten silently. Whatever goes wrong (text that is not JSON,
a value the codec cannot carry, a change meanwhile), nothing is written and the text is kept in
a file, as ``git commit`` and ``kubectl edit`` keep theirs; a person at a terminal is offered to
re-open it, a script gets an exit status and the file's name. An unchanged or emptied buffer
writes nothing.

Lines whose first non-blank character is ``#`` are comments: JSON has no token that starts with
``#`` and its strings never span lines, so such a line can never be part of the value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

from ._api import StorageValue
from ._codecs import Codec
from ._json_view import dumps, loads
from ._types import NoValue
from ._validate import check_value
from .errors import InvalidValueError

DEFAULT_EDITORS = ("nano", "vi")
"""Tried in order when neither ``$VISUAL`` nor ``$EDITOR`` is set (``notepad`` on Windows)."""


_ERROR = "# ERROR:"
OPENED_ON = "Opened on state"
_OPENED_ON_LINE = re.compile(rf"^# {OPENED_ON} ([0-9a-f]{{16}})$", re.MULTILINE)


class EditorError(Exception):
    """The editor could not be started, or exited with a failure status."""


class NotText(ValueError):
    """The editor saved bytes that are not UTF-8 text (kept in the file as they are)."""


@dataclasses.dataclass
class Outcome:
    """How an edit ended: ``saved``, ``unchanged`` or ``kept`` (the text is in ``kept``)."""

    status: str
    message: str
    kept: Path | None = None


def editor_command(environ: dict[str, str] | None = None) -> list[str]:
    """Return the editor to run: ``$VISUAL``, then ``$EDITOR``, then a default that exists.

    Raises:
        EditorError: none is set and no default editor is installed.

    """
    environ = dict(os.environ) if environ is None else environ
    for variable in ("VISUAL", "EDITOR"):
        if environ.get(variable, "").strip():
            return shlex.split(environ[variable])
    defaults = ("notepad",) if sys.platform == "win32" else DEFAULT_EDITORS
    for name in defaults:
        if shutil.which(name):
            return [name]
    raise EditorError("no editor found: set $VISUAL or $EDITOR (for example EDITOR=nano)")


def parse_buffer(text: str) -> Any:
    """Return the value the edited text stands for, or `NoValue` for an empty buffer.

    Comment lines are blanked, not removed, so the line numbers in errors match the file.

    Raises:
        ValueError: what is wrong and where (line and column for text that is not JSON).

    """
    lines = ["" if _comment(line) else line for line in text.split("\n")]
    body = "\n".join(lines)
    if not body.strip():
        return NoValue
    try:
        return loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def text_for(value: Any, header: list[str]) -> str:
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header)
    return comments + ("" if value is NoValue else dumps(value, indent=2) + "\n")


@dataclasses.dataclass(frozen=True)
class Person:
    """Who edits: the editor to run, and how to talk to them.

    ``interactive``: a person at a terminal answers ``ask`` (re-open after a problem?);
    otherwise the first problem ends the edit, its text kept in a file. ``say`` tells them.
    """

    editor: list[str]
    interactive: bool
    say: Callable[[str], None]
    ask: Callable[[str], bool]


@dataclasses.dataclass
class Refused:
    """What a ``save`` says when it cannot write: why, and the buffer to re-open on."""

    problem: str
    reopen_with: str
    unchanged: str
    """The text that from now on counts as "no change"."""


Save = Callable[[Any, str], Awaitable["Refused | None"]]
"""Write a checked value (the second argument is the saved text); None when it landed."""


async def edit_loop(
    text: str,
    *,
    unchanged: str,
    codec: Codec,
    person: Person,
    save: Save,
    saved: str,
    stamp: Callable[[], str] | None = None,
) -> Outcome:
    """Open ``text`` in the person's editor until ``save`` takes a valid value or they give up.

    ``unchanged``: the text that means "no change" (nothing is saved). ``codec`` decides what a
    value may hold. ``saved``: the message when it landed. ``stamp``: a comment line a kept
    text must carry (the state it was opened on), added where the person's text lost it.
    """
    path = await asyncio.to_thread(_buffer_holding, text)

    async def attempt(text: str) -> Outcome | str:
        """Take one saved ``text``: how the edit ended, or the problem that keeps it going."""
        nonlocal unchanged
        if text == unchanged:
            await asyncio.to_thread(path.unlink)
            return Outcome("unchanged", "no change: nothing written")
        try:
            value = parse_buffer(text)
            if value is NoValue:
                await asyncio.to_thread(path.unlink)
                return Outcome("unchanged", "empty buffer: nothing written")
            check_value(
                value, allow_bytes=codec.allows_bytes, allow_non_finite=codec.allows_non_finite
            )
        except ValueError as exc:
            # Said in the file too, on top, where the next round of editing starts.
            kept = [line for line in text.splitlines(True) if not line.startswith(_ERROR)]
            body = "".join(kept)
            if stamp is not None and stamp() not in body:  # the state it was opened on
                body = stamp() + "\n" + body
            marked = f"{_ERROR} {exc}\n" + body
            await asyncio.to_thread(path.write_text, marked, encoding="utf-8")
            return f"{path}: {exc}"
        try:
            refused = await save(value, text)
        except InvalidValueError as exc:  # the codec refused it as it encoded (a surrogate)
            refused = Refused(f"{path}: {exc}", reopen_with=text, unchanged=unchanged)
        if refused is None:
            await asyncio.to_thread(path.unlink)
            return Outcome("saved", saved)
        unchanged = refused.unchanged
        await asyncio.to_thread(path.write_text, refused.reopen_with, encoding="utf-8")
        return refused.problem

    while True:
        try:
            text = await asyncio.to_thread(_edited, person.editor, path)
        except NotText as exc:
            problem: Outcome | str = f"{path}: {exc}"  # the bytes stay in the file as saved
        except EditorError as exc:
            # Nothing of the person's in the buffer yet: nothing to keep for them.
            if await asyncio.to_thread(path.read_bytes) == unchanged.encode("utf-8"):
                await asyncio.to_thread(path.unlink)
                raise
            raise EditorError(f"{exc}; your text is in {path}") from None
        else:
            problem = await attempt(text)
        if isinstance(problem, Outcome):
            return problem
        if not person.interactive or not person.ask(f"{problem}\nRe-open the editor?"):
            return Outcome("kept", f"{problem}; nothing written, your text is in {path}", path)
        person.say(problem)


def header_lines(describe: str) -> list[str]:
    """Return the comment lines above a value being edited."""
    return [
        f"Editing {describe}.",
        'The value as JSON; bytes are {"$bytes": "<base64>"}. Lines starting with \'#\' are',
        "ignored. Save and quit to write it; an empty or unchanged buffer writes nothing.",
    ]


async def edit_value(
    handle: StorageValue,
    codec: Codec,
    person: Person,
    *,
    describe: str,
    start_from: str | None = None,
) -> Outcome:
    """Let a person edit ``handle``'s value in ``editor``; write it if it is valid and current.

    ``codec`` is the store's (`Storage.backend.codec`): it decides what a value may hold.
    ``start_from``: text to open instead of the stored value (a kept file from an earlier
    attempt); the compare-and-swap is then against the state that text names it was opened
    on, so a change made since the text was kept is refused too (a text without that line:
    against the value stored when this edit began).
    For the rest, see `edit_loop`.
    """
    stored = await handle.get_value()
    # What the person's text was opened on, as a digest: the compare-and-swap is against it.
    opened_on = state_of(stored)

    def header_for(value: Any) -> list[str]:
        # The last line names the state the text was opened on, so that a text kept now and
        # given back with --from later is compared with that state, not with a newer one.
        header = header_lines(describe)
        if value is NoValue:
            header.append("There is no value yet: what you write creates the record.")
        return [*header, f"{OPENED_ON} {state_of(value)}"]

    initial = text_for(stored, header_for(stored))
    kept_on = None if start_from is None else _OPENED_ON_LINE.search(start_from)
    if kept_on is not None:  # a kept text: what it was opened on, however long ago
        opened_on = kept_on.group(1)

    async def save(value: Any, text: str) -> Refused | None:
        nonlocal opened_on
        landed, current = await _swap(handle, opened_on, value)
        if landed:
            return None
        # Re-open on the person's text, with what is stored now shown above it in comments;
        # the next save compares against that.
        now = "(no value)" if current is NoValue else dumps(current, indent=2)
        *header, opened_line = header_for(current)
        header_now = [*header, "It changed while you edited it; it now holds:", *now.split("\n")]
        opened_on = state_of(current)
        body = "".join(line for line in text.splitlines(True) if not _comment(line))
        return Refused(
            f"{describe} changed while you edited it (another process wrote it)",
            reopen_with=text_for(NoValue, [*header_now, opened_line]) + body,
            unchanged=text_for(current, [*header, opened_line]),
        )

    text = initial if start_from is None else start_from
    saved = f"saved {describe}"
    return await edit_loop(
        text,
        unchanged=initial,
        codec=codec,
        person=person,
        save=save,
        saved=saved,
        stamp=lambda: f"# {OPENED_ON} {opened_on}",
    )


class _ChangedMeanwhile(Exception):
    def __init__(self, current: Any) -> None:
        super().__init__("the record changed meanwhile")
        self.current = current


def state_of(value: Any) -> str:
    """Return a short digest of a stored value (or of its absence), as the header names it.

    Computed from the value's JSON text: it tells 1 from 1.0 and true, and NaN equals itself.
    """
    text = "(no value)" if value is NoValue else dumps(value)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


async def _swap(handle: StorageValue, expected: str, value: Any) -> tuple[bool, Any]:
    """Write ``value`` if the record still holds the state ``expected`` (`state_of`).

    Returns ``(True, value)``, or ``(False, what it holds)`` having written nothing (the update
    function raises before anything is written).
    """

    def replace(current: Any) -> Any:
        if state_of(current) != expected:
            raise _ChangedMeanwhile(current)
        return value

    try:
        await handle.update(replace)
    except _ChangedMeanwhile as changed:
        return False, changed.current
    return True, value


def _buffer_holding(text: str) -> Path:
    with tempfile.NamedTemporaryFile(
        "w", prefix="rapid-dev-storage-edit-", suffix=".json", delete=False, encoding="utf-8"
    ) as buffer:
        buffer.write(text)
    return Path(buffer.name)


def _edited(editor: list[str], path: Path) -> str:
    """Run the editor on ``path``, with the terminal; return the saved text.

    It runs on a thread: a person takes minutes, and the event loop keeps running meanwhile.
    """
    try:
        status = subprocess.run([*editor, str(path)], check=False).returncode
    except OSError as exc:
        raise EditorError(
            f"cannot start the editor {shlex.join(editor)!r} ({exc.strerror}): set $VISUAL or "
            "$EDITOR"
        ) from exc
    if status != 0:
        raise EditorError(
            f"the editor {shlex.join(editor)!r} exited with status {status}: nothing written"
        )
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotText(
            f"not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"
        ) from None
