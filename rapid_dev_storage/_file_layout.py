"""The file store's layout: what each name in a store's directory is, and what its files hold.

Every rule of docs/format.md that names or reads a file is here, once, and nothing here touches
the disk: the backend, its writes and sweeps, its watcher, fsck and the store listing all ask
this module, so a rule changed here changes for all of them. ::

    <path>/<store>/               store_directory(path, name, unique_identifier)
        .rapid-dev-storage.json   MARKER: marker_bytes, check_marker
        .gitignore                GITIGNORE: GITIGNORE_TEXT
        .locks/NN.lock            LOCK_DIRECTORY, lock_file_name(stripe_of(group dir, file))
        .quarantine/              QUARANTINE: what fsck --repair could not fix
        <group>/                  group_directory_name(group), group_of_directory(name)
            <digest><extension>   record_file_name(keys, extension), is_record_name
            .rds-<pid>-<hex>.tmp  temp_name(), is_temp_name, temp_writer_pid
            x.json~, .x.swp, 4913 is_leftover: an editor's, never data, never moved
            <stem>.conflict.json  conflict_copy_name: fsck kept a person's differing copy
        USER/, my orders/         hand_made_group(name): a person's directory for a group
"""

from __future__ import annotations

import binascii
import functools
import itertools
import json
import os
import re
from typing import TYPE_CHECKING, Any, Callable

from ._codecs import BOM, Codec, codec_for_existing_store
from ._names import decode_name, encode_name, key_digest
from ._types import Keys
from ._validate import MAX_KEYS, stored_keys_fit
from .errors import CorruptRecordError, IncompatibleStoreError, InvalidNameError

if TYPE_CHECKING:
    from pathlib import Path

FORMAT_NAME = "rapid_dev_storage"
FORMAT_VERSION = 1
MARKER = ".rapid-dev-storage.json"
GITIGNORE = ".gitignore"
LOCK_DIRECTORY = ".locks"
QUARANTINE = ".quarantine"
"""Where fsck --repair moves what it cannot fix, for a person to look at."""
LOCK_STRIPES = 64
"""Lock files per store: records share them by hash, so their number stays fixed."""
TEMP_PREFIX = ".rds-"
TEMP_SUFFIX = ".tmp"
DIGEST_LENGTH = 32
GITIGNORE_TEXT = (
    "# Written by rapid_dev_storage: lock files and unfinished writes are not data.\n"
    f"/{LOCK_DIRECTORY}/\n"
    f"{TEMP_PREFIX}*{TEMP_SUFFIX}\n"
)


# --- names ------------------------------------------------------------------------------------


def store_directory(root: Path | str, name: str, identifier: str) -> str:
    """Return the absolute directory of store ``(name, identifier)`` under ``root``."""
    return os.path.join(os.path.abspath(root), f"{encode_name(name)}~{encode_name(identifier)}")


def is_bookkeeping(name: str) -> bool:
    """Whether ``name`` in a store's or group's directory is bookkeeping (a dot name), not data."""
    return name.startswith(".")


def group_directory_name(group: str) -> str:
    """Return the name of the directory that holds ``group``'s records."""
    return encode_name(group)


def group_of_directory(name: str) -> str | None:
    """Return the group a directory of the store holds, or None for one that is not ours."""
    if is_bookkeeping(name):
        return None
    try:
        return decode_name(name)
    except ValueError:
        return None  # not a directory of ours


@functools.lru_cache(maxsize=4096)  # each scan of a group asks: 4.3 us, 0.1 cached
def hand_made_group(name: str) -> str | None:
    """Return the group a directory made by hand under the group's own name is meant to hold.

    A person makes ``USER/``, ``Users/`` or ``my orders/`` where the library writes ``^user``,
    ``^u^sers`` and ``my%20orders``: such a directory is the group of that very name. None
    for a directory of ours, bookkeeping, an editor's leftover, or a name no group can have.
    Reads never look there (a read is one open, of the digest path); the store warns once,
    naming the directory the group lives in, and fsck --repair moves the records there.
    """
    if is_leftover(name) or "/" in name or os.sep in name or "\0" in name:
        return None
    if group_of_directory(name) is not None:
        return None  # ours
    try:
        encode_name(name)
    except InvalidNameError:
        return None  # too long to be any group's directory
    return name


def hand_made_message(root: str, name: str) -> str:
    """Return the warning about ``root``'s directory ``name``, made by hand for a group."""
    return (
        f"{os.path.join(root, name)} is not read: it looks like a directory made by hand for "
        f"group {name!r}, whose records live in {os.path.join(root, group_directory_name(name))}; "
        "`rapid-dev-storage fsck --repair` moves them there"
    )


# Patterns compiled by `re`'s cache at their first use (listings, fsck), not at every import.
_LEFTOVER = r"\..*|.*~|.*\.sw[a-px]|4913|#.*#"


