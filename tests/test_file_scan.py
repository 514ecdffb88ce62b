"""FileBackend's scans: small records read on the loop in slices, the rest on threads."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rapid_dev_storage import CorruptRecordError, FileBackend, NoValue, Storage, StorageError
from rapid_dev_storage._file_io import Directory, FileIO
from rapid_dev_storage._file_scan import (
    FIRST_READ,
    READS_BY_DESCRIPTOR,
    SCAN_BATCH,
    read_records,
    read_slice,
)

PROMPT = 5.0  # seconds: a scan that would hang (a FIFO opened for reading) fails instead


async def open_store(path: Path, **options: Any) -> Storage:
    return Storage(await FileBackend.create_backend_instance(path, "app", 1, **options))


def record_file(store: Storage, group: str, *keys: str) -> Path:
    backend = store.backend
    assert isinstance(backend, FileBackend)
    return Path(backend.record_path(group, keys))


@pytest.mark.parametrize("inline_limit", [65536, 64, 0])  # on the loop; large ones; threads
async def test_a_scan_returns_exactly_the_records_whatever_reads_them(
    tmp_path: Path, inline_limit: int
) -> None:
    async with await open_store(tmp_path, inline_limit=inline_limit, durability="fast") as store:
        group = store.get_group("G")
        expected: dict[tuple[str, ...], Any] = {(f"k{i}",): i for i in range(600)}
        expected["big",] = "x" * 5000  # over 64 bytes: read on a thread at inline_limit=64
        expected["a", "b"] = {"nested": [1, 2]}
        for keys, value in expected.items():
            await group[keys].set_value(value)
        directory = record_file(store, "G", "k0").parent
        # Not records: a person's file, a name of the wrong case, an editor's leftover.
        (directory / "notes.msgpack").write_bytes(b"not a record")
        (directory / ("A" * 32 + ".msgpack")).write_bytes(b"not a record")
        (directory / (record_file(store, "G", "k1").name + "~")).write_bytes(b"a backup")
        fifo = record_file(store, "G", "fifo")
        os.mkfifo(fifo)
        problems: list[CorruptRecordError] = []
        found = await asyncio.wait_for(_collect(group, problems), PROMPT)
        assert found == expected
        assert [problem.location for problem in problems] == [str(fifo)]
        with pytest.raises(CorruptRecordError):
            await asyncio.wait_for(_collect(group, None), PROMPT)


async def _collect(group: Any, problems: list[CorruptRecordError] | None) -> dict[Any, Any]:
    options = {} if problems is None else {"on_corrupt": problems.append}
    return {keys: value async for keys, value in group.all_items(**options)}


# Small records: a slice is read on the loop, an open each. Records over inline_limit: a slice
# is looked at (an open each) and read on a thread (an open each), never the group at once.
@pytest.mark.parametrize(
    ("inline_limit", "value", "opens_each"), [(65536, 1, 1), (64, "x" * 100, 2)]
)
async def test_a_scan_read_partly_has_read_one_slice_not_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline_limit: int, value: Any, opens_each: int
) -> None:
    async with await open_store(tmp_path, durability="fast", inline_limit=inline_limit) as store:
        group = store.get_group("G")
        count = 4 * SCAN_BATCH
        for start in range(0, count, 128):
            await asyncio.gather(
                *(group[f"k{i}"].set_value(value) for i in range(start, start + 128))
            )
        opened: list[str] = []

        def counting_open(path: str, flags: int, mode: int = 0o777, **options: Any) -> int:
            opened.append(path)
            return os.open(path, flags, mode, **options)

        monkeypatch.setattr(FileIO, "open", staticmethod(counting_open))
        items = group.all_items()
        first = await items.__anext__()
        assert first[0][0].startswith("k")
        # One slice read, not the group: memory stays bounded however large the group is.
        assert 0 < len(opened) <= opens_each * SCAN_BATCH
        await items.aclose()  # type: ignore[attr-defined]  # an async generator's
        assert len(opened) <= opens_each * SCAN_BATCH
        assert len({keys async for keys, _ in group.all_items()}) == count


async def test_a_scan_sees_records_another_writer_changed_after_a_read(tmp_path: Path) -> None:
    async with (
        await open_store(tmp_path) as store,
        await open_store(tmp_path) as other,
    ):
        await store.get_group("G")["k"].set_value(1)
        assert await store.get_group("G")["k"].get_value() == 1  # now in the read cache
        await other.get_group("G")["k"].set_value(2)
        assert [item async for item in store.get_group("G").all_items()] == [(("k",), 2)]
        assert await store.get_group("G")["k"].get_value() == 2


@pytest.mark.parametrize("inline_limit", [65536, 0])  # read on the loop; on threads
async def test_a_copy_of_a_record_this_process_wrote_is_refused_by_a_scan(
    tmp_path: Path, inline_limit: int
) -> None:
    # The process knows the original's path for these keys; a copy of it under another name
    # must still be found out by its name (a get could never find it).
    async with await open_store(tmp_path, inline_limit=inline_limit) as store:
        group = store.get_group("G")
        await group["k"].set_value(1)  # its path is remembered now
        original = record_file(store, "G", "k")
        copy = original.with_name("0" * 32 + original.suffix)
        copy.write_bytes(original.read_bytes())
        problems: list[CorruptRecordError] = []
        items = [item async for item in group.all_items(on_corrupt=problems.append)]
        assert items == [(("k",), 1)]
        assert [problem.location for problem in problems] == [str(copy)]
        assert "copied or renamed by hand" in str(problems[0])


# --- group directories held open for first reads ----------------------------------------------


async def test_a_group_directory_swapped_for_a_link_after_a_read_is_never_read_through(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    async with await open_store(tmp_path / "stores", codec="json") as store:
        group = store.get_group("G")
        await group["k"].set_value("inside")
        await group["other"].set_value("inside too")
        assert await group["k"].get_value() == "inside"  # the directory is held from here
        path = record_file(store, "G", "other")
        directory = path.parent
        # Outside the store, a file of the very name the next read opens, holding a record.
        outside.mkdir()
        (outside / path.name).write_bytes(path.read_bytes().replace(b"inside too", b"outside"))
        directory.rename(tmp_path / "moved-away")
        directory.symlink_to(outside, target_is_directory=True)
        with pytest.raises(StorageError) as caught:
            await group["other"].get_value()
        assert "link" in str(caught.value)


async def test_a_group_directory_made_again_by_another_writer_is_read_anew(tmp_path: Path) -> None:
    async with (
        await open_store(tmp_path) as store,
        await open_store(tmp_path) as other,
    ):
        await store.get_group("G")["k"].set_value(1)
        assert await store.get_group("G")["k"].get_value() == 1
        await other.get_group("G").clear_group()  # removes the group's directory
        assert await store.get_group("G")["k"].get_value() is NoValue
        await other.get_group("G")["j"].set_value(2)  # a new directory under the same name
        await other.get_group("G")["k"].set_value(3)
        assert await store.get_group("G")["k"].get_value() == 3
        assert await store.get_group("G")["j"].get_value() == 2


async def test_closing_the_store_closes_the_directories_its_reads_held(tmp_path: Path) -> None:
    descriptors = Path("/proc/self/fd")
    if not descriptors.is_dir():
        pytest.skip("needs /proc/self/fd to count open descriptors")
    store = await open_store(tmp_path)
    for index in range(20):
        await store.get_group(f"G{index}")["k"].set_value(index)
    before = len(list(descriptors.iterdir()))
    for index in range(20):
        assert await store.get_group(f"G{index}")["k"].get_value() == index
    assert len(list(descriptors.iterdir())) >= before + 20  # held: one per group read
    await store.close()
    assert len(list(descriptors.iterdir())) <= before  # the 20 held ones too


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="needs resource limits (POSIX)")
async def test_reads_of_many_groups_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    """Held group directories never crowd out the app's files: a store reading 200 groups
    works under a limit of 96 descriptors, and when the app itself has taken nearly all of
    them, a read of another group gives up the held ones instead of failing."""
    import resource  # noqa: PLC0415  (POSIX only)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    async with await open_store(tmp_path / "s") as store:
        for index in range(201):
            await store.get_group(f"g{index}")["k"].set_value(index)
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, hard))
    taken: list[int] = []
    try:
        async with await open_store(tmp_path / "s") as store:
            for index in range(200):
                assert await store.get_group(f"g{index}")["k"].get_value() == index
            try:
                while True:
                    taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                os.close(taken.pop())  # one left: a read needs two (group and record)
            assert await store.get_group("g200")["k"].get_value() == 200  # not read before
    finally:
        for descriptor in taken:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- what replaces a record file between the listing and the read ------------------------------


@pytest.mark.skipif(not READS_BY_DESCRIPTOR, reason="scans read on threads here (no dir_fd)")
async def test_what_replaced_a_listed_record_file_is_never_read_as_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice reads files the listing called regular with no fstat: whatever stands at the
    name by the time it is opened (a FIFO a writer filled with a good record, a link to one, a
    directory, a socket) is handed to read_records, which refuses and names it."""
    async with await open_store(tmp_path, durability="fast") as store:
        group = store.get_group("G")
        names = ["fifo", "link", "directory", "socket", "kept"]
        for name in names:
            await group[name].set_value(name)
        paths = {name: record_file(store, "G", name) for name in names}
        good = {name: path.read_bytes() for name, path in paths.items()}
        directory = Directory(str(paths["kept"].parent))
        with directory, os.scandir(directory.fd) as listing:
            entries = list(listing)  # listed now: every one a regular file
            assert all(entry.is_file(follow_symlinks=False) for entry in entries)
            outside = tmp_path / "outside"
            outside.write_bytes(good["link"])
            for name in ("fifo", "link", "directory", "socket"):
                paths[name].unlink()
            os.mkfifo(paths["fifo"])
            # A writer holding the FIFO open with the record's very bytes in it: a plain read
            # would return them.
            writer = os.open(paths["fifo"], os.O_RDWR | os.O_NONBLOCK)
            server = socket.socket(socket.AF_UNIX)
            try:
                os.write(writer, good["fifo"])
                paths["link"].symlink_to(outside)
                paths["directory"].mkdir()
                monkeypatch.chdir(paths["socket"].parent)  # a socket's path has a short limit
                server.bind(paths["socket"].name)
                found, elsewhere, exhausted = read_slice(
                    directory, iter(entries), ".msgpack", 65536
                )
                assert exhausted
                assert [source for _, _, source in found] == [str(paths["kept"])]
                assert sorted(elsewhere) == sorted(paths[name].name for name in names[:4])
                reported = read_records(directory.path, "G", elsewhere, ".msgpack") or []
                assert all(isinstance(data, CorruptRecordError) for _, data, _ in reported)
                assert len(reported) == 4
                assert os.read(writer, 65536) == good["fifo"]  # nobody took the FIFO's bytes
            finally:
                server.close()
                os.close(writer)


