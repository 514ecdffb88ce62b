"""Start-up and opening: import time, the command line's ``get``, and opening a file store.

Every process is timed whole (wall clock of ``python -c ...`` run by ``subprocess``, from a
directory of its own, so a checkout in the working directory is not what it imports), in rounds
that run each command once in turn, so a slow second of the machine falls on all of them; the
row is the median. Each process's CPU time (user + system, all its threads) is kept too: on a
machine others share, a process waiting for a core costs wall time but not CPU time, so the
``start-up, CPU time`` rows move less with the load. The processes run with bytecode caches
(``PYTHONPYCACHEPREFIX`` in a temp directory, written by an untimed first round), as an
installed package has them: pip compiles on install. ``--no-bytecode`` times compiling the
sources on every start instead (what PYTHONDONTWRITEBYTECODE=1 does to a source checkout).
Opening is timed in this process: a FileBackend store of 10 records beside one of 100,000
(``--open-records`` sets it; 400,000 takes a minute to fill), each opened and closed in turn (a
sweep left running is paid at close).

``--beside PYTHON`` times the same processes with another interpreter in the same rounds (say,
the virtual environment of an installed clone of main) and prints both side by side, each
command's median and best against that interpreter's own ``import asyncio, msgpack``: how a
change moves start-up, on a busy machine.

    python tools/bench_startup.py [--quick] [--runs N] [--open-records N] [--no-bytecode]
    python tools/bench_startup.py --beside /tmp/main-clone/.venv/bin/python [--runs N]
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

from bench_harness import QUICK, VALUE, Bench, Result, Target

from rapid_dev_storage import FileBackend
from rapid_dev_storage._codecs import MsgpackCodec
from rapid_dev_storage._file_layout import (
    encode_record,
    group_directory_name,
    record_file_name,
    store_directory,
)

STARTUP = "start-up"
STARTUP_CPU = "start-up, CPU time"
BASELINE = "import asyncio, msgpack"
IMPORT = "import rapid_dev_storage"
IMPORT_CLI = "import rapid_dev_storage.cli"
CLI_GET = "rapid-dev-storage get"
CLI_GET_LARGE = "rapid-dev-storage get, large store"
OPEN = "FileBackend open+close"
OPEN_SMALL = "small store"
OPEN_LARGE = "large store"
SMALL = 10

# The console script's own lines (pip writes them): what a person's `rapid-dev-storage` runs.
_CLI = "import sys; from rapid_dev_storage.cli import main; sys.exit(main())"


TARGETS = [
    Target(
        "import rapid_dev_storage <= 1.3x import asyncio, msgpack (whole processes)",
        (STARTUP, IMPORT),
        (STARTUP, BASELINE),
        1.3,
    ),
    Target(
        "rapid-dev-storage get, small store <= 1.5x python -c 'import asyncio, msgpack'",
        (STARTUP, CLI_GET),
        (STARTUP, BASELINE),
        1.5,
    ),
    Target(
        "(extra) rapid-dev-storage get, small store: CPU time <= 1.5x import asyncio, msgpack's",
        (STARTUP_CPU, CLI_GET),
        (STARTUP_CPU, BASELINE),
        1.5,
    ),
    Target(
        "(extra) rapid-dev-storage get, large store <= 1.2x small store",
        (STARTUP, CLI_GET_LARGE),
        (STARTUP, CLI_GET),
        1.2,
    ),
    Target(
        "FileBackend open+close, large store <= 1.2x small store",
        (OPEN, OPEN_LARGE),
        (OPEN, OPEN_SMALL),
        1.2,
    ),
]


async def make_store(root: Path, name: str, count: int) -> None:
    """Create the store's marker through the library, then fill its group."""
    backend = await FileBackend.create_backend_instance(root, name, 1, codec="msgpack")
    await backend.close()
    await asyncio.to_thread(_fill_group, store_directory(root, name, "1"), count)


def _fill_group(directory: str, count: int) -> None:
    """Write ``count`` real records, encoded by the layout's own functions, written plainly.

    That is what a store written by the library holds, made without an fsync or a lock each.
    """
    codec = MsgpackCodec()
    group = os.path.join(directory, group_directory_name("G"))
    os.makedirs(group, exist_ok=True)
    for index in range(count):
        keys = (f"k{index:07}",)
        with open(os.path.join(group, record_file_name(keys, codec.extension)), "xb") as file:
            file.write(encode_record(codec, keys, VALUE))


def time_processes(
    commands: dict[str, list[str]], runs: int, cache: Path | None, directory: Path
) -> dict[str, tuple[list[float], list[float]]]:
    """Run every command once per round, ``runs`` rounds, in ``directory``.

    Return each command's wall-clock seconds and CPU seconds, one of each per round.
    ``cache``: where the processes keep bytecode (None: they compile every module every time).
    """
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    if cache is None:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        environment["PYTHONPYCACHEPREFIX"] = str(cache)
    timings: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in commands}
    for command in commands.values():  # untimed: writes the bytecode, warms the page cache
        _run(command, environment, directory)
    for _ in range(runs):
        for label, command in commands.items():
            wall, cpu = _run(command, environment, directory)
            timings[label][0].append(wall)
            timings[label][1].append(cpu)
    return timings


