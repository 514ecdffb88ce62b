"""Run in separate processes by the multi-process and crash tests: real processes, real files
(or a real PostgreSQL server)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from typing import Any

from rapid_dev_storage import (
    FileBackend,
    NoValue,
    PostgresBackend,
    SQLiteBackend,
    Storage,
    StorageBackend,
    StorageIOError,
)


async def open_backend(kind: str, path: str) -> StorageBackend:
    if kind == "postgres":  # path is a DSN
        return await PostgresBackend.create_backend_instance(path, "shared", 1, durability="fast")
    if kind == "sqlite":
        return await SQLiteBackend.create_backend_instance(path, "shared", 1, durability="fast")
    return await FileBackend.create_backend_instance(path, "shared", 1, durability="fast")


async def increment(kind: str, path: str, count: int, *, atomic: bool) -> None:
    async with Storage(await open_backend(kind, path)) as store:
        counter = store.get_group("G")["counter"]

        async def add_one(current: Any) -> int:
            await asyncio.sleep(0)
            return (0 if current is NoValue else current) + 1

        async def unsafe_add_one() -> None:
            # The control: the same read, computation and write, without update().
            await counter.set_value(await add_one(await counter.get_value()))

        # Ten tasks at a time: contention inside the process and between processes.
        for _ in range(count // 10):
            if atomic:
                await asyncio.gather(*(counter.update(add_one) for _ in range(10)))
            else:
                await asyncio.gather(*(unsafe_add_one() for _ in range(10)))


async def increment_counting(path: str, count: int) -> None:
    """Increment under faults: print "ready" once open, then how many landed and how many failed.

    An increment that raised StorageIOError (the backend could not tell whether it landed) is
    counted as failed, and the worker goes on.
    """
    # Durability full: each commit waits for its WAL flush, so the run spans many terminations.
    backend = await PostgresBackend.create_backend_instance(path, "shared", 1)
    async with Storage(backend) as store:
        counter = store.get_group("G")["counter"]
        print("ready", flush=True)
        acknowledged = failed = 0

        async def add_one() -> None:
            nonlocal acknowledged, failed
            try:
                await counter.update(lambda current: current + 1)
            except StorageIOError:
                failed += 1
            else:
                acknowledged += 1

        for _ in range(count // 10):
            await asyncio.gather(*(add_one() for _ in range(10)))
        print(acknowledged, failed, flush=True)


async def count_in_processes(
    kind: str, path: str, *, atomic: bool, processes: int, each: int
) -> int:
    """From the test process: run ``processes`` workers x ``each`` increments; return the count."""
    async with Storage(await open_backend(kind, path)) as store:
        await store.get_group("G")["counter"].set_value(0)
    command = "increment" if atomic else "increment-unsafe"
    running = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, command, kind, path, str(each)
        )
        for _ in range(processes)
    ]
    for process in running:
        if await process.wait() != 0:
            raise RuntimeError(f"a {command} worker failed")
    async with Storage(await open_backend(kind, path)) as store:
        count: int = await store.get_group("G")["counter"].get_value()
    return count


async def write_forever(path: str, durability: str) -> None:
    """Write records in a loop, printing each sequence number once its write has returned."""
    backend = await FileBackend.create_backend_instance(path, "crash", 1, durability=durability)
    group = Storage(backend).get_group("G")
    sequence = 0
    while True:
        sequence += 1
        # Values large enough that a kill often lands mid-write.
        await group[f"k{sequence % 20}"].set_value({"sequence": sequence, "pad": "x" * 20_000})
        print(sequence, flush=True)


async def write_concurrently(path: str, durability: str, tasks: int, rounds: int) -> None:
    """``tasks`` tasks write records of their own (and one shared record) at once, ``rounds``
    times each (0: until killed); print "KEY SEQUENCE" once each write has returned.

    Every task's writes are numbered in order, so a record on disk must hold the last number
    printed for it, or a later one.
    """
    backend = await FileBackend.create_backend_instance(path, "commit", 1, durability=durability)
    prefix = f"{os.getpid()}-"
    async with Storage(backend) as store:
        group = store.get_group("G")

        async def task(number: int) -> None:
            sequence = 0
            while rounds == 0 or sequence < rounds:
                sequence += 1
                key = f"{prefix}{number}" if sequence % 8 else "shared"
                value = {"writer": prefix, "sequence": sequence, "pad": "x" * 4_000}
                await group[key].set_value(value)
                if key != "shared":
                    print(key, sequence, flush=True)

        await asyncio.gather(*(task(number) for number in range(tasks)))


async def burst(kind: str, path: str, writes: int, seed: int) -> None:
    """Write ``writes`` random values over 100 keys, some of them clears."""
    chooser = random.Random(seed)
    async with Storage(await open_backend(kind, path)) as store:
        group = store.get_group("G")
        for index in range(writes):
            handle = group[f"k{chooser.randrange(100)}"]
            if chooser.random() < 0.1:
                await handle.clear_value()
            else:
                await handle.set_value({"writer": seed, "index": index})


async def write_once(kind: str, path: str, key: str, value: str) -> None:
    async with Storage(await open_backend(kind, path)) as store:
        await store.get_group("G")[key].set_value(value)


async def keep_updating(kind: str, path: str, seconds: float) -> None:
    """Increment ``n`` of G/shared for ``seconds``, carrying the setter's ``set`` field along."""
    async with Storage(await open_backend(kind, path)) as store:
        handle = store.get_group("G")["shared"]

        def bump(current: Any) -> Any:
            value = {"set": -1, "n": 0} if current is NoValue else current
            return {"set": value["set"], "n": value["n"] + 1}

        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            await handle.update(bump)


