"""Opening a file store's directory: its marker, ``.gitignore`` and ``.locks`` made or checked.

A new store's directory gets its marker and ``.gitignore``, each created whole and only once
however many processes open it together; an existing one's marker is checked field by field,
and its ``.gitignore`` made again if a person removed it (never by a read-only open).
Nothing here lists the store: opening costs the same at 10 records and at 400,000. Those files
are bookkeeping that ``git clean -fdx``, ``rsync --delete`` or a person may remove under a
running process: `Bookkeeping` makes them again. Also here: the stores a directory holds, found
by their markers (for the tools).
"""

from __future__ import annotations

import contextlib
import os

from ._codecs import Codec, codec_by_name
from ._file_io import Directory, FileIO, UnsafeEntryError, read_in, read_regular_file
from ._file_layout import (
    GITIGNORE,
    GITIGNORE_TEXT,
    LOCK_DIRECTORY,
    MARKER,
    check_marker,
    is_bookkeeping,
    marker_bytes,
    marker_names,
)
from ._settings import StoreOptions
from ._threads import loading
from .errors import IncompatibleStoreError


def open_store_directory(
    directory: str, options: StoreOptions, *, read_only: bool
) -> tuple[Codec, bytes]:
    """Open the store in ``directory`` (creating it unless ``read_only``); on a thread.

    Return its codec and its marker's bytes (kept, to make the marker again if it is removed).
    ``read_only`` changes nothing on disk: no store there is an error. A few system calls,
    whatever the store holds: the sweep of abandoned temp files is `_file_sweep`'s.
    """
    if read_only:
        data = _read_marker(directory)
        if data is None:
            raise IncompatibleStoreError(f"{directory} is not a store: no {MARKER}")
        marker = os.path.join(directory, MARKER)
        return check_marker(marker, data, options.name, options.identifier, options.codec), data
    return _open_marker(directory, options)


class Bookkeeping:
    """The store's directory, marker, .gitignore and .locks, made again when removed.

    ``git clean -fdx``, ``rsync --delete`` or a person may remove them under a running
    process; the store's data is the records, and this keeps writing them possible.
    """

    def __init__(self, directory: str, marker: bytes, *, durable: bool) -> None:
        self._directory = directory
        self._marker = marker
        self._marker_path = os.path.join(directory, MARKER)
        self._durable = durable

    def marker_missing(self) -> bool:
        """Whether the marker is gone (then `recreate`)."""
        return not os.path.lexists(self._marker_path)

    def recreate(self) -> None:
        """Make the store's directory, marker, .gitignore and .locks again, if removed."""
        os.makedirs(os.path.join(self._directory, LOCK_DIRECTORY), exist_ok=True)
        for name, text in ((MARKER, self._marker), (GITIGNORE, GITIGNORE_TEXT.encode())):
            target = os.path.join(self._directory, name)
            if text and not os.path.lexists(target):
                _create_once(self._directory, target, text, self._durable)


def stores_in(path: str) -> list[tuple[str, str]]:
    """Return the ``(name, unique_identifier)`` of every store in directory ``path``, sorted.

    Markers are read like the store reads them (never waiting on a FIFO); one that gives no
    names is left out: opening that store names the problem.
    """
    found = []
    if os.path.isdir(path):
        for entry in sorted(os.listdir(path)):
            try:
                data = read_regular_file(os.path.join(path, entry, MARKER))
            except OSError:
                continue
            names = marker_names(data) if data is not None else None
            if names is not None:
                found.append(names)
    return found


def _open_marker(directory: str, options: StoreOptions) -> tuple[Codec, bytes]:
    """Create the store's directory and marker, or check an existing marker."""
    marker_path = os.path.join(directory, MARKER)
    os.makedirs(directory, exist_ok=True)
    data = _read_marker(directory)
    if data is None:
        unknown = [entry for entry in os.listdir(directory) if not is_bookkeeping(entry)]
        if unknown:
            raise IncompatibleStoreError(
                f"{directory} has no {MARKER} but holds {sorted(unknown)[:3]}: it is not a "
                "rapid_dev_storage store; choose another path or name"
            )
        codec = options.codec if options.codec is not None else codec_by_name("msgpack")
        durable = options.durability == "full"
        text = marker_bytes(codec, options.name, options.identifier)
        _create_once(directory, marker_path, text, durable)
        data = _read_marker(directory) or b""
    codec = check_marker(marker_path, data, options.name, options.identifier, options.codec)
    _ensure_gitignore(directory, durable=options.durability == "full")
    locks = os.path.join(directory, LOCK_DIRECTORY)
    with contextlib.suppress(FileExistsError):
        os.mkdir(locks)
    try:
        Directory(locks).close()  # a link or a file there is refused now, not at the first lock
    except UnsafeEntryError as exc:
        raise IncompatibleStoreError(
            f"{locks} is a {exc.kind}, not the store's lock directory: rapid_dev_storage keeps "
            "its lock files there and never follows links; remove it (it is made again)"
        ) from exc
    return codec, data


def _ensure_gitignore(directory: str, *, durable: bool) -> None:
    """Make the store's ``.gitignore`` if it is missing: a new store's, or one a person removed.

    At every open that may write (one ``lstat``; never per write): without it, ``git status``
    lists the lock files and unfinished writes as the store's. One that is there is never
    touched, whatever it says (a person may have edited it). A directory this process may not
    write into (a store on a read-only mount, say) keeps going without it: reads still work.
    """
    gitignore = os.path.join(directory, GITIGNORE)
    if not os.path.lexists(gitignore):
        with contextlib.suppress(OSError):
            _create_once(directory, gitignore, GITIGNORE_TEXT.encode(), durable)


def _read_marker(directory: str) -> bytes | None:
    """Read the marker; a link or FIFO in its place is refused, never followed or waited on."""
    try:
        root = Directory(directory, follow=True)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with root:
        try:
            return read_in(root, MARKER)
        except UnsafeEntryError as exc:
            raise IncompatibleStoreError(
                f"{root.join(MARKER)} is a {exc.kind}, not the store's marker (a regular file): "
                "rapid_dev_storage never follows links inside a store; if it is this store's "
                "marker, put the file itself there"
            ) from exc


def _create_once(directory: str, target: str, data: bytes, durable: bool) -> None:
    """Create ``target`` whole, unless another process created it first."""
    with loading():  # a new store's, not every open's; forks wait for it (_threads.loading)
        from ._file_temps import TempFile  # noqa: PLC0415

    with Directory(directory, follow=True) as root:
        temp = TempFile(FileIO, root, data, durable)
        try:
            os.link(root.join(temp.name), target)  # atomic "create if absent": the first wins
        except FileExistsError:
            pass
        except OSError:
            if not os.path.lexists(target):  # a file system without hard links
                temp.commit(os.path.basename(target))
        finally:
            temp.discard()
        if durable:
            root.sync(FileIO)
