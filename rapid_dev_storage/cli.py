"""The ``rapid-dev-storage`` command (also ``python -m rapid_dev_storage``).

A store is named by a location (``file:DIR``, ``sqlite:FILE``, ``postgresql://...``) and, when
the location holds more than one store, ``--name`` and ``--id``. Values go in and come out as
JSON. Exit status: 0 done, 1 not found, 2 a usage or input error (nothing written).
The commands are defined here; what they share is in `_cli_output`, the work behind copy and
fsck in `_cli_work`; edit, resolve, merge-driver and git-setup are in `_cli_git`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import click

from ._api import Storage
from ._cli_git import GIT_COMMANDS
from ._cli_output import emit, on_store, open_storage, progress, reported_errors, run
from ._cli_work import copy_records, verify
from ._codecs import JSONCodec, MsgpackCodec
from ._demo import show_files, tour
from ._file import FileBackend
from ._file_io import read_regular_file
from ._fsck import Report, check, check_records
from ._jsonl import encode_line, parse_lines
from ._locations import choose_store, open_location, stores_at
from ._types import Keys, NoValue
from ._validate import check_group_name, check_keys

Command = Callable[..., Any]

_STORE_OPTIONS = (
    click.option("--name", help="The store's name, when the location holds several."),
    click.option("--id", "identifier", help="The store's unique identifier."),
)
_GROUP = (click.argument("location"), click.argument("group", required=False))
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


@click.group(commands=GIT_COMMANDS)
@click.version_option(package_name="rapid_dev_storage")
def main() -> None:
    """Inspect, edit, dump, load and copy rapid_dev_storage stores."""


@_store_command("ls", *_GROUP)
def list_command(
    location: str, group: str | None, name: str | None, identifier: str | None
) -> None:
    """List the stores at LOCATION, the groups of its store with record counts, or GROUP's keys."""

    async def work() -> None:
        stores = await stores_at(location)
        if group is None and name is None and identifier is None and len(stores) > 1:
            for store_name, store_id in stores:
                emit({"name": store_name, "id": store_id})
            return
        async with await open_storage(location, name, identifier) as store:
            if group is None:
                for group_name in await store.list_groups():
                    count = sum([1 async for _ in store.get_group(group_name)])
                    emit({"group": group_name, "records": count})
                return
            keys = sorted([keys async for keys, _ in store.get_group(group)])
            for record_keys in keys:
                emit(list(record_keys))

    run(work)


@_store_command("get", *_RECORD)
def get_command(
    location: str, group: str, keys: Keys, name: str | None, identifier: str | None
) -> None:
    """Print the value of GROUP[KEYS...] as JSON (exit status 1 if there is none)."""
    value = on_store(
        location, name, identifier, lambda store: store.get_group(group)[keys].get_value()
    )
    if value is NoValue:
        click.echo(f"no value at {group} {list(keys)}", err=True)
        sys.exit(1)
    with reported_errors():
        emit(value)


@_store_command(
    "set",
    *_RECORD,
    click.option("--value", "-v", "text", required=True, help="The value, as JSON ('-': stdin)."),
)
def set_command(
    location: str, group: str, keys: Keys, text: str, name: str | None, identifier: str | None
) -> None:
    """Store a JSON value at GROUP[KEYS...]."""
    source = sys.stdin.read() if text == "-" else text
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        click.echo(f"error: --value is not JSON: {exc}", err=True)
        sys.exit(2)
    on_store(
        location, name, identifier, lambda store: store.get_group(group)[keys].set_value(value)
    )


@_store_command("rm", *_RECORD)
def remove_command(
    location: str, group: str, keys: Keys, name: str | None, identifier: str | None
) -> None:
    """Remove GROUP[KEYS...] (nothing there is not an error)."""
    on_store(location, name, identifier, lambda store: store.get_group(group)[keys].clear_value())


@_store_command("path", *_RECORD)
def path_command(
    location: str, group: str, keys: Keys, name: str | None, identifier: str | None
) -> None:
    """Print the file GROUP[KEYS...] lives in, even before it exists (file: stores)."""

    async def record_path(store: Storage) -> str:
        backend = store.backend
        if not isinstance(backend, FileBackend):
            raise ValueError(f"{location} is not a file: store; only those have record files")
        return backend.record_path(check_group_name(group), check_keys(keys, group))

    click.echo(on_store(location, name, identifier, record_path))


