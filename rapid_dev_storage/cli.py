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
import json
import os
import sys
from typing import Any, Callable

import click

from . import _json_view
from ._api import Storage
from ._cli_damage import Damage, counted
from ._cli_lazy import LazyCommands
from ._cli_output import (
    CREATE_OPTIONS,
    GROUP_ARGUMENTS,
    NOT_FOUND,
    STRICT,
    USAGE,
    Command,
    emit,
    fail,
    on_store,
    run,
    store_command,
)
from ._codecs import JSONCodec, MsgpackCodec
from ._types import Keys, NoValue
from ._validate import check_group_name, check_keys

# What only some commands need (fsck, copy, load, demo, the git commands, a backend) is imported
# by those commands: `get` must start in about the time of `import asyncio, msgpack` (measured by
# tools/bench_startup.py), and the backend a location names loads when it is opened.
# ruff: noqa: PLC0415

_RECORD = (
    click.argument("location"),
    click.argument("group"),
    click.argument("keys", nargs=-1, required=True),
)


def _store_command(
    name: str, *parameters: Callable[[Command], Command]
) -> Callable[[Command], Any]:
    """`_cli_output.store_command`, added to `main`."""

    def define(function: Command) -> click.Command:
        command = store_command(name, *parameters)(function)
        main.add_command(command)
        return command

    return define


@click.group(cls=LazyCommands)
@click.version_option(package_name="rapid_dev_storage")
def main() -> None:
    """Inspect, edit, dump, load and copy rapid_dev_storage stores.

    Exit status: 0 done; 1 not found, or the store failed (records that do not decode, an I/O
    error); 2 a usage or input error, found before anything was written.
    """


@_store_command("ls", *GROUP_ARGUMENTS, STRICT)
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
    except json.JSONDecodeError as exc:
        fail(f"--value is not JSON: {exc}", USAGE)
    except ValueError as exc:  # JSON, but not a value: the message names --value and the place
        fail(str(exc), USAGE)

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
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def show_command(file: str) -> None:
    """Print any record file as pretty JSON (git's textconv for msgpack records).

    Bytes in a value are shown as {"$bytes": "<base64>"}, never as text.
    """
    from ._file_io import read_regular_file

    codec = JSONCodec() if os.path.splitext(file)[1] == ".json" else MsgpackCodec()
    try:
        data = read_regular_file(file)
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