def is_leftover(name: str) -> bool:
    """Whether ``name`` is bookkeeping or an editor's leftover: never data, never moved.

    Dot names (``.DS_Store``, vim's ``.x.json.swp``, emacs's ``.#x.json``), backups
    (``x.json~``), vim's swap and probe files (``x.json.swp``, ``x.swx``, ``4913``) and emacs's
    autosaves (``#x.json#``). A backup may hold a valid record (the one before an edit):
    it is still not one, and fsck neither reports nor moves it; a live swap file must stay
    beside the file it protects.
    """
    return re.fullmatch(_LEFTOVER, name) is not None


def conflict_copy_name(name: str, extension: str, taken: Callable[[str], bool]) -> str:
    """Return the name for a person's copy of a record that differs from the record's file.

    ``alice.json`` becomes ``alice.conflict.json`` (``alice.conflict-2.json`` when that is
    ``taken``): a name that says what it is, which reads ignore and fsck reports.
    """
    stem = name[: -len(extension)] if extension and name.endswith(extension) else name
    stem = re.sub(_CONFLICT_SUFFIX, "", stem)
    candidate, number = f"{stem}.conflict{extension}", 1
    while taken(candidate):
        number += 1
        candidate = f"{stem}.conflict-{number}{extension}"
    return candidate


def is_conflict_copy(name: str, extension: str) -> bool:
    """Whether ``name`` is one `conflict_copy_name` gives."""
    stem = name[: -len(extension)] if extension and name.endswith(extension) else None
    return stem is not None and re.search(_CONFLICT_SUFFIX, stem) is not None


_CONFLICT_SUFFIX = r"\.conflict(-[0-9]+)?$"


def record_file_name(keys: Keys, extension: str) -> str:
    """Return the name of the file that holds the record ``keys``."""
    return key_digest(keys) + extension


def is_record_name(name: str, extension: str) -> bool:
    """Whether ``name`` is a record file's: exactly 32 lower-case hex digits + ``extension``.

    Only such names are records: a person's ``notes-from-the-design-meeting-v2.json`` beside
    them is never read as one, and never deleted by a clear.
    """
    return record_name_matcher(extension)(name) is not None


@functools.lru_cache(maxsize=16)
def record_name_matcher(extension: str) -> Callable[[str], re.Match[str] | None]:
    """Return `is_record_name` for one ``extension``, as a match (for loops over many names)."""
    return re.compile(f"[0-9a-f]{{{DIGEST_LENGTH}}}{re.escape(extension)}").fullmatch


def stripe_of(directory_name: str, file_name: str) -> int:
    """Return the lock stripe of a record, from its group directory's name and its file name."""
    # binascii's CRC-32 is zlib's (the same numbers): loaded already, where zlib costs 0.3 ms.
    return binascii.crc32(f"{directory_name}/{file_name}".encode()) % LOCK_STRIPES


def lock_file_name(stripe: int) -> str:
    """Return the name, inside `LOCK_DIRECTORY`, of ``stripe``'s lock file."""
    return f"{stripe:02d}.lock"


_temp_names = itertools.count()
_temp_token: list[str] = []  # this process's random part, made at its first temp file
_pid = [os.getpid()]  # getpid is a system call (glibc caches it no more): one per fork instead


def _forked() -> None:
    _pid[0] = os.getpid()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forked)


def temp_name() -> str:
    """Return a fresh temp file name (the pid helps a person; liveness is proven by a lock).

    A random part drawn once per process and a counter, not 6 random bytes per write (a
    getrandom call and SystemRandom's Python: 10 us of a 30 us write on tmpfs). A forked child
    shares both, not its pid; a clash with another host's or namespace's writer is refused by
    O_EXCL, and the writer draws again (`TempFile`).
    """
    if not _temp_token:
        new_temp_token()
    return f"{TEMP_PREFIX}{_pid[0]}-{_temp_token[0]}{next(_temp_names):x}{TEMP_SUFFIX}"


def new_temp_token() -> None:
    """Draw this process's random part of temp file names (again, after a clash)."""
    _temp_token[:] = [os.urandom(4).hex()]


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our temp files (a write in progress, or abandoned)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def temp_writer_pid(name: str) -> int | None:
    """Return the pid a temp file's name gives for its writer (None if it gives none)."""
    pid_text = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    return int(pid_text) if pid_text.isdigit() else None


# --- what record files hold -------------------------------------------------------------------


def encode_record(codec: Codec, keys: Keys, value: Any) -> bytes:
    """Return a record file's bytes: a map of exactly ``keys`` and ``value``."""
    return codec.dumps(record_form(keys, value))


def record_form(keys: Keys, value: Any) -> dict[str, Any]:
    """Return what a record file holds: a map of exactly ``keys`` and ``value``."""
    return {"keys": list(keys), "value": value}