def _run(command: list[str], environment: dict[str, str], directory: Path) -> tuple[float, float]:
    """Run ``command`` to its end; return its wall-clock and CPU seconds (it must succeed)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment, cwd=directory
    )
    assert process.stderr is not None
    error = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, stderr=error)
    return wall, usage.ru_utime + usage.ru_stime


def startup_commands(python: str, small: str, big: str) -> dict[str, list[str]]:
    """The timed processes, run by ``python``: ``small`` and ``big`` are the stores' URLs."""
    return {
        BASELINE: [python, "-c", BASELINE],
        IMPORT: [python, "-c", IMPORT],
        IMPORT_CLI: [python, "-c", IMPORT_CLI],
        CLI_GET: [python, "-c", _CLI, "get", small, "G", "k0000001"],
        CLI_GET_LARGE: [python, "-c", _CLI, "get", big, "G", "k0000001"],
    }


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


async def measure_startup(
    bench: Bench, *, runs: int, open_records: int, bytecode: bool = True
) -> None:
    """Add the start-up and open rows `bench_targets.STARTUP_TARGETS` compare."""
    root = bench.root / "startup"
    large = f"{open_records:,} records"
    print(f"filling a store of {large}...", file=sys.stderr)
    await make_store(root, OPEN_SMALL, SMALL)
    await make_store(root, OPEN_LARGE, open_records)
    small = f"file:{store_directory(root, OPEN_SMALL, '1')}"
    big = f"file:{store_directory(root, OPEN_LARGE, '1')}"
    commands = startup_commands(sys.executable, small, big)
    notes = {CLI_GET: f"{SMALL} records", CLI_GET_LARGE: large}
    cache = root / "bytecode" if bytecode else None
    print("timing start-up...", file=sys.stderr)
    timed = await asyncio.to_thread(time_processes, commands, runs, cache, root)
    for subject, which in ((STARTUP, 0), (STARTUP_CPU, 1)):
        for label, samples in timed.items():
            if subject == STARTUP_CPU and label not in (BASELINE, IMPORT, CLI_GET):
                continue
            seconds = statistics.median(samples[which])
            note = notes.get(label, "")
            if not bytecode:
                note = f"{note}, no bytecode" if note else "no bytecode"
            bench.results.append(Result(subject, label, seconds * 1e6, 1 / seconds, note))
    print("timing opens...", file=sys.stderr)
    opened = await time_opens({OPEN_SMALL: root, OPEN_LARGE: root}, runs * 4)
    for label, seconds in opened.items():
        note = large if label == OPEN_LARGE else f"{SMALL} records"
        bench.results.append(Result(OPEN, label, seconds * 1e6, 1 / seconds, note))


async def compare_beside(other: str, *, runs: int, root: Path, bytecode: bool) -> str:
    """Time the start-up processes of this interpreter and of ``other`` in the same rounds.

    Return a table: each command's median wall clock, and its median and best wall clock and
    median CPU time against its own interpreter's ``import asyncio, msgpack``; then this
    interpreter's median over the other's.
    """
    await make_store(root, OPEN_SMALL, SMALL)
    await make_store(root, OPEN_LARGE, 1_000)
    small = f"file:{store_directory(root, OPEN_SMALL, '1')}"
    big = f"file:{store_directory(root, OPEN_LARGE, '1')}"
    pythons = {"this": sys.executable, "beside": other}
    commands = {
        f"{which} {label}": command
        for which, python in pythons.items()
        for label, command in startup_commands(python, small, big).items()
    }
    cache = root / "bytecode" if bytecode else None
    print(f"timing start-up, {runs} rounds...", file=sys.stderr)
    timed = await asyncio.to_thread(time_processes, commands, runs, cache, root)
    lines = [
        f"this: {sys.executable}",
        f"beside: {other}",
        "(each: median wall clock; then median, best and median CPU time as ratios to its own"
        f" {BASELINE!r})",
        "",
    ]
    for label in startup_commands("", "", ""):
        cells, medians = [], []
        for which in pythons:
            walls, cpus = timed[f"{which} {label}"]
            base_walls, base_cpus = timed[f"{which} {BASELINE}"]
            median = statistics.median(walls)
            medians.append(median)
            ratios = (
                median / statistics.median(base_walls),
                min(walls) / min(base_walls),
                statistics.median(cpus) / statistics.median(base_cpus),
            )
            cells.append(f"{which} {median * 1e3:6.1f} ms " + " ".join(f"{r:.2f}x" for r in ratios))
        lines.append(f"{label:36} {'  '.join(cells)}  this/beside {medians[0] / medians[1]:.2f}x")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, a small large store")
    parser.add_argument("--runs", type=int, help="rounds (default 15; --quick 3)")
    parser.add_argument("--open-records", type=int, help="the large store (default 100,000)")
    parser.add_argument("--no-bytecode", action="store_true", help="compile on every start")
    parser.add_argument("--beside", metavar="PYTHON", help="another interpreter, side by side")
    arguments = parser.parse_args()
    bench = Bench(QUICK, Path(tempfile.mkdtemp(prefix="rds-startup-")))
    if arguments.beside:
        try:
            print(
                await compare_beside(
                    arguments.beside,
                    runs=arguments.runs or (3 if arguments.quick else 15),
                    root=bench.root,
                    bytecode=not arguments.no_bytecode,
                )
            )
        finally:
            shutil.rmtree(bench.root, ignore_errors=True)
        return
    try:
        await measure_startup(
            bench,
            runs=arguments.runs or (3 if arguments.quick else 15),
            open_records=arguments.open_records or (1_000 if arguments.quick else 100_000),
            bytecode=not arguments.no_bytecode,
        )
    finally:
        shutil.rmtree(bench.root, ignore_errors=True)
    from bench_report import report  # noqa: PLC0415  (it imports this module, and every peer)

    print(report(bench, markdown=False))


if __name__ == "__main__":
    asyncio.run(main())
