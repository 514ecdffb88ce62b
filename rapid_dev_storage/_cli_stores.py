"""The command line's commands on a whole store: dump, load, copy, watch, fsck, and the demo.

`rapid_dev_storage.cli`'s group (`_cli_lazy.LazyCommands`) adds `STORE_COMMANDS` when one runs
or help lists them, so that `get` does not define them (tools/bench_startup.py measures it).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._api import Storage
from ._cli_damage import Damage, counted
from ._cli_output import (
    CREATE_OPTIONS,
    GROUP_ARGUMENTS,
    STRICT,
    emit,
    on_store,
    progress,
    run,
    store_command,
)
from ._types import Keys, NoValue

if TYPE_CHECKING:
    from ._fsck import Report

# What only one of these commands needs (fsck, copy, load, the demo) is imported by it.
# ruff: noqa: PLC0415


@store_command("dump", *GROUP_ARGUMENTS, STRICT)
def dump_command(
    location: str, group: str | None, strict: bool, name: str | None, identifier: str | None
) -> None:
    """Write the store (or GROUP) as JSON Lines, sorted by group and keys, to stdout.

    A record that does not decode is reported on stderr and skipped (exit status 1 at the end).
    """
    from ._cli_groups import dump_groups

    damage = Damage(strict=strict)

    async def dump(store: Storage) -> None:
        with progress("dump") as bar:
            await dump_groups(store, group, damage, bar)

    on_store(location, name, identifier, dump, read_only=True)
    sys.exit(damage.exit_status())


@store_command(
    "load",
    click.argument("location"),
    click.argument("source", type=click.File("r", encoding="utf-8")),
    *CREATE_OPTIONS,
)
def load_command(
    location: str,
    source: Any,
    create: bool,
    codec: str | None,
    name: str | None,
    identifier: str | None,
) -> None:
    """Load JSON Lines (as dump writes them) from SOURCE ('-': stdin) into the store.

    Every line is checked first: if any is bad, nothing is written. The store must exist,
    unless --create is given (a new store's codec is json unless --codec says msgpack).
    """
    from ._cli_copy import load_lines

    lines = source.read().removeprefix("\ufeff").splitlines()  # a BOM, from Windows editors

    numbered = list(enumerate(lines, start=1))

    async def load() -> int:
        with progress("load", total=len(numbered)) as bar:
            return await load_lines(location, (name, identifier), numbered, create, codec, bar)

    click.echo(f"loaded {counted(run(load))}", err=True)


@store_command(
    "copy",
    click.argument("source"),
    click.argument("destination"),
    *CREATE_OPTIONS,
    click.option(
        "--merge", is_flag=True, help="Copy into a store holding records: the source wins."
    ),
    click.option("--replace", is_flag=True, help="Clear the destination store first."),
    STRICT,
)
def copy_command(
    source: str,
    destination: str,
    create: bool,
    codec: str | None,
    merge: bool,
    replace: bool,
    strict: bool,
    name: str | None,
    identifier: str | None,
) -> None:
    """Copy every record from SOURCE's store to the store of its name and id at DESTINATION.

    Any backend to any; verified afterwards. A destination that already holds records is
    refused (nothing written) unless --merge or --replace is given. A source record that does
    not decode is reported on stderr and skipped (exit status 1 at the end).
    """
    from ._cli_copy import copy_store

    if merge and replace:
        raise click.UsageError("--merge or --replace, not both")
    damage = Damage(strict=strict)

    async def work() -> int:
        with progress("copy") as bar:
            return await copy_store(
                source,
                destination,
                (name, identifier),
                damage,
                create=create,
                codec=codec,
                merge=merge,
                replace=replace,
                bar=bar,
            )

    click.echo(f"copied and verified {counted(run(work))}", err=True)
    sys.exit(damage.exit_status())


@store_command("watch", *GROUP_ARGUMENTS, click.argument("prefix", nargs=-1))
def watch_command(
    location: str, group: str | None, prefix: Keys, name: str | None, identifier: str | None
) -> None:
    """Print each change to the store (or GROUP, under PREFIX) as a JSON line, until Ctrl-C."""

    async def watch(store: Storage) -> None:
        async for change in store.watch(group, *prefix):
            value = None if change.value is NoValue else change.value
            shown = {"kind": change.kind, "group": change.group, "keys": list(change.keys)}
            emit({**shown, "value": value, "origin": change.origin})
            sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how watching ends
        on_store(location, name, identifier, watch)


@click.command("demo")
@click.option(
    "--fixtures",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A directory of stores to tour instead of the sample data that ships with the "
    "package (it is copied: the demo never changes it).",
)
def demo_command(fixtures: Path | None) -> None:
    """Tour the library on a fresh copy of the sample store (works from any directory)."""
    from ._demo import demo

    run(lambda: demo(fixtures))


@store_command(
    "fsck",
    click.argument("location"),
    click.option("--repair", is_flag=True, help="Fix what can be fixed; never deletes data."),
    click.option("--json", "as_json", is_flag=True, help="One JSON object per problem."),
)
def fsck_command(
    location: str, repair: bool, as_json: bool, name: str | None, identifier: str | None
) -> None:
    """Check a store for damage (exit status 1 if any is left).

    File stores: undecodable records, records under a name not their own, directories made by
    hand for a group (USER/ for ^user/), orphaned temp files, unknown files and directories, a
    missing marker; editors' leftovers are ignored. --repair puts records under their own
    names (keeping a differing copy beside one as NAME.conflict.json), removes orphaned temp
    files and moves what does not decode into the store's .quarantine/ directory. SQLite and
    PostgreSQL stores: undecodable records (reported only). Ends with a summary line (with
    --json, a JSON object on stderr).
    """
    from ._fsck import check_store
    from ._locations import open_location

    async def work() -> Report:
        backend = await open_location(
            location, name, identifier, sweep_orphans=False, read_only=True
        )
        async with Storage(backend) as store:
            with progress("fsck") as bar:
                return await check_store(store, repair=repair, on_file=lambda: bar.update(1))

    # fsck's output: _fsck.Report says what to print, and where (the "handmade" change).
    report = run(work)
    for line, to_stderr in report.lines(as_json=as_json):
        click.echo(line, err=to_stderr)
    if not report.clean:
        sys.exit(1)


STORE_COMMANDS: list[click.Command] = [
    dump_command,
    load_command,
    copy_command,
    watch_command,
    demo_command,
    fsck_command,
]
"""The commands `rapid_dev_storage.cli.main` adds."""
