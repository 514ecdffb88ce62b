"""What every command of the command line shares: running it, its errors, its output.

Imported only by `rapid_dev_storage.cli`: click loads when the command runs, never when the
library is imported; tqdm only when a progress bar is shown (at a terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, Awaitable, Callable, Iterator, NoReturn, TypeVar

import click

from . import _json_view
from ._api import Storage
from ._cli_damage import corrupt_message
from ._locations import open_location
from .errors import (
    CorruptRecordError,
    LockTimeoutError,
    ReadOnlyStoreError,
    StorageError,
    StorageIOError,
    StoreNotFoundError,
    UnsupportedOperationError,
)

T = TypeVar("T")

NOT_FOUND = 1
"""Exit status: not found, or the store failed underneath (what was written stays written)."""
USAGE = 2
"""Exit status: a usage or input error, found before anything was written."""


class Failed(Exception):
    """A command failed after it may have written (a copy's verification): exit status 1."""


# Errors of the store itself, not of what the user typed: exit status 1, never 2.
_STORE_FAILURES = (
    Failed,
    CorruptRecordError,
    LockTimeoutError,
    ReadOnlyStoreError,
    StorageIOError,
    StoreNotFoundError,
    UnsupportedOperationError,
)

Command = Callable[..., Any]

STORE_OPTIONS = (
    click.option("--name", help="The store's name, when the location holds several."),
    click.option("--id", "identifier", help="The store's unique identifier."),
)
GROUP_ARGUMENTS = (click.argument("location"), click.argument("group", required=False))
STRICT = click.option("--strict", is_flag=True, help="Stop at the first undecodable record.")


def store_command(
    name: str, *parameters: Callable[[Command], Command]
) -> Callable[[Command], click.Command]:
    """Define a command on one store: its ``parameters`` in order, then --name and --id."""

    def define(function: Command) -> click.Command:
        for parameter in reversed((*parameters, *STORE_OPTIONS)):
            function = parameter(function)
        return click.command(name)(function)

    return define


CREATE_OPTIONS = (
    click.option(
        "--create",
        is_flag=True,
        help="Create the store if there is none (named by --name and --id); without it, a "
        "store that does not exist is an error and nothing is written.",
    ),
    click.option(
        "--codec",
        type=click.Choice(["json", "msgpack"]),
        help="A new store's codec (default json: people read and diff its files).",
    ),
)
"""The options of every command that writes (set, load, copy, edit): add them in this order."""


def fail(message: str, status: int) -> NoReturn:
    """Print ``message`` on stderr as an error and exit with ``status``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn our errors into a message on stderr: exit status 1 for the store's, 2 for input's."""
    try:
        yield
    except CorruptRecordError as exc:
        fail(corrupt_message(exc), NOT_FOUND)
    except _STORE_FAILURES as exc:
        fail(str(exc), NOT_FOUND)
    except (StorageError, ValueError) as exc:
        fail(str(exc), USAGE)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` in an event loop; our errors become a message and an exit status."""
    with reported_errors():
        return asyncio.run(work())  # type: ignore[arg-type]  # a coroutine, made by work()


def on_store(
    location: str,
    name: str | None,
    identifier: str | None,
    action: Callable[[Storage], Awaitable[T]],
    **opening: Any,
) -> T:
    """Open the store, run ``action`` on it and close it, as `run` runs work.

    ``opening`` goes to `open_storage` (``create``, ``codec``, ``read_only``).
    """

    async def work() -> T:
        async with await open_storage(location, name, identifier, **opening) as store:
            return await action(store)

    return run(work)


async def open_storage(
    location: str,
    name: str | None,
    identifier: str | None,
    *,
    create: bool = False,
    codec: str | None = None,
    read_only: bool = False,
    writing: bool = False,
) -> Storage:
    """Open the store at ``location`` (named by ``name`` and ``identifier`` where it holds more).

    Only ``create`` (a writing command's --create) makes a new store, with ``codec`` (default
    JSON); without it, no such store raises `StoreNotFoundError` listing those there are.
    ``read_only`` opens a file store without changing its directory (for commands that read);
    abandoned temp files are never swept here (see `_file_sweep`);
    ``writing`` (a command that could create with --create) says so when no store is there.
    """
    try:
        # No sweep of abandoned temp files: a command lasts a moment, and a large store's sweep
        # would outlast it (fsck reports them and --repair removes them; so does an app's open).
        backend = await open_location(
            location,
            name,
            identifier,
            create=create,
            codec=codec,
            read_only=read_only,
            sweep_orphans=False,
        )
    except StoreNotFoundError as exc:
        if not writing or create:
            raise
        raise StoreNotFoundError(
            f"{exc}; nothing was written (--create, --name and --id make a new store)",
            location=exc.location,
            stores=exc.stores,
        ) from None
    return Storage(backend)


class _NoProgress:
    def update(self, count: int) -> None:
        """Count nothing: stderr is not a terminal."""


@contextlib.contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Any]:
    """Yield a progress bar on stderr when it is a terminal (never in pipes, logs, scripts)."""
    if not sys.stderr.isatty():
        yield _NoProgress()
        return
    import tqdm  # noqa: PLC0415  (only at a terminal: start-up time is measured)

    with tqdm.tqdm(total=total, desc=label, unit=" records", file=sys.stderr) as bar:
        yield bar


def emit(value: Any) -> None:
    """Print ``value`` as one line of its JSON view (bytes as ``{"$bytes": base64}``)."""
    click.echo(_json_view.dumps(value))
