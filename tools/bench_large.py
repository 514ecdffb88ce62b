"""Large values: a durable and a fast ``set_value`` of 50 KB and 1 MB beside the same bytes written
by hand, and the check of a value beside the codec's encode of it.

Two shapes of value. ``str`` (and ``bytes`` for msgpack): one big payload in a small dict, where
the peers write the already-encoded record (encoding it is a copy). ``rows``: a dict of many small
row-dicts (1,000 rows: ~43 KB; 24,000: ~1 MB), where hand-written code must encode too, so the
peer is the same encode (``msgpack.packb``, ``json.dumps`` with the codec's arguments) plus the
same system calls; its ``pre-encoded`` workload is the system calls alone (our row's note gives
that ratio too). Peers: raw files (temp open, write, fsync, close, ``os.replace``, directory fsync
at ``full``; no fsyncs at ``fast``) and plain sqlite3 running SQLiteBackend's own upsert on its
own table and file. Rounds visit every subject in turn (`Bench.measure_latencies`).
Beside them, `ENCODE`: what our set does on the loop before its write job, so a str or bytes
row's note can give its ratio to the peer with the encode taken out.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any, Callable

import msgpack
from bench_harness import ROUNDS, Bench, Subject
from bench_peers import raw_write
from loop_ticker import ticking

from rapid_dev_storage import FileBackend, SQLiteBackend, Storage, StorageBackend
from rapid_dev_storage._snapshots import SNAPSHOTS
from rapid_dev_storage._sqlite import table_name
from rapid_dev_storage._threads import alone
from rapid_dev_storage._validate import check_value
from rapid_dev_storage._value_fits import value_fits

SIZES = {"50 KB": (50_000, 1_000), "1 MB": (1_000_000, 24_000)}
"""Label: (payload bytes, rows)."""
OPERATIONS = {"50 KB": 50, "1 MB": 15}
QUICK_OPERATIONS = {"50 KB": ROUNDS, "1 MB": ROUNDS}
RECORDS = 8  # sets rotate over these keys: every set replaces a record
OURS = [
    (kind, codec, durability)
    for kind, codecs in (("file", ("msgpack", "json")), ("sqlite", ("msgpack",)))
    for codec in codecs
    for durability in ("full", "fast")
]
"""bench.py's backends but MemoryBackend (no bytes to write): (kind, codec, durability)."""
PRE_ENCODED = "pre-encoded"
VALIDATION = "value check"
ENCODE = "FileBackend encode at the call"
"""What one of our file sets spends before its system calls: `_encode_at_call` (the snapshot,
the check, the codec's bytes), on the loop, for each codec, size and shape (see
`add_encode_notes`)."""
STALL_ROWS = 200_000
STALL = f"loop held during a set of {STALL_ROWS:,} rows"
"""The longest the event loop waited on this process (`loop_ticker.ticking`'s "held": the stall
less its wait for a core) while one task sets a value of ~10 MB: budget 50 ms."""


def ours_name(kind: str, codec: str, durability: str) -> str:
    return f"FileBackend {codec} {durability}" if kind == "file" else f"SQLiteBackend {durability}"


def peer_name(kind: str, codec: str, durability: str) -> str:
    """The peer of one of ours: raw files of the same codec, or plain sqlite3."""
    if kind == "file":
        return f"raw {codec} files {durability}"
    return f"plain sqlite3 {'FULL' if durability == 'full' else 'NORMAL'}"


def workload(size: str, shape: str) -> str:
    return f"set {size} {shape}"


def shapes(codec: str) -> list[str]:
    return ["str", "bytes", "rows"] if codec == "msgpack" else ["str", "rows"]


def make_value(size: str, shape: str) -> Any:
    payload, count = SIZES[size]
    if shape == "rows":
        return {
            f"r{index:05}": {"id": index, "name": f"u{index}", "score": index * 0.5, "ok": True}
            for index in range(count)
        }
    text = ("the quick brown fox jumps over the lazy dog " * (payload // 44 + 1))[:payload]
    return {"name": "large", "payload": text if shape == "str" else text.encode()}


def encoder(codec: str) -> Callable[[Any], bytes]:
    """What hand-written code runs: the codec's encode, with the codec's arguments."""
    if codec == "msgpack":
        return lambda value: msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]

    def dumps(value: Any) -> bytes:
        text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, allow_nan=False)
        return (text + "\n").encode("utf-8")

    return dumps