async def set_and_check(kind: str, path: str, count: int) -> None:
    """Set G/shared ``count`` times; print how many reads right after a set did not see it."""
    async with Storage(await open_backend(kind, path)) as store:
        handle = store.get_group("G")["shared"]
        lost = 0
        for number in range(count):
            await handle.set_value({"set": number, "n": 0})
            # Updaters carry "set" along, so any later state holds this number, unless an
            # update computed from the state before it was renamed over it afterwards.
            if (await handle.get_value())["set"] != number:
                lost += 1
        print(lost, flush=True)


async def churn(path: str, durability: str, role: str, rounds: int) -> None:
    """Set records of group G, or clear the group, ``rounds`` times; print the errors seen."""
    backend = await FileBackend.create_backend_instance(path, "churn", 1, durability=durability)
    errors = 0
    async with Storage(backend) as store:
        group = store.get_group("G")
        for number in range(rounds):
            try:
                if role == "clear":
                    await group.clear_group()
                else:  # eight at a time: their directory fsyncs queue up, widening the window
                    await asyncio.gather(*(group[f"k{key}"].set_value(number) for key in range(8)))
            except Exception as exc:
                errors += 1
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    print(errors, flush=True)


async def write_big(path: str, count: int, megabytes: int) -> None:
    """Write one large record ``count`` times at durability full; print the failures."""
    backend = await FileBackend.create_backend_instance(path, "big", 1, durability="full")
    failures = 0
    async with Storage(backend) as store:
        handle = store.get_group("G")["big"]
        for number in range(count):
            try:
                await handle.set_value({"n": number, "pad": b"x" * (megabytes << 20)})
            except Exception as exc:
                failures += 1
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            print(f"wrote {number}", flush=True)
    print(f"failures {failures}", flush=True)


async def sweep_until(path: str, stop_file: str) -> None:
    """Open (and so sweep) the "big" store again and again until ``stop_file`` exists."""
    sweeps = 0
    while not os.path.exists(stop_file):
        backend = await FileBackend.create_backend_instance(path, "big", 1)
        await backend.close()
        sweeps += 1
    print(sweeps, flush=True)


if __name__ == "__main__":
    command, kind, path = sys.argv[1], sys.argv[2], sys.argv[3]
    if command in ("increment", "increment-unsafe"):
        asyncio.run(increment(kind, path, int(sys.argv[4]), atomic=command == "increment"))
    elif command == "increment-counting":
        asyncio.run(increment_counting(path, int(sys.argv[4])))
    elif command == "write-forever":
        asyncio.run(write_forever(path, kind))
    elif command == "write-concurrently":  # kind is the durability
        asyncio.run(write_concurrently(path, kind, int(sys.argv[4]), int(sys.argv[5])))
    elif command == "burst":
        asyncio.run(burst(kind, path, int(sys.argv[4]), int(sys.argv[5])))
    elif command == "keep-updating":
        asyncio.run(keep_updating(kind, path, float(sys.argv[4])))
    elif command == "set-and-check":
        asyncio.run(set_and_check(kind, path, int(sys.argv[4])))
    elif command == "churn":  # kind is the durability
        asyncio.run(churn(path, kind, sys.argv[4], int(sys.argv[5])))
    elif command == "write-big":
        asyncio.run(write_big(path, int(sys.argv[4]), int(sys.argv[5])))
    elif command == "sweep-until":
        asyncio.run(sweep_until(path, sys.argv[4]))
    elif command == "write-once":
        asyncio.run(write_once(kind, path, sys.argv[4], sys.argv[5]))
    else:
        raise SystemExit(f"unknown command {command!r}")
