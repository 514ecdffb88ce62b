"""A store as JSON Lines: one ``{"group", "keys", "value"}`` object per line.

The command line's ``dump`` and ``load`` and `Storage.dump` / `Storage.load` share this format,
so a file written by either is read by the other. Lines are sorted by group, then keys: the same
store always dumps to the same bytes, which diff well in git.

`Storage.dump` and `Storage.load` run inside an application's event loop: the file is written
and read through ``aiofiles`` in large chunks (one thread hop per chunk, never per record), and
the work done on the loop (encoding, parsing) gives the loop a turn between slices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable

from ._json_view import from_view, parse, to_view
from ._turns import Yielder
from ._types import Keys
from ._validate import check_group_name, check_keys, check_value

if TYPE_CHECKING:
    from ._api import Storage
    from ._codecs import Codec

CHUNK = 1 << 20
"""Bytes written or read per hop to aiofiles' thread."""


def encode_line(group: str, keys: Keys, value: Any) -> str:
    """Return one record as a line of JSON (with its newline).

    The value is written in its JSON view (`_json_view`: bytes as ``{"$bytes": ...}``), so a
    msgpack store dumps and loads back without loss.
    """
    record = {"group": group, "keys": list(keys), "value": to_view(value)}
    return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


def parse_line(line: str, codec: Codec) -> tuple[str, Keys, Any]:
    """Return ``(group, keys, value)`` from one line, checked as a write would check it.

    Raises:
        ValueError: (or one of our errors, which are ValueErrors) saying what is wrong.

    """
    record = parse(line)
    if not isinstance(record, dict) or set(record) != {"group", "keys", "value"}:
        raise ValueError('each line is an object of exactly "group", "keys" and "value"')
    group = check_group_name(record["group"])
    found = record["keys"]
    if not isinstance(found, list):
        raise ValueError(f'"keys" must be a list of 1 to 5 strings, got {json.dumps(found)}')
    keys = check_keys(tuple(found), group)
    value = from_view(record["value"])
    check_value(value, allow_bytes=codec.allows_bytes, allow_non_finite=codec.allows_non_finite)
    return group, keys, value


def parse_lines(lines: Iterable[tuple[int, str]], codec: Codec) -> list[tuple[str, Keys, Any]]:
    """Parse numbered lines; raise one ValueError listing every bad line (nothing is written)."""
    records, problems = [], []
    for number, line in lines:
        if not line.strip():
            continue
        try:
            records.append(parse_line(line, codec))
        except (ValueError, TypeError) as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        shown = "\n  ".join(problems[:20])
        count = len(problems)
        bad = "a bad line" if count == 1 else f"{count} bad lines"
        raise ValueError(f"{bad}, nothing was written:\n  {shown}")
    return records


async def dump(store: Storage, path: str | os.PathLike[str], groups: list[str] | None) -> int:
    """Write the store's records (or those of ``groups``) to ``path``; return how many.

    The file appears whole or not at all: it is written beside ``path`` and renamed over it.
    """
    import aiofiles.os  # noqa: PLC0415  (only dump and load need it: start-up time is measured)

    target = Path(path)
    if groups is not None and (isinstance(groups, str) or not isinstance(groups, list)):
        raise TypeError(f"groups must be a list of group names, not {groups!r}")
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    count = 0
    try:
        try:
            file = _opened(temp, "w")
        except OSError as exc:  # name what the caller asked for, not our temp file
            raise type(exc)(exc.errno, exc.strerror, str(target)) from exc
        try:
            buffer: list[str] = []
            size = 0
            async for line in _lines(store, groups):
                buffer.append(line)
                size += len(line)
                count += 1
                if size >= CHUNK:
                    await file.write("".join(buffer))
                    buffer, size = [], 0
            await file.write("".join(buffer))
        finally:
            await asyncio.shield(file.close())  # closed even when the dump is cancelled
        await aiofiles.os.replace(temp, target)
    except BaseException:
        # One unlink, even when cancelled: no await here, so the temp file never stays behind.
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    return count


def _opened(path: str | os.PathLike[str], mode: str) -> Any:
    """Open ``path`` on the loop and hand it to aiofiles for the chunked reads and writes.

    Opening is one quick system call; opened on a thread instead, a file whose caller was
    cancelled meanwhile would be left open, with no one to close it.
    """
    import aiofiles.threadpool  # noqa: PLC0415  (only dump and load need it: start-up time)

    file = open(path, mode, encoding="utf-8")  # noqa: SIM115  (closed by the caller; see above)
    return aiofiles.threadpool.wrap(file)


async def _lines(store: Storage, groups: list[str] | None) -> AsyncIterator[str]:
    pause = Yielder()
    for group in sorted(groups) if groups is not None else await store.list_groups():
        lines = []
        async for keys, value in store.get_group(group).all_items():
            lines.append((keys, encode_line(group, keys, value)))
            await pause()
        # Sorting a large group takes a while: on a thread (the loop runs meanwhile).
        ordered = await asyncio.to_thread(sorted, lines, key=lambda item: item[0])
        for _, line in ordered:
            yield line
            await pause()


async def load(store: Storage, path: str | os.PathLike[str]) -> int:
    """Write every record of the JSON Lines file ``path`` into the store; return how many.

    Every line is checked first (read in large chunks); if any is bad, nothing is written and
    the ValueError lists the bad lines.
    """
    lines = [numbered async for numbered in _read_lines(path)]
    # Parsing and checking many lines is Python work: on a thread, so the loop keeps running.
    try:
        records = await asyncio.to_thread(parse_lines, lines, store.backend.codec)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    pause = Yielder()
    for group, keys, value in records:
        await store.get_group(group)[keys].set_value(value)
        await pause()
    return len(records)


async def _read_lines(path: str | os.PathLike[str]) -> AsyncIterator[tuple[int, str]]:
    number = 0
    rest = ""
    file = _opened(path, "r")
    try:
        while chunk := await file.read(CHUNK):
            lines = (rest + chunk).split("\n")
            rest = lines.pop()
            for line in lines:
                number += 1
                yield number, line
    finally:
        await asyncio.shield(file.close())
    if rest:
        yield number + 1, rest
