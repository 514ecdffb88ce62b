"""Threads a store starts for one job end with it: none is left behind in the loop's executor.

asyncio's default executor keeps its threads until the loop shuts it down, so a store that
used it for opening, closing or decoding left idle threads (``asyncio_0``...) behind after
``close()``, in a program's loop that the program may run for hours. A job that runs once per
store (opening, closing) gets a thread of its own here, which ends when the job does; work that
recurs (large decodes: `_turns`) uses a pool the store owns and shuts down at close.

Our threads and ``os.fork()``: `stop_at_exit` lets queued work land as the interpreter exits,
and `fork_waits_for` keeps a fork out of the middle of a database operation, `loading` out of
the middle of a module's lazy import.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import sys
import threading
import weakref
from typing import Any, Callable, Iterator, Protocol, TypeVar

T = TypeVar("T")


class Stoppable(Protocol):
    def stop(self) -> None: ...


_STOPPED_AT_EXIT: weakref.WeakSet[Stoppable] = weakref.WeakSet()


def stop_at_exit(threads: Stoppable) -> None:
    """Have ``threads.stop()`` (their queued jobs done) run as the interpreter exits, if not before.

    For daemon threads of our own (an idle one must not keep a process alive whose store was
    never closed): atexit handlers run while daemon threads still do, so queued writes land,
    as a `ThreadPoolExecutor`'s would. `stopped` takes them off when they stop earlier.
    """
    _STOPPED_AT_EXIT.add(threads)


def stopped(threads: Stoppable) -> None:
    """Take ``threads`` off the list `stop_at_exit` made: they stopped."""
    _STOPPED_AT_EXIT.discard(threads)


@atexit.register
def _stop_at_exit() -> None:
    for threads in list(_STOPPED_AT_EXIT):
        threads.stop()


async def on_own_thread(call: Callable[..., T], *args: Any) -> T:
    """Return ``call(*args)`` run on a new thread that ends with it.

    Cancelling the awaiter does not stop the call (the work goes on, as with an executor): its
    result is then dropped, and so is a result that arrives after the loop closed. Once the
    result is returned, the thread has ended.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # the awaiter was cancelled
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def run() -> None:
        runs_no_program_code()  # our own jobs: opening, closing
        result: Any = None
        error: BaseException | None = None
        try:
            result = call(*args)
        except BaseException as exc:  # handed to the awaiter, as an executor's future would
            error = exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits the result
            loop.call_soon_threadsafe(settle, result, error)

    thread = threading.Thread(target=run, name=f"rapid_dev_storage-{call.__name__}")
    thread.start()
    result = await future
    # Its last step was handing the result over: only returning is left, so this join is
    # short, and whoever counts threads after a close finds this one gone.
    thread.join()
    return result


# --- threads that never run a program's code ---------------------------------------------------

_QUIET: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
"""Threads of ours that never run a program's code, nor touch its values (see `alone`). Held
as the threads themselves, not their idents: an ident is given again to a later thread."""


def runs_no_program_code() -> None:
    """Mark the calling thread, one of ours, as one that runs only our code on our own data."""
    _QUIET.add(threading.current_thread())


def alone() -> bool:
    """Whether nothing but the caller's own steps can run a program's code now.

    Then nothing can change a program's value between two of the caller's steps that run no
    program code (a write's snapshot and its check, `_snapshots.snapshot_fits`, which also
    pauses the collector: no finalizer runs meanwhile). True while every other thread Python
    knows of is one of ours that `runs_no_program_code` (``sys._current_frames`` lists the
    threads running Python, also those made outside Python, `threading.enumerate` the rest),
    no trace or profile function is set, and no signal handler but the defaults and asyncio's
    own is (a handler runs between any two steps of the main thread: a reviewer's changed a
    dict key there). Not seen: a thread made outside Python that first runs Python in the
    middle. Costs about 6 microseconds.
    """
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    current = threading.current_thread()
    threads = threading.enumerate()
    for thread in threads:
        if thread is not current and thread not in _QUIET:
            return False
    if not {thread.ident for thread in threads}.issuperset(sys._current_frames()):
        return False
    for handler in map(_getsignal, _SIGNALS):
        # The defaults (None, or SIG_DFL and SIG_IGN as ints) in a line, the rest by _harmless.
        if handler is not None and type(handler) is not int and not _harmless(handler):
            return False
    return True