def record(value: Any) -> dict[str, Any]:
    """A FileBackend record: its keys beside the value (what the raw files hold too)."""
    return {"keys": ["k"], "value": value}


async def open_large(bench: Bench, kind: str, codec: str, durability: str) -> StorageBackend:
    root = bench.root / "large"
    if kind == "file":
        return await FileBackend.create_backend_instance(
            root / "file", "large", f"{codec}-{durability}", codec=codec, durability=durability
        )
    return await SQLiteBackend.create_backend_instance(
        root / f"sqlite-{durability}.db", "large", 1, codec=codec, durability=durability
    )


def raw_writer(directory: Path, durable: bool) -> Callable[[bytes], None]:
    """The same system calls as FileBackend's write: temp file, rename, fsyncs at ``full``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [str(directory / f"k{index}.bin") for index in range(RECORDS)]

    def write(data: bytes) -> None:
        raw_write(random.choice(paths), data, durable)

    return write


def sqlite_writer(path: Path, durable: bool) -> tuple[Callable[[bytes], None], sqlite3.Connection]:
    """Plain sqlite3 on SQLiteBackend's table and file, with its upsert."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    table = '"' + table_name("large", "1") + '"'
    upsert = f"INSERT OR REPLACE INTO {table} VALUES (?, ?, '', '', '', '', 1, ?)"

    def write(data: bytes) -> None:
        connection.execute(upsert, ("large", f"k{random.randrange(RECORDS)}", data))

    return write, connection


async def large_subjects(bench: Bench, sizes: list[str]) -> tuple[list[Subject], list[Any]]:
    """Ours and the peers, each with one workload per size and shape; and what to close."""
    subjects: list[Subject] = []
    closers: list[Any] = []
    encoding = Subject(ENCODE)
    for kind, codec, durability in OURS:
        backend = await open_large(bench, kind, codec, durability)
        store = Storage(backend)
        closers.append(store.close)
        group = store.get_group("large")
        ours, peer = (
            Subject(ours_name(kind, codec, durability)),
            Subject(peer_name(kind, codec, durability)),
        )
        durable = durability == "full"
        if kind == "file":
            write = raw_writer(bench.root / "large" / peer.name.replace(" ", "-"), durable)
        else:
            write, connection = sqlite_writer(
                bench.root / "large" / f"sqlite-{durability}.db", durable
            )
            closers.append(connection.close)
        encode = encoder(codec)
        for size in sizes:
            for shape in shapes(codec):
                value = make_value(size, shape)
                name = workload(size, shape)
                ours.latency[name] = setter(group, value)
                # FileBackend writes a record (the value beside its keys); SQLite the value.
                stored = record(value) if kind == "file" else value
                if shape == "rows":
                    peer.latency[name] = encode_and(write, encode, stored)
                    peer.latency[f"{name} {PRE_ENCODED}"] = bind(write, encode(stored))
                else:
                    peer.latency[name] = bind(write, encode(stored))
                if kind == "file" and durability == "fast":  # the same encode at both
                    encoding.latency[f"{codec} {name}"] = encode_at_call(backend, value)
        subjects += [ours, peer]
    return [*subjects, encoding], closers


def encode_at_call(backend: StorageBackend, value: Any) -> Callable[[], Any]:
    """What a set of ``value`` runs on the loop before the write job (our private hook)."""
    return lambda: backend._encode_at_call("large", ("k",), value)


def setter(group: Any, value: Any) -> Callable[[], Any]:
    return lambda: group[f"k{random.randrange(RECORDS)}"].set_value(value)


def bind(write: Callable[[bytes], None], data: bytes) -> Callable[[], None]:
    return lambda: write(data)


def encode_and(
    write: Callable[[bytes], None], encode: Callable[[Any], bytes], value: Any
) -> Callable[[], None]:
    return lambda: write(encode(value))


