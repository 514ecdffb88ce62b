"""Measure the longest event-loop stall each library operation causes (the "bad day" workloads).

A ticker task sleeps 1 ms at a time; a stall is how much later than that it woke up. Each
workload runs against FileBackend and SQLiteBackend (both at durability ``fast``, where writes
run inline on the loop), and with both codecs where the value's size makes the codec matter.
The target: no stall over 50 ms from any operation.

    python tools/measure_loop_stalls.py [--large-mb 200] [--only SUBSTRING]

``--large-mb`` sizes the "huge record" workloads (stored bytes; 200 by default, as in the issue;
building and writing it takes a while, so a smaller size gives a quicker, rougher run). A read's
value is kept until its measurement ends; "then dropping the value" is measured apart: freeing
millions of objects is the interpreter's doing, wherever the last reference goes. Stalls are
wall-clock: on a machine whose cores are busy with other work they include time the loop's
thread waited for a core (compare with ``uptime``'s load average).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

from loop_ticker import longest_stall

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage

Workload = Callable[[Storage], Awaitable[None]]


def rows(count: int) -> list[dict[str, Any]]:
    """A value made of many small records, the shape of a large cache or export."""
    return [
        {"id": index, "name": f"item {index}", "tags": ["a", "bb"], "score": index * 0.5}
        for index in range(count)
    ]


def sized_value(megabytes: float, codec: str) -> list[dict[str, Any]]:
    """Rows whose stored bytes are about ``megabytes`` (JSON's pretty form is ~2.4x msgpack)."""
    per_row = 110 if codec == "json" else 45
    return rows(int(megabytes * 1024 * 1024 / per_row))


async def open_store(kind: str, codec: str, directory: Path) -> Storage:
    if kind == "file":
        backend: Any = await FileBackend.create_backend_instance(
            directory, "stalls", 1, codec=codec, durability="fast"
        )
    else:
        backend = await SQLiteBackend.create_backend_instance(
            directory / "store.sqlite3", "stalls", 1, codec=codec, durability="fast"
        )
    return Storage(backend)


async def concurrent_sets(store: Storage) -> None:
    group = store.get_group("sets")

    async def writer(task: int) -> None:
        for index in range(20_000 // 64):
            await group[f"{task}", f"{index}"].set_value({"task": task, "index": index})

    await asyncio.gather(*(writer(task) for task in range(64)))


async def sequential_sets(store: Storage) -> None:
    group = store.get_group("seq")
    for index in range(5_000):
        await group[f"{index}"].set_value({"index": index})


async def cached_gets(store: Storage) -> None:
    handle = store.get_group("gets")["k"]
    for _ in range(20_000):
        await handle.get_value()


async def updates(store: Storage) -> None:
    handle = store.get_group("updates")["counter"]
    for _ in range(500):
        await handle.update(lambda current: (current or 0) + 1)


async def run(args: argparse.Namespace) -> None:
    small: list[tuple[str, Callable[[Storage], Awaitable[None]], Workload | None]] = [
        ("20,000 set_value from 64 tasks", concurrent_sets, None),
        ("5,000 sequential set_value", sequential_sets, None),
        ("20,000 cached get_value", cached_gets, _prepare_gets),
        ("500 update", updates, None),
    ]
    print(f"{'workload':58} {'stall ms':>9} {'took s':>8}")
    for kind in ("file", "sqlite"):
        for label, workload, prepare in small:
            await _measure(args, kind, "msgpack", label, workload, prepare)
        for codec in ("msgpack", "json"):
            await _measure_large(args, kind, codec, 20, ("get_value",))
            await _measure_large(args, kind, codec, 20, ("get_value of one string",))
        for codec in ("msgpack", "json"):
            await _measure_large(args, kind, codec, args.large_mb, ("get_value", "all_items"))


async def _prepare_gets(store: Storage) -> None:
    await store.get_group("gets")["k"].set_value({"a": 1, "b": [1, 2, 3], "c": "text"})
    await store.get_group("gets")["k"].get_value()


async def _measure(
    args: argparse.Namespace,
    kind: str,
    codec: str,
    label: str,
    workload: Callable[[Storage], Awaitable[None]],
    prepare: Workload | None,
) -> None:
    name = f"{kind} {codec}: {label}"
    if args.only and args.only not in name:
        return
    directory = Path(tempfile.mkdtemp(prefix="rds-stalls-"))
    try:
        store = await open_store(kind, codec, directory)
        async with store:
            if prepare is not None:
                await prepare(store)
            stall, took = await longest_stall(lambda: workload(store))
        print(f"{name:58} {stall:9.1f} {took:8.2f}", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _measure_large(
    args: argparse.Namespace, kind: str, codec: str, megabytes: float, operations: tuple[str, ...]
) -> None:
    prefix = f"{kind} {codec}: {megabytes:g} MB record"
    if args.only and not any(args.only in f"{prefix} {operation}" for operation in operations):
        return
    directory = Path(tempfile.mkdtemp(prefix="rds-stalls-"))
    try:
        store = await open_store(kind, codec, directory)
        async with store:
            one_string = operations == ("get_value of one string",)
            size = int(megabytes * 1024 * 1024)
            value: Any = "x" * size if one_string else sized_value(megabytes, codec)
            handle = store.get_group("large")["value"]
            await handle.set_value(value)
            del value
            for operation in operations:
                kept: list[Any] = []  # dropped after the measurement: see below

                async def read(operation: str = operation, kept: list[Any] = kept) -> None:
                    if operation == "all_items":
                        async for item in store.get_group("large").all_items():
                            kept.append(item)
                    else:
                        kept.append(await handle.get_value())

                stall, took = await longest_stall(read)
                print(f"{prefix + ' ' + operation:58} {stall:9.1f} {took:8.2f}", flush=True)

                # Freeing millions of objects is one C call holding the GIL, wherever the last
                # reference goes: the caller's doing, not the read's, so it is shown apart.
                async def drop(kept: list[Any] = kept) -> None:
                    kept.clear()

                stall, took = await longest_stall(drop)
                label = f"{prefix} then dropping the value"
                if operation == operations[-1] and not one_string:
                    print(f"{label:58} {stall:9.1f} {took:8.2f}", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mb", type=float, default=200.0)
    parser.add_argument("--only", default="", help="run only workloads whose name contains this")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