@pytest.mark.skipif(not READS_BY_DESCRIPTOR, reason="scans read on threads here (no dir_fd)")
async def test_a_record_grown_while_a_slice_reads_it_is_read_again_on_a_thread(
    tmp_path: Path,
) -> None:
    async with await open_store(tmp_path, durability="fast") as store:
        await store.get_group("G")["k"].set_value("v" * 2 * FIRST_READ)  # read by its size
        path = record_file(store, "G", "k")
        directory = Directory(str(path.parent))
        real_pread = os.pread
        reads: list[int] = []

        def growing_pread(descriptor: int, count: int, offset: int) -> bytes:
            reads.append(count)
            if len(reads) == 2:  # after the size was taken
                path.write_bytes(path.read_bytes() + b"more")
            return real_pread(descriptor, count, offset)

        with directory, os.scandir(directory.fd) as listing:
            entries = list(listing)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(os, "pread", growing_pread)
                found, elsewhere, _ = read_slice(directory, iter(entries), ".msgpack", 65536)
        assert (found, elsewhere) == ([], [path.name])
        assert len(reads) == 2


@pytest.mark.skipif(not READS_BY_DESCRIPTOR, reason="scans read on threads here (no dir_fd)")
async def test_an_empty_record_file_is_read_again_on_a_thread(tmp_path: Path) -> None:
    """Nothing read may be /dev/null made there since the listing: the thread's fstat says."""
    async with await open_store(tmp_path, durability="fast") as store:
        await store.get_group("G")["k"].set_value("v")
        path = record_file(store, "G", "k")
        path.write_bytes(b"")
        directory = Directory(str(path.parent))
        with directory, os.scandir(directory.fd) as listing:
            found, elsewhere, _ = read_slice(directory, listing, ".msgpack", 65536)
        assert (found, elsewhere) == ([], [path.name])
        assert read_records(str(path.parent), "G", elsewhere, ".msgpack") == [
            (None, b"", str(path))
        ]


