"""`FileBackend`: one file per record, one directory per group; the format is in docs/format.md.

The backend implements the hooks and only assembles the parts, each a module of its own:

- `_file_layout`: every name in a store's directory and what its files hold (pure rules);
- `_file_open`: a store's directory opened, its marker and bookkeeping made or checked;
- `_file_read`: small records read on the loop (cached), listings on threads; a get's usual
  record decoded in one step by `_file_get_decode`, a scan's by `_file_scan_decode`;
- `_file_scan_parts`: scans, made by the first (`_file_scan`: a slice of records at a time);
- `_file_write`: writes, swaps, deletes and clears, under `_file_locks`' lock stripes, through
  `_file_temps`' temp files; `_file_parts`: the threads, stripes and writes, made at first need;
- `_file_jobs`: the threads those run on (`_file_writers`, with `_file_write_job`'s jobs), and
  the order they keep (cancellation follows the work, never the task that awaited it);
- `_file_io`: the system calls, never through a link; `_file_errors`: theirs made ours;
- `_file_watch` (with `_file_events`): other writers' changes, while anyone watches.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, AsyncIterator, Literal

from ._codecs import Codec
from ._file_errors import os_errors
from ._file_get_decode import UNUSUAL, usual_value
from ._file_io import FileIO, read_file, seconds_since_change
from ._file_layout import (
    MARKER,
    decode_record,
    encode_record,
    group_directory_name,
    misnamed_record,
    record_file_name,
    record_form,
    store_directory,
)
from ._file_open import Bookkeeping, open_store_directory
from ._file_parts import FileParts
from ._file_read import HandMadeWarnings, HeldDirectories, ReadCache, group_names, read_small
from ._hooks import NOT_READY, NotReady, ScanBatch, ScanItem
from ._settings import (
    Durability,
    resolve_force_polling,
    resolve_inline_limit,
    resolve_store_options,
)
from ._threads import loading, on_own_thread
from ._types import Keys

if TYPE_CHECKING:
    from pathlib import Path

    from ._file_scan_decode import RecordOf
    from ._file_scan_parts import ScanParts
    from ._file_sweep import OrphanSweep
    from ._file_watch import FileWatcher

# Scans and the sweep load with the first of theirs (the threads and writes: `_file_parts`).
# ruff: noqa: PLC0415

__all__ = ["MARKER", "FileBackend", "FileIO", "read_file"]  # MARKER: where tests look for it

SETTLE_SECONDS = 0.25
"""A record that does not decode but changed within the last quarter second may be half-way
through a non-atomic save (nano, ``cp`` over it, ``git checkout``): reads and scans look again
while it keeps changing (see SettlesReads._settled_record); a file left alone that long is what
it is."""

SETTLE_EMPTY_SECONDS = 2.0
"""An empty record file is no record any codec writes: it is a save that truncated the file and
has not written yet (``cp`` over it; measured: a ``cp`` starved of CPU left it empty 0.4 s, one
waiting on a busy disk's journal for seconds), so it is waited for longer."""


class FileBackend(FileParts):
    """Stores each record as a file in a directory per group: friendly to git and hand edits.

    ``path`` is a directory that may hold several stores, each in its own directory named from
    ``(name, unique_identifier)``. Several processes may share a store: writes are atomic
    renames under a lock file, and readers never see a partial record.
    """

    def __init__(
        self,
        *,
        directory: str,
        codec: Codec,
        durability: Durability,
        lock_timeout: float,
        inline_limit: int,
        force_polling: bool = False,
        io: type[FileIO] | FileIO = FileIO,
        marker: bytes = b"",
        read_only: bool = False,
    ) -> None:
        """Use `create_backend_instance`; this only assembles what it opened."""
        super().__init__(codec)
        self.location = directory
        self.durability = durability
        self.read_only = read_only
        self._directory = directory
        self._inline_limit = inline_limit
        self._usual_records = type(self)._decode_record is FileBackend._decode_record  # one step
        self._force_polling = force_polling
        self._watcher: FileWatcher | None = None  # while anyone watches
        self._made_scans: ScanParts | None = None  # by the first scan
        self._sweep: OrphanSweep | None = None  # abandoned temp files, swept in the background
        self._io = io
        self._extension = codec.extension
        self._lock_timeout = lock_timeout
        self._bookkeeping = Bookkeeping(directory, marker, durable=durability == "full")
        self._group_directories: dict[str, str] = {}
        self._record_paths: dict[tuple[str, Keys], str] = {}
        self._cache = ReadCache()
        self._directories = HeldDirectories()
        self._hand_made = HandMadeWarnings(directory)

    @classmethod
    async def create_backend_instance(
        cls,
        path: Path | str,
        name: str,
        unique_identifier: int | str,
        *,
        serializer: Any = None,
        deserializer: Any = None,
        codec: str | Codec | None = None,
        durability: str | None = None,
        lock_timeout: float | None = None,
        inline_limit: int | None = None,
        force_polling: bool | None = None,
        sweep_orphans: bool = True,
        read_only: bool = False,
        own_directory: bool = False,
    ) -> FileBackend:
        """Open (creating if needed) the store ``(name, unique_identifier)`` under ``path``.

        ``codec``: ``"msgpack"`` (the default for a new store), ``"json"`` (for git and hand
        edits) or a `Codec`; left out, an existing store opens with its own. ``durability``:
        ``"full"`` (default; fsync file and directory) or ``"fast"`` (no fsync: atomic against a
        crash of the process, not against power loss). ``lock_timeout``: seconds to wait for
        another process's lock (default 10). ``inline_limit``: records up to this many bytes
        are read on the event loop's thread (default 65536; 0 sends every read to a thread, for
        slow network file systems). ``force_polling``: the change watcher polls the directory
        instead of using the OS's file events (for mounts without them: WSL, Docker volumes,
        network shares). Each also reads ``RAPID_DEV_STORAGE_<NAME>``.
        Opening sweeps temp files left by killed writers (a temp file whose writer's lock is
        gone), unless ``sweep_orphans=False`` (fsck and the command line use that): a large
        store's on a thread after it opens, which ``close`` stops (`_file_sweep`).
        ``read_only=True`` opens an existing store without changing a byte of its directory
        (no sweep, no lock directory) and refuses writes. ``own_directory=True``: ``path`` is
        the store's own directory (a copy made by hand, ``cp -r data/app~1 data/backup``), not the
        directory that holds stores.

        Raises:
            IncompatibleStoreError: the store exists with another codec or a newer format, or the
                directory holds something that is not a store.
            InvalidNameError: the names are unusable, or too long for a file name.

        """
        options = resolve_store_options(
            name,
            unique_identifier,
            codec=codec,
            serializer=serializer,
            deserializer=deserializer,
            durability=durability,
            lock_timeout=lock_timeout,
        )
        inline_limit = resolve_inline_limit(inline_limit)
        directory = (
            os.fspath(path)
            if own_directory
            else store_directory(path, options.name, options.identifier)
        )

        sweeps = sweep_orphans and not read_only
        if sweeps:
            with loading():  # forks wait for it (see _threads.loading)
                from ._file_sweep import OrphanSweep

        def open_store() -> tuple[Codec, bytes, OrphanSweep | None]:
            with os_errors(directory):
                chosen, marker = open_store_directory(directory, options, read_only=read_only)
                sweep = OrphanSweep(directory) if sweeps else None
                if sweep is not None and sweep.run_inline():
                    sweep = None  # a small store: swept whole already
                return chosen, marker, sweep

        chosen, marker, sweep = await on_own_thread(open_store)  # no thread left behind
        backend = cls(
            directory=directory,
            codec=chosen,
            durability=options.durability,
            lock_timeout=options.lock_timeout,
            inline_limit=inline_limit,
            force_polling=resolve_force_polling(force_polling),
            marker=marker,
            read_only=read_only,
        )
        if sweep is not None:
            backend._sweep = sweep
            sweep.start()
        return backend

    def record_path(self, group: str, keys: Keys) -> str:
        """Return the file that holds (or would hold) the record ``keys`` of ``group``."""
        path = self._record_paths.get((group, keys))
        if path is None:
            if len(self._record_paths) >= 65536:  # bounded: a digest costs only a microsecond
                self._record_paths.clear()
            name = record_file_name(keys, self._extension)
            path = f"{self._group_directory(group)}{os.sep}{name}"  # faster than os.path.join
            self._record_paths[group, keys] = path
        return path

    def _group_directory(self, group: str) -> str:
        directory = self._group_directories.get(group)
        if directory is None:
            if len(self._group_directories) >= 4096:  # bounded: group names may come from users
                self._group_directories.clear()
            directory = os.path.join(self._directory, group_directory_name(group))
            self._group_directories[group] = directory
        return directory

    # --- hooks ------------------------------------------------------------------------------

    async def _read(self, group: str, keys: Keys) -> bytes | None:
        data = self._read_at_once(group, keys)
        if data is not NOT_READY:
            return data
        # A large record (or no inline reads): opened, read and closed in one job on a thread,
        # so a read cancelled before its job starts has opened nothing.
        path = self.record_path(group, keys)
        return await self._jobs.read(lambda: read_file(path), location=path, reading=(group, keys))

    def _read_at_once(self, group: str, keys: Keys) -> bytes | Literal[NotReady.NOT_READY] | None:
        # On the loop (every small read) or a synchronous caller's thread: the cache is shared.
        if not self._inline_limit:
            return NOT_READY
        path = self.record_path(group, keys)
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        try:
            done, data = read_small(path, self._inline_limit, self._cache, self._directories)
        except OSError:  # made ours here, not by entering os_errors on every read (0.4 us)
            with os_errors(path, reading=(group, keys)):
                raise
        return data if done else NOT_READY

    def _changed_recently(self, group: str, keys: Keys | None, source: str | None = None) -> bool:
        if source is None:
            if keys is None:
                return False
            source = self.record_path(group, keys)
        try:
            status = os.stat(source, follow_symlinks=False)
        except OSError:
            return False
        settle = SETTLE_EMPTY_SECONDS if status.st_size == 0 else SETTLE_SECONDS
        return seconds_since_change(status) < settle

    async def _read_again(self, group: str, keys: Keys | None, source: str | None) -> bytes | None:
        if source is None:
            return await super()._read_again(group, keys, source)
        return await self._scans.read_again(group, source)  # a record a scan found

    async def _write(self, group: str, keys: Keys, data: bytes) -> None:
        await self._replace(group, keys, None, data)

    async def _swap(
        self, group: str, keys: Keys, expected: bytes | None, new: bytes | None
    ) -> bool:
        return await self._replace(group, keys, (expected,), new)

    async def _delete(self, group: str, keys: Keys) -> None:
        await self._replace(group, keys, None, None)

    async def _replace(
        self, group: str, keys: Keys, expected: tuple[bytes | None] | None, new: bytes | None
    ) -> bool:
        """Write ``new`` (None: delete) on the record's writer thread (see `RecordWrites`)."""
        path, io = self.record_path(group, keys), self._io
        jobs, writes = self._jobs, self._writes  # made here, on the loop, not in the job
        done = await jobs.write(
            path,
            group,
            keys,
            lambda abandon, later: writes.replace(io, path, expected, new, abandon, later),
        )
        self._turn_taken()  # waiting for the writer thread gave the loop its round
        return done

    async def _delete_prefix(self, group: str, prefix: Keys) -> None:
        directory, io = self._group_directory(group), self._io
        jobs, writes = self._jobs, self._writes  # made here, on the loop, not in the job
        await jobs.clear(
            group,
            prefix,
            directory,
            lambda abandon: writes.delete_matching(io, directory, prefix, abandon),
        )
        self._turn_taken()

    # --- scans: `_file_scan_parts`, made by the first ------------------------------------------

    def _scan(self, group: str, prefix: Keys) -> AsyncIterator[list[ScanItem]]:
        return self._scans.items(group)

    def _scan_records(self, group: str, prefix: Keys) -> AsyncIterator[ScanBatch]:
        if type(self)._scan is not FileBackend._scan:  # a subclass's own: its bytes, decoded above
            return super()._scan_records(group, prefix)
        return self._scans.records(group)

    def _scan_decoder(self, group: str) -> RecordOf:
        return self._scans.decoder(super()._scan_decoder(group))

    @property
    def _scans(self) -> ScanParts:
        if self._made_scans is None:
            with loading():
                from ._file_scan_parts import ScanParts

            self._made_scans = ScanParts(self)
        return self._made_scans

    async def _list_groups(self) -> list[str]:
        return await self._jobs.read(
            lambda: group_names(self._directory, self._extension, self._hand_made)
        )

    async def _close(self) -> None:
        if self._sweep is not None:
            await self._sweep.stop()
        await self._close_parts()
        self._directories.close()

    # --- watching other writers: a FileWatcher (_file_watch.py), while anyone watches ---------

    async def _start_watching(self) -> None:
        # watchfiles (and what it imports) loads for the first watch, not with the backend.
        with loading():
            from ._file_watch import FileWatcher

        self._watcher = FileWatcher(
            self,
            read_file=read_file,
            jobs=self._jobs,
            force_polling=self._force_polling,
            hand_made=self._hand_made,
        )
        await self._watcher.start()

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.stop()

    def _published(self, group: str, keys: Keys, data: bytes | None) -> None:
        if self._watcher is not None:
            self._watcher.published(group, keys, data)
        super()._published(group, keys, data)

    def _encode_record(self, keys: Keys, value: Any) -> bytes:
        return encode_record(self.codec, keys, value)

    def _record_form(self, keys: Keys, value: Any) -> Any:
        return record_form(keys, value)

    def _value_of_form(self, form: Any) -> Any:
        return form["value"]

    def _value_of(self, group: str, keys: Keys, data: bytes, source: str | None = None) -> Any:
        value = usual_value(self.codec, keys, data) if self._usual_records else UNUSUAL  # one step
        return self._record_of(group, keys, data, source)[1] if value is UNUSUAL else value

    def _decode_record(
        self, group: str, keys: Keys | None, data: bytes, source: str | None
    ) -> tuple[Keys, Any]:
        found_keys, value = decode_record(self.codec, data)
        # Read by keys, the file was named from them; found by listing, its name must match.
        if keys is not None:
            misplaced = found_keys != keys
        else:
            # rpartition, not basename: sources are joined with os.sep, and it costs a third.
            misplaced = source is not None and source.rpartition(os.sep)[2] != record_file_name(
                found_keys, self._extension
            )
        if misplaced:
            where = source or self.record_path(group, keys or found_keys)
            raise misnamed_record(group, found_keys, where, self._extension)
        return found_keys, value

    def _describe_record(self, group: str, keys: Keys | None) -> str:
        # Errors name the record's file, where a person can look at it.
        return self.record_path(group, keys) if keys is not None else self._directory

    def __repr__(self) -> str:
        return f"FileBackend({self._directory!r}, codec={self.codec.name!r})"