@main.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def show_command(file: Path) -> None:
    """Print any record file as pretty JSON (git's textconv for msgpack records)."""
    codec = JSONCodec() if file.suffix == ".json" else MsgpackCodec()
    try:
        data = read_regular_file(str(file))
        if data is None:
            raise FileNotFoundError(f"no such file: {file}")
        record = codec.loads(data)
        click.echo(json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True, default=repr))
    except Exception as exc:  # a damaged file: say so, in what git diff shows
        click.echo(f"error: {file} does not decode as {codec.name}: {exc}", err=True)
        sys.exit(2)


@_store_command("dump", *_GROUP)
def dump_command(
    location: str, group: str | None, name: str | None, identifier: str | None
) -> None:
    """Write the store (or GROUP) as JSON Lines, sorted by group and keys, to stdout."""

    async def dump(store: Storage) -> None:
        groups = [group] if group is not None else await store.list_groups()
        with progress("dump") as bar:
            for group_name in groups:
                records = [item async for item in store.get_group(group_name)]
                for keys, value in sorted(records, key=lambda item: item[0]):
                    click.echo(encode_line(group_name, keys, value), nl=False)
                    bar.update(1)

    on_store(location, name, identifier, dump)


@_store_command(
    "load",
    click.argument("location"),
    click.argument("source", type=click.File("r", encoding="utf-8")),
    click.option("--create", is_flag=True, help="Create the store if it does not exist."),
    click.option("--codec", type=click.Choice(["json", "msgpack"]), help="For a new store."),
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

    Every line is checked first: if any is bad, nothing is written.
    """
    lines = source.read().splitlines()

    async def work() -> int:
        backend = await open_location(location, name, identifier, create=create, codec=codec)
        async with Storage(backend) as store:
            records = parse_lines(enumerate(lines, start=1), backend.codec)
            with progress("load", total=len(records)) as bar:
                for group_name, keys, value in records:
                    await store.get_group(group_name)[keys].set_value(value)
                    bar.update(1)
            return len(records)

    click.echo(f"loaded {run(work)} records", err=True)


@main.command("copy")
@click.argument("source")
@click.argument("destination")
@click.option("--name", help="The source store's name, when SOURCE holds several.")
@click.option("--id", "identifier", help="The source store's unique identifier.")
@click.option("--codec", type=click.Choice(["json", "msgpack"]), help="For a new destination.")
def copy_command(
    source: str, destination: str, name: str | None, identifier: str | None, codec: str | None
) -> None:
    """Copy every record from SOURCE to DESTINATION (any backend to any), then verify it."""

    async def work() -> int:
        memory = source.startswith("memory:")
        names = ("memory", "1") if memory else await choose_store(source, name, identifier)
        async with await open_storage(source, *names) as origin:
            target = await open_location(destination, *names, create=True, codec=codec)
            async with Storage(target) as copy:
                with progress("copy") as bar:
                    count = await copy_records(origin, copy, bar)
                await verify(origin, copy)
        return count

    click.echo(f"copied and verified {run(work)} records", err=True)


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
    default=Path("fixtures/store"),
    show_default=True,
    help="The sample store (it is copied: the demo never changes it).",
)
def demo_command(fixtures: Path) -> None:
    """Tour the library on a copy of the bundled sample store."""

    async def work() -> None:
        with tempfile.TemporaryDirectory(prefix="rds-demo-") as scratch:
            copy = Path(scratch) / "store"
            shutil.copytree(fixtures, copy)
            backend = await open_location(f"file:{copy}")
            print(f"Store: {backend!r} (a copy of {fixtures})\n")
            async with Storage(backend) as store:
                await tour(store)
                if isinstance(backend, FileBackend):
                    show_files(backend)

    run(work)


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
    missing marker; editors' leftovers are ignored. ``--repair`` puts records under their own
    names (keeping a differing copy beside one as NAME.conflict.json), removes orphaned temp
    files and moves what does not decode into the store's .quarantine/ directory. SQLite and
    PostgreSQL stores: undecodable records (reported only). Ends with a summary line (with
    ``--json``, a JSON object on stderr).
    """

    async def work() -> Report:
        backend = await open_location(
            location, name, identifier, sweep_orphans=False, read_only=True
        )
        async with Storage(backend) as store:
            backend = store.backend
            if isinstance(backend, FileBackend):
                with progress("fsck") as bar:
                    return await asyncio.to_thread(
                        check, backend, repair=repair, on_file=lambda: bar.update(1)
                    )
            return await check_records(store)

    # fsck's output: _fsck.Report says what to print, and where (the "handmade" change).
    report = run(work)
    for line, to_stderr in report.lines(as_json=as_json):
        click.echo(line, err=to_stderr)
    if not report.clean:
        sys.exit(1)
