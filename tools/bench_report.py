"""The benchmark's tables and its chart (the targets: `bench_targets`)."""

from __future__ import annotations

import dataclasses
import os
import platform
import sqlite3
from pathlib import Path
from typing import Any

from bench_harness import Bench
from bench_scaling import growth_lines
from bench_targets import target_rows

try:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
except ImportError:  # only --chart needs it (the bench extra)
    pyplot = None


def as_json(bench: Bench) -> dict[str, Any]:
    """The run's rows and target ratios, as `bench_ranges` reads them back."""
    return {
        "machine": machine(),
        "results": [dataclasses.asdict(result) for result in bench.results],
        "targets": [[label, ratio, met] for label, ratio, met in target_rows(bench)],
    }


def machine() -> str:
    cpus = os.cpu_count()
    return (
        f"{platform.system()} {platform.release()}, {platform.machine()}, {cpus} CPUs, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def report(bench: Bench, markdown: bool) -> str:
    lines = []
    if markdown:
        lines += ["| subject | workload | median µs/op | ops/s | note |", "|---|---|---:|---:|---|"]
        lines += [
            f"| {r.subject} | {r.workload} | {r.median_us:,.1f} | {r.ops_per_second:,.0f} "
            f"| {r.note} |"
            for r in bench.results
        ]
        lines += ["", "| target | measured ratio | met |", "|---|---:|---|"]
        lines += [
            f"| {label} | {ratio:.2f}x | {'yes' if met else '**no**'} |"
            for label, ratio, met in target_rows(bench)
        ]
        growth = growth_lines(bench)
        if growth:
            lines += ["", "Per-operation cost against the smallest group:", ""]
            lines += [f"- {line}" for line in growth]
        return "\n".join(lines)
    lines.append(f"{'subject':28} {'workload':18} {'median us/op':>13} {'ops/s':>11}  note")
    for r in bench.results:
        numbers = f"{r.median_us:13,.1f} {r.ops_per_second:11,.0f}"
        lines.append(f"{r.subject:28} {r.workload:18} {numbers}  {r.note}")
    lines.append("")
    for label, ratio, met in target_rows(bench):
        lines.append(f"{'met ' if met else 'MISS'} {ratio:6.2f}x  {label}")
    growth = growth_lines(bench)
    if growth:
        lines += ["", "per-operation cost against the smallest group:", *growth]
    return "\n".join(lines)


def chart(bench: Bench, path: Path) -> None:
    """Draw get and set latency of every subject that has them, ours in blue, peers in grey."""
    if pyplot is None:
        raise SystemExit("--chart needs matplotlib: pip install '.[bench]'")
    figure, axes = pyplot.subplots(1, 2, figsize=(13, 6))
    for axis, workload in zip(axes, ("get", "set"), strict=True):
        shown = (workload, f"{workload} full", f"{workload} fast")
        rows = [r for r in bench.results if r.workload in shown]
        names = [
            r.subject if r.workload == workload else f"{r.subject} ({r.workload})" for r in rows
        ]
        peers = ("raw", "plain", "disk", "aio", "asyncpg")
        colors = ["#999999" if name.startswith(peers) else "#3b7dd8" for name in names]
        axis.barh(names, [r.median_us for r in rows], color=colors)
        axis.set_xscale("log")
        axis.set_xlabel("median µs per operation (log scale; shorter is faster)")
        axis.set_title(workload)
        axis.invert_yaxis()
    figure.suptitle(f"rapid_dev_storage (blue) and peers (grey), one run: {machine()}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
