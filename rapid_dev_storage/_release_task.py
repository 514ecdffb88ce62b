"""The task that releases a closing store: it runs to its end, whoever tries to cancel it.

`StorageBackend.close` releases connections, threads and files in a task of its own, shielded
from whoever awaits the close. ``asyncio.run`` cancels every task still running once its main
coroutine returns, this one too: a program whose main returned while a close was under way had
its release stop halfway (a file store's lock files and directories left open, SQLite's worker
thread and connection left running). Its cancel is refused instead, and asyncio.run's shutdown,
which waits for the tasks it cancelled, waits for the release to finish.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine


class ReleaseTask(asyncio.Task[None]):
    """A task whose `cancel` is refused: what it releases is released whole, or never begun."""

    def cancel(self, msg: Any = None) -> bool:
        """Refuse: the release goes on (see the module's docstring); returns False."""
        return False


def release_task(release: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Start ``release`` in a `ReleaseTask` on the running loop."""
    return ReleaseTask(release, loop=asyncio.get_running_loop())
