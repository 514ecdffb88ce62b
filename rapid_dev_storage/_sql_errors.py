"""What a failed statement becomes in both SQL backends: a lock held too long, or an I/O error.

Each backend knows its own driver's errors and says which lock timed out (SQLite's database
lock, a PostgreSQL row lock); the errors and their messages are made here, once.
"""

from __future__ import annotations

from .errors import LockTimeoutError, StorageIOError


def statement_error(
    location: str,
    exc: BaseException,
    *,
    held_lock: str | None = None,
    timeout: float | None = None,
) -> LockTimeoutError | StorageIOError:
    """Return our error for a statement that failed with ``exc``; raise it ``from`` ``exc``.

    ``held_lock`` names the lock another connection held past ``timeout`` seconds, when that
    is why the statement failed; otherwise the database failed underneath us.
    """
    if held_lock is not None:
        return LockTimeoutError(
            f"{location}: another connection held {held_lock} past the timeout "
            "(raise lock_timeout= or RAPID_DEV_STORAGE_LOCK_TIMEOUT)",
            location=location,
            timeout=timeout,
        )
    return StorageIOError(f"{location}: {exc}")
