"""Turn several runs of tools/bench.py into the ranges docs/benchmarks.md reports.

One run of a benchmark on a shared 2-core VM is one sample of a noisy machine: a ratio moves by
±15% between runs. So the page reports, for every row, the median of the runs' medians and their
range, and for every target the range of its ratio and in how many runs it was met.

    python tools/bench.py --json run1.json   # three times or more
    python tools/bench_ranges.py run1.json run2.json run3.json [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def load(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in paths]


def row_ranges(runs: list[dict[str, Any]]) -> list[tuple[str, str, list[float], str]]:
    """(subject, workload, each run's median µs, the first run's note), in the first run's order."""
    order: list[tuple[str, str]] = []
    samples: dict[tuple[str, str], list[float]] = {}
    notes: dict[tuple[str, str], str] = {}
    for run in runs:
        for result in run["results"]:
            key = (result["subject"], result["workload"])
            if key not in samples:
                order.append(key)
                notes[key] = result["note"]
            samples.setdefault(key, []).append(result["median_us"])
    return [
        (subject, workload, samples[subject, workload], notes[subject, workload])
        for subject, workload in order
    ]


def target_ranges(runs: list[dict[str, Any]]) -> list[tuple[str, list[float], int]]:
    """(label, each run's ratio, runs in which it was met)."""
    order: list[str] = []
    ratios: dict[str, list[float]] = {}
    met: dict[str, int] = {}
    for run in runs:
        for label, ratio, was_met in run["targets"]:
            if label not in ratios:
                order.append(label)
            ratios.setdefault(label, []).append(ratio)
            met[label] = met.get(label, 0) + bool(was_met)
    return [(label, ratios[label], met[label]) for label in order]


def report(runs: list[dict[str, Any]]) -> str:
    count = len(runs)
    lines = [
        f"{count} runs on {runs[0]['machine']}.",
        "",
        "| subject | workload | median µs/op | range over runs | ops/s | note |",
        "|---|---|---:|---:|---:|---|",
    ]
    for subject, workload, medians, note in row_ranges(runs):
        middle = statistics.median(medians)
        spread = f"{min(medians):,.1f}-{max(medians):,.1f}"
        lines.append(
            f"| {subject} | {workload} | {middle:,.1f} | {spread} | {1e6 / middle:,.0f} | {note} |"
        )
    lines += ["", f"| target | ratio over {count} runs | met in |", "|---|---:|---|"]
    for label, ratios, met in target_ranges(runs):
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}x" if count > 1 else f"{ratios[0]:.2f}x"
        shown = f"{met}/{count}" if met == count else f"**{met}/{count}**"
        lines.append(f"| {label} | {spread} | {shown} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="files written by bench.py --json")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    arguments = parser.parse_args()
    text = report(load(arguments.runs))
    print(text)
    if arguments.markdown:
        arguments.markdown.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
