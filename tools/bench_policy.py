"""The policy layer every backend pays: MemoryBackend beside a dict and msgpack doing its work.

MemoryBackend's hooks are a dict lookup or store, so what its get or set costs beyond a dict
and msgpack's own decode or encode of the same record is the policy above every backend: the
handle, the checks of names and keys, the value check (msgpack's strict encoder and
a get's decode of its bytes), the write-back rule on reads, turns for the loop, the coroutines.
Every backend pays it on every operation, on top of its own work.

    python tools/bench.py            # rows "dict + msgpack" beside "MemoryBackend"
"""

from __future__ import annotations

import msgpack
from bench_harness import VALUE, Bench, Subject

FLOOR = "dict + msgpack"
MEMORY = "MemoryBackend"


def policy_floor(bench: Bench) -> Subject:
    """A dict of msgpack records keyed as MemoryBackend keys them: its work, no policy."""
    records = {("bench", (key,)): msgpack.packb(VALUE) for key in bench.keys}

    def get() -> object:
        return msgpack.unpackb(records[("bench", (bench.random_key(),))])

    def put() -> None:
        records[("bench", (bench.random_key(),))] = msgpack.packb(VALUE)

    return Subject(FLOOR, {"get": get, "set": put})
