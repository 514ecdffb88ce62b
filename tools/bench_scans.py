"""all_items beside a raw scan of the same number of files, in interleaved rounds.

The table's all_items rows time ours and raw files minutes apart (a busy minute of the machine
falls on one of them); these rows alternate them round by round, in one process, over the same
kind of files: ours a FileBackend group written by the library, raw a directory of files each
holding the same record, read by scandir + open + read + close + ``msgpack.unpackb``. Each
subject's row is its median time a record over the rounds; the note gives the range of the
per-round ratios, and the process CPU time a record (the machine's other work left out).
A third subject, the raw loop over our group's own files, shows what the store's names and
layout cost the same system calls (names of 32 hex digits, files written by temp and rename).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from pathlib import Path

import msgpack
from bench_harness import ROUNDS, VALUE, Bench, Result, Target
from bench_peers import raw_scan

from rapid_dev_storage import FileBackend, Storage

OURS = "FileBackend msgpack fast"
RAW = "raw files"
RAW_OURS = "raw files, the store's own"
SIDE_BY_SIDE = "all_items {large}, side by side"
CPU = "all_items {large}, side by side, CPU time"

TARGETS = [
    Target(
        "(extra) all_items {large} side by side: FileBackend <= 1.3x raw scandir+read+unpack",
        (OURS, SIDE_BY_SIDE),
        (RAW, SIDE_BY_SIDE),
        1.3,
    ),
    Target(
        "(extra) all_items {large} side by side, CPU time: FileBackend <= 1.3x raw",
        (OURS, CPU),
        (RAW, CPU),
        1.3,
    ),
]


async def measure_scans_side_by_side(bench: Bench) -> None:
    """Add the rows of `SIDE_BY_SIDE` and `CPU` for ours and raw files."""
    count = bench.sizes.scan_large
    root = Path(bench.root) / "scans-side-by-side"
    raw_directory = root / "raw"
    raw_directory.mkdir(parents=True)
    data = msgpack.packb({"keys": ["k"], "value": VALUE})
    for index in range(count):
        (raw_directory / f"r{index:07}.msgpack").write_bytes(data)
    backend = await FileBackend.create_backend_instance(root, "scan", 1, durability="fast")
    wall: dict[str, list[float]] = {OURS: [], RAW: [], RAW_OURS: []}
    cpu: dict[str, list[float]] = {OURS: [], RAW: [], RAW_OURS: []}
    own_files = Path(backend._group_directory("scan"))  # measuring only
    async with Storage(backend) as store:
        group = store.get_group("scan")
        for start in range(0, count, 256):
            keys = [f"r{index:07}" for index in range(start, min(start + 256, count))]
            await asyncio.gather(*(group[key].set_value(VALUE) for key in keys))
        for turn in range(ROUNDS):
            for subject in (OURS, RAW, RAW_OURS) if turn % 2 else (RAW_OURS, RAW, OURS):
                gc.collect()
                started, started_cpu = time.perf_counter(), time.process_time()
                if subject == OURS:
                    seen = sum([1 async for _ in group.all_items()])
                    assert seen == count, (seen, count)
                else:
                    raw_scan(raw_directory if subject == RAW else own_files)
                wall[subject].append((time.perf_counter() - started) / count * 1e6)
                cpu[subject].append((time.process_time() - started_cpu) / count * 1e6)
    large = f"{count:,}"
    for rows, workload in ((wall, SIDE_BY_SIDE), (cpu, CPU)):
        ratios = [ours / raw for ours, raw in zip(rows[OURS], rows[RAW], strict=True)]
        note = f"{ROUNDS} rounds; ours/raw per round {min(ratios):.2f}-{max(ratios):.2f}x"
        own = [mine / raw for mine, raw in zip(rows[RAW_OURS], rows[RAW], strict=True)]
        own_note = f"{ROUNDS} rounds; /raw files per round {min(own):.2f}-{max(own):.2f}x"
        for subject, samples in rows.items():
            median = statistics.median(samples)
            name = workload.format(large=large)
            text = own_note if subject == RAW_OURS else note
            bench.results.append(Result(subject, name, median, 1e6 / median, text))
