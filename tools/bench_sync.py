"""The synchronous API beside its references, measured in the same rounds.

A warm ``get_value`` of a small FileBackend record through ``rapid_dev_storage.sync`` beside
``diskcache.Cache.get`` (both synchronous, in the calling thread) and beside the async
``get_value``; a durable ``set_value`` (msgpack, durability full) beside the async one on a store
of its own. Rounds visit every subject in turn, as bench_harness's latency rounds do.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Callable

import diskcache
from bench_harness import ROUNDS, VALUE, Bench

from rapid_dev_storage import open_storage, sync

SYNC = "sync FileBackend msgpack full"
ASYNC = "FileBackend msgpack full, beside sync"
DISKCACHE = "diskcache.Cache, beside sync"
GET, SET = "warm get", "durable set"
HOT_RECORDS = 100


async def measure_sync(bench: Bench) -> None:
    """Add the rows `bench_targets.SYNC_TARGETS` compare."""
    keys = bench.keys[:HOT_RECORDS]
    root = bench.root / "sync"
    async_store = await open_storage(f"file:{root}", "async", 1, durability="full")
    sync_store = sync.open_storage(f"file:{root}", "sync", 1, durability="full")
    cache = diskcache.Cache(str(root / "diskcache"))
    try:
        async_group, sync_group = async_store.get_group("bench"), sync_store.get_group("bench")
        for key in keys:
            await async_group[key].set_value(VALUE)
            sync_group[key].set_value(VALUE)
            cache.set(key, VALUE)
        await asyncio.sleep(0.06)  # older than the read cache's racy window, as warm records are
        for key in keys:  # warm: each read once
            await async_group[key].get_value()
            sync_group[key].get_value()
            cache.get(key)
        gets: dict[str, Callable[[str], Any]] = {
            SYNC: lambda key: sync_group[key].get_value(),
            DISKCACHE: cache.get,
            ASYNC: lambda key: async_group[key].get_value(),
        }
        sets: dict[str, Callable[[str], Any]] = {
            SYNC: lambda key: sync_group[key].set_value(VALUE),
            ASYNC: lambda key: async_group[key].set_value(VALUE),
        }
        samples: dict[tuple[str, str], list[int]] = {}
        gets_per_round = max(1, bench.sizes.operations * 5 // ROUNDS)
        sets_per_round = max(1, bench.sizes.operations // 4 // ROUNDS)
        # Writes go to other records: a record written in the last 50 ms is never served from
        # the read cache, which would make the next round's gets pay for this round's sets.
        workloads = [
            (GET, gets, gets_per_round, keys),
            (SET, sets, sets_per_round, bench.keys[HOT_RECORDS : 2 * HOT_RECORDS]),
        ]
        for _ in range(ROUNDS):
            for workload, operations, count, used in workloads:
                for subject, operation in operations.items():
                    timings = samples.setdefault((subject, workload), [])
                    for index in range(count):
                        key = used[index % len(used)]
                        start = time.perf_counter_ns()
                        result = operation(key)
                        if inspect.isawaitable(result):
                            await result
                        timings.append(time.perf_counter_ns() - start)
        for (subject, workload), timings in samples.items():
            bench.add(subject, workload, timings)
    finally:
        cache.close()
        sync_store.close()
        await async_store.close()