def decode_record(codec: Codec, data: bytes) -> tuple[Keys, Any]:
    """Return the keys and value a record file's bytes hold.

    Raises:
        ValueError: the bytes do not decode, or are not a record (what the codec raises, or
            a message saying what a record is).

    """
    record = codec.loads(data)
    if (
        type(record) is not dict
        or len(record) != 2
        # A msgpack map holding a key twice decodes to a smaller dict, one of them lost:
        # our records are a map of exactly two entries (JSON's decoder refuses duplicates).
        or (data[:1] != b"\x82" and codec.name == "msgpack")
    ):
        raise ValueError(_NOT_A_RECORD)
    try:
        found, value = record["keys"], record["value"]
    except KeyError:
        raise ValueError(_NOT_A_RECORD) from None
    if type(found) is not list or not stored_keys_fit(found):
        raise ValueError(
            f'"keys" must be a list of 1 to {MAX_KEYS} strings of valid Unicode, not {found!r}'
        )
    return tuple(found), value


_NOT_A_RECORD = 'a record is a map of exactly "keys" and "value", each once'


def misnamed_record(group: str, keys: Keys, where: str, extension: str) -> CorruptRecordError:
    """Return the error for the record ``keys`` found in ``where``, which is not its file."""
    return CorruptRecordError(
        f"{where} holds the record of keys {keys!r}, whose file is "
        f"{record_file_name(keys, extension)}: it was copied or renamed by hand "
        "(fsck --repair renames it)",
        group=group,
        keys=keys,
        location=where,
    )


# --- the marker -------------------------------------------------------------------------------


def marker_bytes(codec: Codec, name: str, identifier: str) -> bytes:
    """Return the marker of a new store ``(name, identifier)`` whose records use ``codec``."""
    marker = {
        "codec": codec.name,
        "extension": codec.extension,
        "format": FORMAT_NAME,
        "key_digest": "sha256-128 of length-prefixed UTF-8 keys",
        "name": name,
        "unique_identifier": identifier,
        "version": FORMAT_VERSION,
    }
    return (json.dumps(marker, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def marker_names(data: bytes) -> tuple[str, str] | None:
    """Return the store names a marker gives, without checking it (None if it gives none)."""
    try:
        marker = json.loads(data.removeprefix(BOM).decode())
        return (str(marker["name"]), str(marker["unique_identifier"])) if marker else None
    except (ValueError, KeyError, TypeError):
        return None


def check_marker(
    where: str, data: bytes, name: str, identifier: str, requested: Codec | None
) -> Codec:
    """Return the codec of the store whose marker (at ``where``) holds ``data``, checking it all.

    Raises:
        IncompatibleStoreError: naming the field that is wrong, what it holds and what is
            expected; or the store is another one, or needs another codec or a newer reader.

    """

    def invalid(problem: str, field: str | None = None) -> IncompatibleStoreError:
        return IncompatibleStoreError(
            f"{where} is not a valid store marker: {problem}; restore it (from git or a "
            "backup) or fix it by hand (docs/format.md describes it)",
            location=where,
            field=field,
        )

    try:
        marker = json.loads(data.removeprefix(BOM).decode(), object_pairs_hook=_marker_fields)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a field twice
        raise invalid(f"it does not decode as JSON: {exc}") from exc
    if type(marker) is not dict:
        raise invalid(f"it holds {type(marker).__name__} {marker!r}, expected a JSON object")
    for field, expected in _MARKER_FIELDS.items():
        if field not in marker:
            raise invalid(f'field "{field}" is missing (expected {expected})', field)
        found = marker[field]
        # bool is an int in Python, but a marker's version true is no version.
        if type(found) is not (int if field == "version" else str) or found in ("", False):
            raise invalid(
                f'field "{field}" is {type(found).__name__} {found!r}, expected {expected}', field
            )
    if marker["format"] != FORMAT_NAME:
        raise invalid(f'field "format" is {marker["format"]!r}, expected {FORMAT_NAME!r}', "format")
    if marker["version"] < 1:
        raise invalid(
            f'field "version" is {marker["version"]}, expected a version from 1 to '
            f"{FORMAT_VERSION}",
            "version",
        )
    stored_names = (marker["name"], marker["unique_identifier"])
    if stored_names != (name, identifier):
        raise IncompatibleStoreError(
            f"{where} belongs to store {stored_names!r}, not {(name, identifier)!r}",
            location=where,
        )
    codec = codec_for_existing_store(
        where, marker["codec"], marker["version"], FORMAT_VERSION, requested
    )
    if marker["extension"] != codec.extension:
        raise invalid(
            f'field "extension" is {marker["extension"]!r}, but codec {codec.name!r} names '
            f"record files {codec.extension!r}",
            "extension",
        )
    return codec


_MARKER_FIELDS = {
    "format": f"the string {FORMAT_NAME!r}",
    "version": f"an integer from 1 to {FORMAT_VERSION}",
    "codec": 'a codec name such as "json" or "msgpack"',
    "extension": 'the record files\' extension, such as ".json"',
    "name": "the store's name, a string",
    "unique_identifier": "the store's identifier, a string",
}
"""The marker's fields and what each must hold (``key_digest`` is a reminder for people)."""


def _marker_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields = dict(pairs)
    if len(fields) != len(pairs):
        twice = sorted({key for key, _ in pairs if [k for k, _ in pairs].count(key) > 1})
        raise ValueError(f"field {twice[0]!r} appears twice")
    return fields
