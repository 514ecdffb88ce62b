"""How many descriptors file stores may hold open between operations, for the whole process.

File stores keep group directories (for reads and for writes) and stripe lock files open between
operations: each saves system calls on every later one. They are a cache, and the descriptors
are the application's: each store caps its own, but an application opening a dozen stores
would otherwise find its own ``open()`` failing with EMFILE while the stores sit idle (13 stores
held 1,023 of 1,024). So every held descriptor is taken from one budget, an eighth of the
process's soft RLIMIT_NOFILE (at most `MOST`): 128 at the usual 1,024, 8 under ``ulimit -n 64``.
A holder refused a place uses its descriptor for the one operation and closes it, as every
operation did before descriptors were held.
"""

from __future__ import annotations

import threading

SHARE = 8
"""The budget is the soft descriptor limit divided by this."""
MOST = 512
"""Never more, however high the limit: a process rarely gains from more, and `ulimit -n
unlimited` is a real setting."""
FEWEST = 4


def _budget() -> int:
    try:
        import resource  # noqa: PLC0415  (not on Windows; asked only when a place is wanted)

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 64
    if soft < 0:  # RLIM_INFINITY
        return MOST
    return max(FEWEST, min(MOST, soft // SHARE))


class HeldBudget:
    """The process's count of descriptors held between operations, against its budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = 0

    def take(self) -> bool:
        """Take a place for one more held descriptor; False: use it once and close it.

        The limit is read again each time (a place is wanted only when a descriptor is opened
        anyway): a process that lowers or raises it meanwhile is followed.
        """
        budget = _budget()
        with self._lock:
            if self._held >= budget:
                return False
            self._held += 1
            return True

    def give_back(self, count: int = 1) -> None:
        """Give back the places of ``count`` held descriptors, closed or no longer held."""
        with self._lock:
            self._held = max(0, self._held - count)

    @property
    def held(self) -> int:
        return self._held


HELD = HeldBudget()
"""The one budget of the process (a forked child starts with its parent's count, and gives
back what it lets go of)."""
