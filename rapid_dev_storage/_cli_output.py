"""What every command of the command line shares: running it, its errors, its output.

Imported only by `rapid_dev_storage.cli`: click and tqdm load when the command runs, never when
the library is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import click
import tqdm

from ._api import Storage
from ._locations import open_location
from .errors import LocationError, StorageError

T = TypeVar("T")


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn our errors into a message on stderr and exit status 2."""
    try:
        yield
    except (StorageError, LocationError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` in an event loop; our errors become a message and exit status 2."""
    with reported_errors():
        return asyncio.run(work())  # type: ignore[arg-type]  # a coroutine, made by work()


def on_store(
    location: str,
    name: str | None,
    identifier: str | None,
    action: Callable[[Storage], Awaitable[T]],
) -> T:
    """Open the store, run ``action`` on it and close it, as `run` runs work."""

    async def work() -> T:
        async with await open_storage(location, name, identifier) as store:
            return await action(store)

    return run(work)


async def open_storage(location: str, name: str | None, identifier: str | None) -> Storage:
    """Open the store at ``location`` (named by ``name`` and ``identifier`` where it holds more)."""
    return Storage(await open_location(location, name, identifier))


class _NoProgress:
    def update(self, count: int) -> None:
        """Count nothing: stderr is not a terminal."""


@contextlib.contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Any]:
    """Yield a progress bar on stderr when it is a terminal (never in pipes, logs, scripts)."""
    if not sys.stderr.isatty():
        yield _NoProgress()
        return
    with tqdm.tqdm(total=total, desc=label, unit=" records", file=sys.stderr) as bar:
        yield bar


def emit(value: Any) -> None:
    """Print ``value`` as one line of JSON.

    Raises:
        ValueError: JSON cannot carry it (it holds bytes).

    """
    try:
        click.echo(json.dumps(value, ensure_ascii=False, sort_keys=True))
    except TypeError as exc:
        raise ValueError(f"JSON cannot show this value ({exc}): it holds bytes") from exc