@pytest.mark.parametrize("replacement", ["fifo", "link"])
@pytest.mark.parametrize("inline_limit", [0, 64 * 1024])
async def test_a_record_replaced_while_a_scan_waits_for_it_to_settle_is_reported(
    tmp_path: Path, replacement: str, inline_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by a new user: a record met mid-save (empty, just written) is read again once it
    # settles; replaced meanwhile by a FIFO or a link, that read's error ended the whole scan
    # (StorageIOError) instead of reaching on_corrupt, as the first read's would.
    store = await open_store(tmp_path / "store", inline_limit=inline_limit)
    group = store.get_group("G")
    await group["ok"].set_value(1)
    await group["x"].set_value(2)
    path = record_file(store, "G", "x")
    path.write_bytes(b"")  # truncated by an editor a moment ago: it may be mid-save
    backend = store.backend
    may_settle = backend._may_settle

    def replaced_meanwhile(*arguments: Any) -> bool:
        if path.exists() or path.is_symlink():
            path.unlink()
            if replacement == "fifo":
                os.mkfifo(path)
            else:
                path.symlink_to(tmp_path / "outside")
        return may_settle(*arguments)

    monkeypatch.setattr(backend, "_may_settle", replaced_meanwhile)
    reported: list[CorruptRecordError] = []
    try:
        found = [item async for item in group.all_items(on_corrupt=reported.append)]
    finally:
        await store.close()
    assert found == [(("ok",), 1)]
    assert [error.location for error in reported] == [str(path)]


# --- a huge sparse file at a record's name -----------------------------------------------------


@pytest.mark.parametrize("inline_limit", [65536, 0])  # its size seen by a slice; on threads
async def test_a_huge_sparse_file_at_a_records_name_is_reported_not_read(
    tmp_path: Path, inline_limit: int
) -> None:
    """``truncate -s 64G`` on a record file: scans and gets refuse it by its size, naming it."""
    async with await open_store(tmp_path, inline_limit=inline_limit) as store:
        group = store.get_group("G")
        await group["kept"].set_value(1)
        await group["huge"].set_value(2)
        path = record_file(store, "G", "huge")
        os.truncate(path, 64 << 30)  # sparse: no disk, and no memory unless read
        problems: list[CorruptRecordError] = []
        found = [item async for item in group.all_items(on_corrupt=problems.append)]
        assert found == [(("kept",), 1)]
        assert [problem.location for problem in problems] == [str(path)]
        assert "68,719,476,736 bytes" in str(problems[0])
        with pytest.raises(CorruptRecordError, match="68,719,476,736 bytes") as raised:
            await group["huge"].get_value()
        assert raised.value.location == str(path)
        await group["huge"].set_value(3)  # the store keeps working: a write replaces it
        assert await group["huge"].get_value() == 3


LIMITED = """
import asyncio, os, resource, sys
from rapid_dev_storage import CorruptRecordError, FileBackend, Storage

async def main() -> None:
    backend = await FileBackend.create_backend_instance(sys.argv[1], "app", 1)
    async with Storage(backend) as store:
        group = store.get_group("G")
        await group["kept"].set_value(1)
        await group["huge"].set_value(2)
        os.truncate(backend.record_path("G", ("huge",)), 2 << 30)  # under the bound
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # but over what we may hold
        problems = []
        found = [item async for item in group.all_items(on_corrupt=problems.append)]
        assert found == [(("kept",), 1)], found
        assert len(problems) == 1 and "2,147,483,648 bytes" in str(problems[0]), problems
        try:
            await group["huge"].get_value()
        except CorruptRecordError as exc:
            assert "more than this process can hold" in str(exc), exc
        else:
            raise AssertionError("read")
    print("ok")

asyncio.run(main())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_AS: POSIX only")
def test_a_sparse_file_over_what_the_process_may_hold_is_reported_not_a_memory_error(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LIMITED, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.stdout.strip() == "ok", result.stderr


# --- the usual records handed over decoded ------------------------------------------------------


async def test_a_scans_usual_records_cost_the_policy_no_decode_and_a_turn_check_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FileBackend decodes its usual records as it reads them (`_scan_records`): the policy
    neither decodes them nor checks its turns once a record; the others still take its path."""
    async with await open_store(tmp_path, durability="fast") as store:
        group = store.get_group("G")
        count = 2 * SCAN_BATCH
        for start in range(0, count, 128):
            await asyncio.gather(
                *(group[f"k{i}"].set_value(f"v{i}") for i in range(start, start + 128))
            )
        await group["two", "keys"].set_value("long path")
        backend = store.backend
        decoded: list[bytes] = []
        record_of = backend._record_of

        def counted(group: str, keys: Any, data: bytes, source: str | None = None) -> Any:
            decoded.append(data)
            return record_of(group, keys, data, source)

        checks: list[None] = []
        turn_due = backend._turn_due

        def counted_turn() -> bool:
            checks.append(None)
            return turn_due()

        monkeypatch.setattr(backend, "_record_of", counted)
        monkeypatch.setattr(backend, "_turn_due", counted_turn)
        found = {keys: value async for keys, value in group.all_items()}
        expected = {(f"k{i}",): f"v{i}" for i in range(count)}
        assert found == {**expected, ("two", "keys"): "long path"}
        assert len(decoded) == 1  # the record of two keys
        assert len(checks) < count // 4  # a check a batch (and one for the long path's record)
        prefixed = [keys async for keys, _ in group.all_items("k7")]
        assert prefixed == [("k7",)]  # the policy keeps the decoded records under the prefix


async def test_a_subclass_scanning_its_own_way_keeps_its_scan(tmp_path: Path) -> None:
    seen: list[int] = []

    class Counting(FileBackend):
        def _scan(self, group: str, prefix: Any) -> Any:
            async def counted() -> Any:
                async for batch in super(Counting, self)._scan(group, prefix):
                    seen.append(len(batch))
                    yield batch

            return counted()

    backend = await Counting.create_backend_instance(tmp_path, "app", 1)
    async with Storage(backend) as store:
        await store.get_group("G")["k"].set_value(1)
        assert [item async for item in store.get_group("G").all_items()] == [(("k",), 1)]
    assert seen == [1]
