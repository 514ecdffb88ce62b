"""Measure the longest event-loop stall each library operation causes (the "bad day" workloads).

A ticker task sleeps 1 ms at a time; a stall is how much later than that it woke up. Beside
each stall, where it went (see loop_ticker.ticking): the time the loop's thread ran (work done
on the loop), the time it was ready but had no core (the machine's other load); the rest it
waited for the GIL another thread held (a long C call there), or its timer fired late (on a
virtual machine, the host's doing: see the noise lines). "held" is the longest stall less its
wait for a core. The target: no stall over 50 ms from any operation.

Every case runs ``--runs`` times (3 by default), interleaved, and is reported as a range with
its median, beside baselines measured in the same runs:

- ``noise``: the loop alone; the loop while one thread runs Python (what any work on a
  thread costs it: the GIL changes hands every 5 ms, then the loop's thread needs a core);
  another process rewriting 5,000 files with nobody watching.
- ``floor``: one ``msgpack.unpackb`` of the huge record on a thread (one C call building the
  whole value, GIL held throughout: what slicing avoids); what no slicing can avoid: one such
  call building a single 20 MB string (compare "get_value of one string"), and freeing a large
  ``bytes`` (CPython frees memory holding the GIL, on whichever thread drops it).

The cases: FileBackend and SQLiteBackend (durability ``fast``) with many small operations;
``get_value`` of a 20 MB record; ``get_value``, ``all_items`` and ``clear_prefix`` of a huge
record (``--large-mb``, 200 by default, as in the issue), with both codecs; and a FileBackend
watcher while another process rewrites 5,000 record files. A read's value is kept until its
measurement ends; dropping it is shown apart ("caller drops the value"): freeing millions of
objects is one C call in the caller's code, wherever the last reference goes.

    python tools/measure_loop_stalls.py [--runs 3] [--large-mb 200] [--only TEXT[,TEXT...]]

Stalls are wall-clock: on a machine whose cores are busy with other work they include time the
loop's thread waited for a core (compare with the noise lines and ``uptime``'s load average).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgpack
from loop_ticker import ticking
from measure_watch_stalls import _REWRITER, _file_store, _write_elsewhere

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage

Workload = Callable[[Storage], Awaitable[None]]
Sample = tuple[float, float, float, float, float]  # ms: stall, then during it the loop ran and
# waited for a core; the longest stall less its wait for a core (see ticking); seconds taken


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


async def measure(work: Callable[[], Awaitable[Any]]) -> Sample:
    async with ticking() as stall:
        began = time.perf_counter()
        await work()
        taken = time.perf_counter() - began
    return stall[0], stall[1], stall[2], stall[3], taken


# --- many small operations ----------------------------------------------------------------


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


async def cache_one(store: Storage) -> None:
    await store.get_group("gets")["k"].set_value({"a": 1, "b": [1, 2, 3], "c": "text"})
    await store.get_group("gets")["k"].get_value()


async def cached_gets(store: Storage) -> None:
    handle = store.get_group("gets")["k"]
    for _ in range(20_000):
        await handle.get_value()


async def updates(store: Storage) -> None:
    handle = store.get_group("updates")["counter"]
    for _ in range(500):
        await handle.update(lambda current: (current or 0) + 1)


SMALL: dict[str, tuple[Workload | None, Workload]] = {  # (prepare, measured)
    "20,000 set_value from 64 tasks": (None, concurrent_sets),
    "5,000 sequential set_value": (None, sequential_sets),
    "20,000 cached get_value": (cache_one, cached_gets),
    "500 update": (None, updates),
}


class Run:
    """One pass over every case; samples go to ``results`` under each case's name."""

    def __init__(self, args: argparse.Namespace, results: dict[str, list[Sample]]) -> None:
        self.args = args
        self.results = results

    def wanted(self, name: str) -> bool:
        return not self.args.only or any(part in name for part in self.args.only.split(","))

    def record(self, name: str, sample: Sample) -> None:
        self.results.setdefault(name, []).append(sample)
        stall, ran, core, held, took = sample
        print(
            f"  {name:70} {stall:8.1f} {ran:6.1f} {core:6.1f} {held:6.1f} {took:7.2f}", flush=True
        )

    async def in_directory(self, body: Callable[[Path], Awaitable[None]]) -> None:
        directory = Path(tempfile.mkdtemp(prefix="rds-stalls-"))
        try:
            await body(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def noise(self) -> None:
        if self.wanted("noise: the loop alone (2 s)"):
            self.record("noise: the loop alone (2 s)", await measure(lambda: asyncio.sleep(2)))
        name = "noise: one thread running Python (10 s, as long as a huge decode)"
        if self.wanted(name):
            self.record(name, await measure(lambda: asyncio.to_thread(_spin, 10)))
        name = "noise: 5,000 files rewritten by another process, nobody watching"
        if self.wanted(name):
            await self.in_directory(lambda directory: self._rewrite(directory, name, False))

    async def watcher(self) -> None:
        name = "file json: watcher while another process rewrites 5,000 files"
        if self.wanted(name):
            await self.in_directory(lambda directory: self._rewrite(directory, name, True))

    async def _rewrite(self, directory: Path, name: str, watching: bool) -> None:
        count = 5_000
        store = await _file_store(directory, count, {"index": 0})
        async with store:
            paths = [store.backend.record_path("G", (f"k{i}",)) for i in range(count)]  # type: ignore[attr-defined]
            if watching:
                async with store.watch() as changes:
                    sample = await measure(
                        lambda: _write_elsewhere(changes, count, _REWRITER, *paths)
                    )
            else:
                sample = await measure(lambda: _run_script(_REWRITER, *paths))
        self.record(name, sample)

    async def small(self, kind: str) -> None:
        for label, (prepare, workload) in SMALL.items():
            name = f"{kind} msgpack: {label}"

            async def body(
                directory: Path, name: str = name, prepare: Any = prepare, workload: Any = workload
            ) -> None:
                async with await open_store(kind, "msgpack", directory) as store:
                    if prepare is not None:
                        await prepare(store)
                    self.record(name, await measure(lambda: workload(store)))

            if self.wanted(name):
                await self.in_directory(body)

    async def large(self, kind: str, codec: str, megabytes: float, one_string: bool) -> None:
        prefix = f"{kind} {codec}: {megabytes:g} MB record"
        huge = megabytes == self.args.large_mb and not one_string
        operations = ["get_value", "all_items", "clear_prefix"] if huge else ["get_value"]
        suffix = " of one string" if one_string else ""
        wanted = [op for op in operations if self.wanted(f"{prefix} {op}{suffix}")]
        if not wanted:
            return

        async def body(directory: Path) -> None:
            async with await open_store(kind, codec, directory) as store:
                group = store.get_group("large")
                handle = group["big", "value"]
                size = int(megabytes * 1024 * 1024)
                await handle.set_value("x" * size if one_string else sized_value(megabytes, codec))
                kept: list[Any] = []

                async def get() -> None:
                    kept.append(await handle.get_value())

                async def all_items() -> None:
                    async for item in group.all_items():
                        kept.append(item)

                async def drop() -> None:
                    kept.clear()

                reads = {"get_value": get, "all_items": all_items}
                for operation in wanted:
                    name = f"{prefix} {operation}{suffix}"
                    if operation in reads:
                        self.record(name, await measure(reads[operation]))
                        self.record(f"{name}: caller drops the value", await measure(drop))
                    else:  # the record goes: last
                        self.record(name, await measure(lambda: group.clear_prefix("big")))

        await self.in_directory(body)

    async def large_set(self, kind: str, codec: str) -> None:
        """set_value and update of 200,000 rows (~9 MB msgpack): checked, encoded off the loop."""
        count = 200_000
        for operation in ("set_value", "update"):
            name = f"{kind} {codec}: {operation} of {count:,} rows"
            if not self.wanted(name):
                continue

            async def body(directory: Path, name: str = name, operation: str = operation) -> None:
                async with await open_store(kind, codec, directory) as store:
                    handle = store.get_group("large")["rows"]
                    value = rows(count)
                    if operation == "set_value":
                        work = lambda: handle.set_value(value)  # noqa: E731
                    else:
                        work = lambda: handle.update(lambda current: value)  # noqa: E731
                    self.record(name, await measure(work))

            await self.in_directory(body)

    async def floors(self) -> None:
        megabytes = self.args.large_mb
        name = f"floor: msgpack.unpackb of a {megabytes:g} MB record on a thread (one C call)"
        if self.wanted(name):
            data = msgpack.packb(sized_value(megabytes, "msgpack"))
            self.record(name, await measure(lambda: asyncio.to_thread(msgpack.unpackb, data)))
            del data
        name = "floor: msgpack.unpackb of one 20 MB string on a thread (one C call)"
        if self.wanted(name):
            data = msgpack.packb("x" * 20 * 1024 * 1024)
            self.record(name, await measure(lambda: asyncio.to_thread(msgpack.unpackb, data)))
            del data
        name = f"floor: a thread frees {megabytes:g} MB of bytes"
        if self.wanted(name):
            holder = [os.urandom(int(megabytes * 1024 * 1024))]
            self.record(name, await measure(lambda: asyncio.to_thread(holder.clear)))


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _run_script(script: str, *arguments: str) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, *arguments)
    assert await process.wait() == 0


