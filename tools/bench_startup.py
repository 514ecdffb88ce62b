"""Start-up and opening: import time, the command line's ``get``, and opening a file store.

Every process is timed whole (wall clock, ``python -c ...`` started by ``subprocess``), in rounds
that run each command once in turn, so a slow second of the machine falls on all of them; the
row is the median. Opening is timed in this process: a FileBackend store of 10 records beside
one of 100,000 (``--open-records`` makes it 400,000), opened and closed in turn, each open
followed by its close (a sweep left running would be paid there).

    python tools/bench_startup.py [--quick] [--runs N] [--open-records N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_harness import QUICK, VALUE, Bench, Result

from rapid_dev_storage import FileBackend
from rapid_dev_storage._codecs import MsgpackCodec
from rapid_dev_storage._file_layout import (
    encode_record,
    group_directory_name,
    record_file_name,
    store_directory,
)

STARTUP = "start-up"
BASELINE = "python -c 'import asyncio, msgpack'"
IMPORT = "import rapid_dev_storage"
IMPORT_CLI = "import rapid_dev_storage.cli"
CLI_GET = "rapid-dev-storage get, small store"
CLI_GET_LARGE = "rapid-dev-storage get, {large} records"
OPEN = "FileBackend open+close"
OPEN_SMALL = "10 records"
OPEN_LARGE = "{large} records"
SMALL = 10

# The console script's own lines (pip writes them): what a person's `rapid-dev-storage` runs.
_CLI = "import sys; from rapid_dev_storage.cli import main; sys.exit(main())"


async def make_store(root: Path, name: str, count: int) -> None:
    """Create the store's marker through the library, then fill its group."""
    backend = await FileBackend.create_backend_instance(root, name, 1, codec="msgpack")
    await backend.close()
    directory = store_directory(root, name, "1")
    shutil.rmtree(os.path.join(directory, group_directory_name("G")), ignore_errors=True)
    await asyncio.to_thread(_fill_group, directory, count)


def _fill_group(directory: str, count: int) -> None:
    """Write ``count`` real records, encoded by the layout's own functions, written plainly.

    That is what a store written by the library holds, made ten times faster than through it.
    """
    codec = MsgpackCodec()
    group = os.path.join(directory, group_directory_name("G"))
    os.makedirs(group, exist_ok=True)
    for index in range(count):
        keys = (f"k{index:07}",)
        with open(os.path.join(group, record_file_name(keys, codec.extension)), "xb") as file:
            file.write(encode_record(codec, keys, VALUE))


def time_processes(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Run every command once per round, ``runs`` rounds; return each one's median seconds."""
    timings: dict[str, list[float]] = {label: [] for label in commands}
    for command in commands.values():  # once untimed: the page cache and .pyc files
        subprocess.run(command, check=True, capture_output=True)
    for _ in range(runs):
        for label, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            timings[label].append(time.perf_counter() - start)
    return {label: statistics.median(samples) for label, samples in timings.items()}


async def time_opens(roots: dict[str, Path], runs: int) -> dict[str, float]:
    """Open and close each store once per round, ``runs`` rounds; return median seconds."""
    timings: dict[str, list[float]] = {label: [] for label in roots}
    for _ in range(runs):
        for label, root in roots.items():
            start = time.perf_counter()
            backend = await FileBackend.create_backend_instance(root, label, 1)
            await backend.close()
            timings[label].append(time.perf_counter() - start)
    return {label: statistics.median(samples) for label, samples in timings.items()}


async def measure_startup(bench: Bench, *, runs: int, open_records: int) -> None:
    """Add the start-up and open rows `bench_report.STARTUP_TARGETS` compare."""
    root = bench.root / "startup"
    large = f"{open_records:,}"
    small_name, large_name = OPEN_SMALL, OPEN_LARGE.format(large=large)
    print(f"filling a store of {large} records...", file=sys.stderr)
    await make_store(root, small_name, SMALL)
    await make_store(root, large_name, open_records)
    python = sys.executable
    small_location = f"file:{store_directory(root, small_name, '1')}"
    large_location = f"file:{store_directory(root, large_name, '1')}"
    commands = {
        BASELINE: [python, "-c", "import asyncio, msgpack"],
        IMPORT: [python, "-c", "import rapid_dev_storage"],
        IMPORT_CLI: [python, "-c", "import rapid_dev_storage.cli"],
        CLI_GET: [python, "-c", _CLI, "get", small_location, "G", "k0000001"],
        CLI_GET_LARGE.format(large=large): [
            *(python, "-c", _CLI, "get", large_location, "G", "k0000001")
        ],
    }
    print("timing start-up...", file=sys.stderr)
    for label, seconds in (await asyncio.to_thread(time_processes, commands, runs)).items():
        bench.results.append(Result(STARTUP, label, seconds * 1e6, 1 / seconds))
    print("timing opens...", file=sys.stderr)
    opens = await time_opens({small_name: root, large_name: root}, runs * 2)
    for label, seconds in opens.items():
        bench.results.append(Result(OPEN, label, seconds * 1e6, 1 / seconds))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs, small stores")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 15; quick 3)")
    parser.add_argument("--open-records", type=int, default=None, help="default 100,000")
    arguments = parser.parse_args()
    runs = arguments.runs or (3 if arguments.quick else 15)
    records = arguments.open_records or (1_000 if arguments.quick else 100_000)
    bench = Bench(QUICK, Path(tempfile.mkdtemp(prefix="rds-startup-")))
    try:
        await measure_startup(bench, runs=runs, open_records=records)
    finally:
        shutil.rmtree(bench.root, ignore_errors=True)
    for r in bench.results:
        print(f"{r.subject:24} {r.workload:40} {r.median_us / 1000:9.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
