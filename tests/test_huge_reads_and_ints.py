"""An int of thousands of digits is refused by name; a record file read in several reads.

An int over 4,300 digits cannot be turned into text (Python refuses: ValueError), so the
message that refuses it must not try: it gave a bare ValueError without group or keys. Linux
returns at most 0x7FFFF000 bytes a read, so a record file of 2 GiB or more was taken as
truncated after its first read: `read_rest` reads on while reads return what they were asked.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from rapid_dev_storage import InvalidValueError, NoValue, _file_io, open_storage


@pytest.mark.parametrize("url", ["memory:", "file:{tmp}", "file:{tmp}?codec=json"])
@pytest.mark.parametrize("value", [10**5000, {"a": [1, -(10**5000)]}], ids=["top", "inside"])
def test_an_int_of_thousands_of_digits_is_refused_naming_the_record(
    tmp_path: Path, url: str, value: object
) -> None:
    async def main() -> None:
        async with await open_storage(url.format(tmp=tmp_path), "ints", 1) as store:
            handle = store.get_group("G")["k"]
            with pytest.raises(InvalidValueError) as caught:
                await handle.set_value(value)
            assert caught.value.group == "G"
            assert caught.value.keys == ("k",)
            assert "or more in size is outside the storable range" in str(caught.value)
            assert await handle.get_value() is NoValue  # nothing stored

    asyncio.run(main())


def test_read_rest_reads_on_past_the_longest_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel's cap made small: a read that returns the cap may not be the whole file.
    monkeypatch.setattr(_file_io, "LONGEST_READ", 4096)
    data = os.urandom(3 * 4096 + 17)
    path = tmp_path / "record"
    path.write_bytes(data)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        with monkeypatch.context() as patch:
            reads: list[int] = []
            real_read = os.read

            def capped(fd: int, count: int) -> bytes:
                reads.append(count)
                return real_read(fd, min(count, 4096))

            patch.setattr(_file_io.os, "read", capped)
            assert _file_io.read_rest(descriptor, len(data), str(path)) == data
            assert len(reads) >= 4
    finally:
        os.close(descriptor)


def test_fsck_repair_leaves_a_record_too_large_to_decode_here_in_place(tmp_path: Path) -> None:
    """A valid record this process cannot decode under its memory limit is not damaged:
    fsck says so and --repair leaves it (it quarantined a valid 1.2 GB record as undecodable)."""

    async def fill() -> str:
        url = f"file:{tmp_path / 'store'}"
        async with await open_storage(url, "big", 1, durability="fast") as store:
            await store.get_group("G")["big"].set_value("x" * 150_000_000)
            backend = store.backend
            return backend.record_path("G", ("big",))  # type: ignore[attr-defined,no-any-return]

    path = asyncio.run(fill())

    def limited() -> None:  # room to read the 150 MB record, not to decode it as well
        resource.setrlimit(resource.RLIMIT_AS, (400 * 2**20, resource.RLIM_INFINITY))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rapid_dev_storage",
            "fsck",
            "--repair",
            f"file:{tmp_path / 'store'}",
        ],
        capture_output=True,
        text=True,
        preexec_fn=limited,
        timeout=120,
        check=False,
    )
    assert "more than this process can hold in memory (not damaged)" in result.stdout, result
    assert os.path.exists(path)
    assert not (tmp_path / "store" / ".quarantine").exists()
