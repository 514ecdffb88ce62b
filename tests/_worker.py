"""Run in a separate process by the multi-process tests: real processes, real files."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from rapid_dev_storage import NoValue, SQLiteBackend, Storage


async def increment(path: str, count: int, *, atomic: bool) -> None:
    backend = await SQLiteBackend.create_backend_instance(path, "shared", 1, durability="fast")
    async with Storage(backend) as store:
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


if __name__ == "__main__":
    command, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if command in ("sqlite-increment", "sqlite-increment-unsafe"):
        asyncio.run(increment(path, count, atomic=command == "sqlite-increment"))
    else:
        raise SystemExit(f"unknown command {command!r}")
