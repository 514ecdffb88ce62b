"""The command line's commands for people and git: edit, resolve, merge-driver, git-setup.

`rapid_dev_storage.cli`'s group (`_cli_lazy.LazyCommands`) adds `GIT_COMMANDS` when one runs.
The work is elsewhere: the edit flow in `_edit`, settling a conflicted record in `_resolve`,
git's merge driver in `_merge_driver`, what git-setup writes in `_git_setup`. Exit statuses
follow git's tools: 0 done (or nothing to do), 1 nothing written because of a problem (with
any text kept in a file, named), 2 usage.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NoReturn

import click

from ._cli_output import CREATE_OPTIONS, open_storage
from ._edit import EditorError, Outcome, Person, edit_value, editor_command
from ._file_io import read_regular_file
from ._git_setup import GitSetupError, set_up
from ._merge import pick
from ._merge_driver import codec_for
from ._merge_driver import main as merge_driver_main
from ._resolve import ResolveError, conflicted, describe, resolve_in_editor, write
from .errors import (
    InvalidKeyError,
    InvalidNameError,
    LocationError,
    StorageError,
    StoreNotFoundError,
)

_USAGE = (InvalidKeyError, InvalidNameError, LocationError)
"""Errors in what the person typed: exit status 2, as click's own usage errors."""


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _kept_text(path: Path) -> str:
    """Return the text of a file ``--from`` names: a regular UTF-8 file, never a FIFO or device."""
    try:
        data = read_regular_file(str(path))
        if data is None:
            raise FileNotFoundError(f"no such file: {path}")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"--from {path}: cannot be read as text ({exc})", 2)


def _person() -> Person:
    """Return the person running this command: their editor; asked only at a terminal."""
    try:
        editor = editor_command()
    except EditorError as exc:
        _fail(str(exc), 2)
    return Person(editor, sys.stdin.isatty(), _say, _ask)


def _ask(question: str) -> bool:
    return click.confirm(question, default=True, err=True)


def _say(text: str) -> None:
    click.echo(text, err=True)


def _finish(outcome: Outcome) -> NoReturn:
    """Say how an edit ended; exit 0 when it was saved or there was nothing to save."""
    click.echo(outcome.message, err=True)
    sys.exit(1 if outcome.status == "kept" else 0)


@click.command("edit")
@click.argument("location")
@click.argument("group")
@click.argument("keys", nargs=-1, required=True)
@click.option(
    "--from",
    "start_from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start from this file's text: the one an earlier attempt kept.",
)
@CREATE_OPTIONS[0]
@CREATE_OPTIONS[1]
@click.option("--name", help="The store's name, when the location holds several.")
@click.option("--id", "identifier", help="The store's unique identifier.")
def edit_command(
    location: str,
    group: str,
    keys: tuple[str, ...],
    start_from: Path | None,
    create: bool,
    codec: str | None,
    name: str | None,
    identifier: str | None,
) -> None:
    """Edit the value of GROUP[KEYS...] as JSON in $VISUAL or $EDITOR (creating it if absent).

    The saved value is written only if nobody changed the record meanwhile. Text that is not
    JSON, a value the store cannot hold, or a change meanwhile writes nothing: at a terminal
    you are offered to re-open the editor; otherwise the command exits 1 naming the file that
    keeps your text (start again from it with --from). Exit status: 0 saved or nothing to
    save, 1 nothing written (no such store, or text kept), 2 usage.
    """
    person = _person()
    text = None if start_from is None else _kept_text(start_from)

    async def work() -> Outcome:
        opened = open_storage(location, name, identifier, create=create, codec=codec, writing=True)
        async with await opened as store:
            return await edit_value(
                store.get_group(group)[keys],
                store.backend.codec,
                person,
                describe=f"{group} {list(keys)}",
                start_from=text,
            )

    try:
        outcome = asyncio.run(work())
    except StoreNotFoundError as exc:  # not found: 1, as every command says it
        _fail(str(exc), 1)
    except _USAGE as exc:
        _fail(str(exc), 2)
    except (EditorError, StorageError, OSError) as exc:
        _fail(str(exc), 1)
    _finish(outcome)


@click.command("resolve")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ours", "choice", flag_value="ours", help="Settle every conflict as ours.")
@click.option("--theirs", "choice", flag_value="theirs", help="Settle every conflict as theirs.")
@click.option("--edit", "choice", flag_value="edit", help="Settle them in $VISUAL or $EDITOR.")
def resolve_command(file: Path, choice: str | None) -> None:
    """Show or settle the merge conflicts of a record FILE (either codec) that git left.

    The three versions come from git's index, merged by structure again: what both sides
    agree on is kept whatever the choice. Without an option, show each conflict's sides.
    Then run git add FILE. Exit status: 0 resolved or shown, 1 nothing to resolve (or the
    edit's text kept), 2 usage.
    """
    if codec_for(file.name) is None:
        _fail(f"{file} is not a record file (.json or .msgpack)", 2)
    try:
        record = conflicted(file)
    except ResolveError as exc:
        _fail(str(exc), 1)
    if choice is None:
        click.echo(describe(record))
        return
    if choice == "edit":
        outcome = asyncio.run(resolve_in_editor(record, _person()))
        click.echo(outcome.message, err=True)
        sys.exit(0 if outcome.status == "saved" else 1)
    write(record, pick(record.merged, choice))
    click.echo(f"resolved {file} (conflicts settled as {choice}): now `git add` it", err=True)


@click.command("merge-driver", hidden=True)
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@click.argument("marker_size")
@click.argument("path")
def merge_driver_command(base: str, ours: str, theirs: str, marker_size: str, path: str) -> None:
    """Merge a record file for git, which runs this as its merge driver (see git-setup).

    Merges BASE, OURS and THEIRS (files git wrote) into OURS; exit status 0 clean, 1 conflict.
    """
    sys.exit(merge_driver_main([base, ours, theirs, marker_size, path]))


@click.command("git-setup")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="A directory inside the git repository (default: here).",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Mark this directory's record files instead of the stores found (repeatable).",
)
@click.option("--command", help="How git should start this tool (default: see docs/git.md).")
def git_setup_command(repo: Path, paths: tuple[Path, ...], command: str | None) -> None:
    """Have git diff msgpack records as JSON and merge records of both codecs by structure.

    Sets diff.rapid-dev-storage.textconv and merge.rapid-dev-storage.driver in the repository's
    git config, and writes a .gitattributes into each store directory found in the repository
    (or each --path): *.json and *.msgpack use the merge driver, *.msgpack the textconv.
    Running it again changes nothing. Exit status 1 when no store was found to mark.
    """
    try:
        done = set_up(repo, list(paths), command)
    except GitSetupError as exc:
        _fail(str(exc), 2)
    click.echo(f"git in {done.top} now runs `{done.command}` to diff and merge records")
    for directory, added in done.marked:
        state = "written" if added else "already there"
        click.echo(f"  {directory / '.gitattributes'}: {state}")
    if not done.marked:
        _fail(f"no store found in {done.top}: name its directory with --path DIR", 1)


GIT_COMMANDS: list[click.Command] = [
    edit_command,
    resolve_command,
    merge_driver_command,
    git_setup_command,
]
"""The commands `rapid_dev_storage.cli.main` adds."""