_SIGNALS = sorted(signal.valid_signals())
try:  # the C function: signal.getsignal makes an enum of each answer (0.5 us a signal)
    from _signal import getsignal as _getsignal  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - not CPython
    _getsignal = signal.getsignal


def _harmless(handler: object) -> bool:
    """Whether a signal handler changes no program value: the defaults, or asyncio's own."""
    if handler in (signal.SIG_DFL, signal.SIG_IGN) or handler is signal.default_int_handler:
        return True
    # asyncio.run's SIGINT handler is a partial of Runner._on_sigint (it cancels the main task);
    # add_signal_handler's wakes the loop (_sighandler_noop).
    func = getattr(handler, "func", handler)
    func = getattr(func, "__func__", func)
    return getattr(func, "__module__", "").startswith("asyncio.") and getattr(
        func, "__qualname__", ""
    ) in ("Runner._on_sigint", "_sighandler_noop")


# --- fork: wait until no connection of ours is in the middle of an operation ------------------

_FORK_GATE = threading.Lock()
"""Held from before a fork to after it: one fork at a time, no lock joining or leaving meanwhile."""
_FORK_WAITS_FOR: dict[threading.Lock, bool] = {}
"""Locks each held while a connection runs an operation, that a fork takes; True: take it last."""


def fork_waits_for(lock: threading.Lock, *, last: bool = False) -> None:
    """Have every later ``os.fork()`` wait until ``lock`` is free, and hold it until it is done.

    SQLite keeps a file's lock bookkeeping in process memory, shared by all the process's
    connections to it: a fork while one of ours held a lock copied "held" into the child, where
    every connection then saw it held by another connection of its own process, for ever (its
    writes failed with LockTimeoutError). Holding ``lock`` while a connection runs an
    operation, and this, keep forks between operations. Locks held across waits for another
    process (a worker's) are taken first and ``last`` ones (held only by the loop, for
    operations that never wait) after them, so the loop waits only for the fork itself.
    Call it on a thread that may wait for a fork in progress: the gate is held meanwhile.
    """
    with _FORK_GATE:
        _FORK_WAITS_FOR[lock] = last


def fork_waits_no_more(lock: threading.Lock) -> None:
    """Undo `fork_waits_for` (on a thread that may wait for a fork in progress)."""
    with _FORK_GATE:
        _FORK_WAITS_FOR.pop(lock, None)


_LOADING = threading.RLock()
"""Held while a module loads lazily (`loading`): a fork waits until it has loaded, first."""


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Hold forks off while a module is imported lazily (the import made inside the block).

    A fork while another thread imports leaves the child that module half made and its import
    lock held by a thread the child does not have: there its first use fails ("partially
    initialized module") or hangs for good (an attacker forked during a store's first write,
    which now loads the write machinery). Taken before every other fork lock, so the thread
    importing never waits for a fork that waits for it.
    """
    with _LOADING:
        yield


def _before_fork() -> None:
    _LOADING.acquire()
    _FORK_GATE.acquire()
    for last in (False, True):
        for lock, taken_last in _FORK_WAITS_FOR.items():
            if taken_last is last:
                lock.acquire()


def _after_fork_in_parent() -> None:
    for lock in _FORK_WAITS_FOR:
        lock.release()
    _FORK_GATE.release()
    _LOADING.release()


def _after_fork_in_child() -> None:
    _after_fork_in_parent()
    # The threads that used these stayed in the parent: the child's own register anew.
    _FORK_WAITS_FOR.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
