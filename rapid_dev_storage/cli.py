"""The ``rapid-dev-storage`` command (also ``python -m rapid_dev_storage``).

A store is named by a location (``file:DIR``, ``sqlite:FILE``, ``postgresql://...``) and, when
the location holds more than one store, ``--name`` and ``--id``. Values go in and come out as
JSON (bytes as ``{"$bytes": base64}``: `_json_view`). Only a command that writes, given
``--create``, makes a store. Exit status: 0 done, 1 not found or the store failed, 2 a usage or
input error (nothing written). The commands are defined here; what they share is in
`_cli_output`, undecodable records in `_cli_damage`, the work behind copy in `_cli_copy`; edit,
resolve, merge-driver and git-setup are in `_cli_git`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from . import _json_view
from ._api import Storage
from ._cli_damage import Damage, counted
from ._cli_lazy import LazyCommands
from ._cli_output import (
    CREATE_OPTIONS,
    NOT_FOUND,
    USAGE,
    emit,
    fail,
    on_store,
    progress,
    run,
)
from ._codecs import JSONCodec, MsgpackCodec
from ._types import Keys, NoValue
from ._validate import check_group_name, check_keys

if TYPE_CHECKING:
    from ._fsck import Report

# What only some commands need (fsck, copy, load, demo, the git commands, a backend) is imported
# by those commands: `get` must start in about the time of `import asyncio, msgpack` (measured by
# tools/bench_startup.py), and the backend a location names loads when it is opened.
# ruff: noqa: PLC0415

Command = Callable[..., Any]

_STORE_OPTIONS = (
    click.option("--name", help="The store's name, when the location holds several."),
    click.option("--id", "identifier", help="The store's unique identifier."),
)
_GROUP = (click.argument("location"), click.argument("group", required=False))
_STRICT = click.option("--strict", is_flag=True, help="Stop at the first undecodable record.")
_RECORD = (
    click.argument("location"),
    click.argument("group"),
    click.argument("keys", nargs=-1, required=True),
)


def _store_command(
    name: str, *parameters: Callable[[Command], Command]
) -> Callable[[Command], Any]:
    """Define a command on one store: its ``parameters`` in order, then --name and --id."""

    def define(function: Command) -> Any:
        for parameter in reversed((*parameters, *_STORE_OPTIONS)):
            function = parameter(function)
        return main.command(name)(function)

    return define


@click.group(cls=LazyCommands)
@click.version_option(package_name="rapid_dev_storage")
def main() -> None:
    """Inspect, edit, dump, load and copy rapid_dev_storage stores.

    Exit status: 0 done; 1 not found, or the store failed (records that do not decode, an I/O
    error); 2 a usage or input error, found before anything was written.
    """


@_store_command("ls", *_GROUP, _STRICT)
def list_command(
    location: str, group: str | None, strict: bool, name: str | None, identifier: str | None
) -> None:
    """List the stores at LOCATION, the groups of its store with record counts, or GROUP's keys.

    A record that does not decode is reported on stderr and skipped (exit status 1 at the end).
    """
    from ._cli_groups import list_location

    damage = Damage(strict=strict)
    run(lambda: list_location(location, group, name, identifier, damage))
    sys.exit(damage.exit_status())


@_store_command("get", *_RECORD)
def get_command(
    location: str, group: str, keys: Keys, name: str | None, identifier: str | None
) -> None:
    """Print the value of GROUP[KEYS...] as JSON (exit status 1 if there is none)."""

    async def value_of(store: Storage) -> tuple[object, str]:
        value = await store.get_group(group)[keys].get_value()
        backend = store.backend
        if value is NoValue:  # no value: a directory made by hand may hold it (file stores)
            from ._cli_damage import hand_made_hint
            from ._file import FileBackend

            if isinstance(backend, FileBackend):
                return value, await asyncio.to_thread(hand_made_hint, backend.location, group)
        return value, ""

    value, hint = on_store(location, name, identifier, value_of, read_only=True)
    if value is NoValue:
        fail(f"no value at {group} {_json_view.dumps(list(keys))}{hint}", NOT_FOUND)
    emit(value)


@_store_command(
    "set",
    *_RECORD,
    click.option("--value", "-v", "text", required=True, help="The value, as JSON ('-': stdin)."),
    *CREATE_OPTIONS,
)
def set_command(
    location: str,
    group: str,
    keys: Keys,
    text: str,
    create: bool,
    codec: str | None,
    name: str | None,
    identifier: str | None,
) -> None:
    """Store a JSON value at GROUP[KEYS...]; bytes are written {"$bytes": "<base64>"}.

    The store must exist, unless --create is given (a new store's codec is json unless --codec
    says msgpack).
    """
    source = sys.stdin.read() if text == "-" else text
    try:
        value = _json_view.loads(source, "--value")
    except ValueError as exc:
        fail(f"--value is not JSON: {exc}", USAGE)

    async def store_value(store: Storage) -> None:
        await store.get_group(group)[keys].set_value(value)

    on_store(location, name, identifier, store_value, create=create, codec=codec, writing=True)


@_store_command(
    "rm",
    click.argument("location"),
    click.argument("group"),
    click.argument("keys", nargs=-1),
    click.option("--prefix", is_flag=True, help="Remove every record whose keys start with KEYS."),
    click.option("--group", "whole_group", is_flag=True, help="Remove every record of GROUP."),
)
def remove_command(
    location: str,
    group: str,
    keys: Keys,
    prefix: bool,
    whole_group: bool,
    name: str | None,
    identifier: str | None,
) -> None:
    """Remove GROUP[KEYS...], every record under a prefix, or a whole group.

    Prints how many records were removed; exit status 1 if there was nothing to remove.
    """
    if whole_group and (keys or prefix):
        raise click.UsageError("--group removes the whole group: give no KEYS and no --prefix")
    if not whole_group and not keys:
        raise click.UsageError("give the KEYS of a record (or a prefix, with --prefix), or --group")

    from ._cli_remove import remove_records

    async def remove(store: Storage) -> int:
        return await remove_records(store.get_group(group), keys, prefix, whole_group)

    count = on_store(location, name, identifier, remove)
    if count:
        click.echo(f"removed {counted(count)}", err=True)
    else:
        fail(f"nothing to remove at {group} {_json_view.dumps(list(keys))}", NOT_FOUND)


@_store_command("path", *_RECORD)
def path_command(
    location: str, group: str, keys: Keys, name: str | None, identifier: str | None
) -> None:
    """Print the file GROUP[KEYS...] lives in, even before it exists (file: stores)."""
    from ._file import FileBackend

    async def record_path(store: Storage) -> str:
        backend = store.backend
        if not isinstance(backend, FileBackend):
            raise ValueError(f"{location} is not a file: store; only those have record files")
        return backend.record_path(check_group_name(group), check_keys(keys, group))

    click.echo(on_store(location, name, identifier, record_path, read_only=True))


@main.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def show_command(file: Path) -> None:
    """Print any record file as pretty JSON (git's textconv for msgpack records).

    Bytes in a value are shown as {"$bytes": "<base64>"}, never as text.
    """
    from ._file_io import read_regular_file

    codec = JSONCodec() if file.suffix == ".json" else MsgpackCodec()
    try:
        data = read_regular_file(str(file))
    except OSError as exc:  # a FIFO, a link, a directory: not a record file (the input's fault)
        fail(f"{file} is not a record file to read: {exc}", USAGE)
    if data is None:
        fail(f"no such file: {file}", USAGE)
    try:
        record = codec.loads(data)
    except Exception as exc:  # a damaged record: say so, in what git diff shows
        fail(f"{file} does not decode as {codec.name}: {exc}", NOT_FOUND)
    try:
        click.echo(_json_view.dumps(record, indent=2))
    except ValueError as exc:  # nested deeper than a value may be: no record of ours
        fail(f"{file} cannot be shown: {exc}", NOT_FOUND)


@_store_command("dump", *_GROUP, _STRICT)
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


@_store_command(
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


@_store_command(
    "copy",
    click.argument("source"),
    click.argument("destination"),
    *CREATE_OPTIONS,
    click.option(
        "--merge", is_flag=True, help="Copy into a store holding records: the source wins."
    ),
    click.option("--replace", is_flag=True, help="Clear the destination store first."),
    _STRICT,
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


@_store_command("watch", *_GROUP, click.argument("prefix", nargs=-1))
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


@main.command("demo")
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


@_store_command(
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