async def run(args: argparse.Namespace) -> None:
    results: dict[str, list[Sample]] = {}
    print(f"  {'case':70} {'stall ms':>8} {'ran':>6} {'core':>6} {'held':>6} {'took s':>7}")
    for number in range(1, args.runs + 1):
        print(f"run {number} of {args.runs} (load average {os.getloadavg()[0]:.1f})", flush=True)
        one = Run(args, results)
        await one.noise()
        for kind in ("file", "sqlite"):
            await one.small(kind)
            for codec in ("msgpack", "json"):
                await one.large(kind, codec, 20, one_string=False)
                await one.large(kind, codec, 20, one_string=True)
                await one.large(kind, codec, args.large_mb, one_string=False)
                await one.large_set(kind, codec)
        await one.watcher()
        await one.floors()
    print(f"\n{args.runs} runs, in ms: longest stall, range (median); during it the loop ran,")
    print("and waited for a core (the rest it waited for the GIL); held: the longest stall less")
    print("its wait for a core")
    for name, samples in results.items():
        stall, ran, core, held = ([sample[index] for sample in samples] for index in range(4))
        print(
            f"  {name:70} {min(stall):6.1f}-{max(stall):<6.1f} ({statistics.median(stall):6.1f})"
            f" ran {min(ran):5.1f}-{max(ran):<5.1f} core {min(core):5.1f}-{max(core):<5.1f}"
            f" held {min(held):5.1f}-{max(held):<5.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large-mb", type=float, default=200.0)
    parser.add_argument(
        "--only", default="", help="run only cases whose name contains this (or one of a,b,c)"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