def validation_subject(sizes: list[str]) -> Subject:
    """The check a write makes beside the codec's encode, on the rows shape (str is trivial).

    What a write checks is its snapshot (a thread may change the caller's value meanwhile).
    Where no other thread can run a program's code (`_threads.alone`) the value itself is what
    the snapshot holds and is checked: for msgpack `alone` and `value_fits` (leaving ints and
    str subclasses to the strict encoder), as ``_snapshots.snapshot_fits`` does, whether or not
    this process (whose earlier benches leave threads) is alone; json's `check_value`. The
    rows ", other threads" are the check where another thread could: the snapshot decoded into
    a private copy, which is checked.
    """
    subject = Subject(VALIDATION)
    json_encode = encoder("json")
    for size in sizes:
        value = make_value(size, "rows")
        snapshot, tuples = SNAPSHOTS.take(value)

        def msgpack_copy_check(snapshot: bytes = snapshot) -> object:
            copy = msgpack.unpackb(snapshot, raw=False, strict_map_key=False)
            return value_fits(copy, 0, True, True, True, True)

        def json_copy_check(snapshot: bytes = snapshot) -> None:
            copy = msgpack.unpackb(snapshot, raw=False, strict_map_key=False)
            check_value(copy, allow_bytes=False, allow_non_finite=False)

        subject.latency[f"msgpack check {size} rows"] = lambda value=value, tuples=tuples: (
            alone(),
            value_fits(value, 0, True, True, True, not tuples),
        )
        subject.latency[f"msgpack check {size} rows, other threads"] = msgpack_copy_check
        subject.latency[f"msgpack encode {size} rows"] = lambda value=value: msgpack.packb(value)
        subject.latency[f"json check {size} rows"] = lambda value=value: check_value(
            value, allow_bytes=False, allow_non_finite=False
        )
        subject.latency[f"json check {size} rows, other threads"] = json_copy_check
        subject.latency[f"json encode {size} rows"] = lambda value=value: json_encode(value)
    return subject


async def measure_large(bench: Bench, quick: bool) -> None:
    """Add every large-value row (`bench_targets.LARGE_TARGETS` compares them)."""
    counts = QUICK_OPERATIONS if quick else OPERATIONS
    subjects, closers = await large_subjects(bench, list(SIZES))
    subjects.append(validation_subject(list(SIZES)))
    try:
        for size in SIZES:  # one size at a time: its own count of operations
            chosen = [
                Subject(s.name, {w: op for w, op in s.latency.items() if f" {size} " in w})
                for s in subjects
            ]
            await bench.measure_latencies(chosen, counts[size])
    finally:
        for close in reversed(closers):
            result = close()
            if hasattr(result, "__await__"):
                await result
    add_syscall_notes(bench)
    add_encode_notes(bench)
    await measure_large_stalls(bench, 1 if quick else 3)


async def measure_large_stalls(bench: Bench, runs: int) -> None:
    """Add the `STALL` row of each of ours at ``fast``: the median of ``runs`` sets."""
    value = make_value("1 MB", "rows") | {
        f"s{index:06}": {"id": index, "name": f"u{index}", "score": 0.5, "ok": True}
        for index in range(STALL_ROWS - SIZES["1 MB"][1])
    }
    for kind, codec, durability in OURS:
        if durability != "fast":
            continue
        async with Storage(await open_large(bench, kind, codec, durability)) as store:
            handle = store.get_group("stall")["rows"]
            held, stalls = [], []
            for _ in range(runs):
                async with ticking() as stall:
                    await handle.set_value(value)
                held.append(int(stall[3] * 1e6))
                stalls.append(stall[0])
            note = f"stall {min(stalls):.0f}-{max(stalls):.0f} ms (with the wait for a core)"
            bench.add(ours_name(kind, codec, durability), STALL, held, note)


def add_encode_notes(bench: Bench) -> None:
    """Note on our file rows of one payload their encode, and their ratio to the peer without it.

    Where a row misses its target, this says whether the encode (ours: snapshot, check and
    codec; the peer's value was encoded once, beforehand) or the write makes the difference.
    """
    for kind, codec, durability in OURS:
        if kind != "file":
            continue
        for size in SIZES:
            for shape in shapes(codec):
                if shape == "rows":
                    continue  # the peer encodes too: its note compares the system calls
                name = workload(size, shape)
                ours = bench.get(ours_name(kind, codec, durability), name)
                peer = bench.get(peer_name(kind, codec, durability), name)
                encoded = bench.get(ENCODE, f"{codec} {name}").median_us
                rest = (ours.median_us - encoded) / peer.median_us
                ours.note = f"encode {encoded:,.0f} us; {rest:.2f}x the peer without it"


def add_syscall_notes(bench: Bench) -> None:
    """Note on our rows sets their ratio to the peer's system calls alone (no encode)."""
    for kind, codec, durability in OURS:
        for size in SIZES:
            name = workload(size, "rows")
            ours = bench.get(ours_name(kind, codec, durability), name)
            alone = bench.get(peer_name(kind, codec, durability), f"{name} {PRE_ENCODED}")
            ours.note = f"{ours.median_us / alone.median_us:.2f}x the system calls alone"
