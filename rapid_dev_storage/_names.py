"""How names and keys become file names: readable where safe, reversible, portable, collision-free.

Group and store names: a name made only of ``a-z 0-9 _ - .`` (not starting or ending with a dot,
not a Windows device name) is used as it is, so ``users`` is the directory ``users``. Any other
name is encoded character by character: ASCII letters are written in lower case, with a ``^``
wherever the case switches between upper and lower (starting from lower: ``USER`` → ``^user``,
``FEATURE_FLAGS`` → ``^feature_flags``, ``UserId`` → ``^u^ser^i^d``), and every other byte
outside the plain set (and a leading or trailing dot, and the first letter of a device name)
becomes ``%`` and two lower-case hex digits of its UTF-8 bytes (``main store`` →
``main%20store``). Encoded names contain no capital and no non-ASCII character, so no two names
meet on a case-insensitive or Unicode-normalising file system; they contain no separator, so none
reaches outside its directory; and they never start with a dot, which our own bookkeeping files
do.

Record files are named by a digest of the key tuple: SHA-256 of the length-prefixed UTF-8
encoding (4-byte big-endian length, then the bytes, for each key), as 32 lower-case hex digits.
"""

from __future__ import annotations

import functools
import importlib
import re
import struct
from typing import Callable, Protocol

from .errors import InvalidNameError

MAX_FILE_NAME = 255
"""Bytes in one file name on ext4, APFS, and (in UTF-16 units) NTFS."""

_PLAIN_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
_DEVICE_NAMES = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in "123456789¹²³"]
    + [f"lpt{i}" for i in "123456789¹²³"]
)
_TOKEN = r"\^|%([0-9a-f]{2})|[^%^]"
"""An encoded name's parts; compiled by `re`'s cache when a name is first decoded (a listing),
not by every process that imports this module (0.2 ms: tools/bench_startup.py)."""


def _is_plain(name: str) -> bool:
    return (
        name != ""
        and _PLAIN_CHARACTERS.issuperset(name)
        and not name.startswith(".")
        and not name.endswith(".")
        and name.split(".", 1)[0] not in _DEVICE_NAMES
    )


@functools.lru_cache(maxsize=4096)
def encode_name(name: str) -> str:
    """Return the file name for a group or store name.

    Raises:
        InvalidNameError: the encoded name would be longer than a file name may be.

    """
    if not name:
        raise InvalidNameError("an empty name has no file name", name=name)
    if _is_plain(name):
        encoded = name
    else:
        parts = []
        last = len(name) - 1
        upper = False
        for index, character in enumerate(name):
            if "A" <= character <= "Z" or "a" <= character <= "z":
                if character.isupper() != upper:
                    upper = not upper
                    parts.append("^")
                parts.append(character.lower())
            elif character in _PLAIN_CHARACTERS and not (character == "." and index in (0, last)):
                parts.append(character)
            else:
                parts.append("".join(f"%{byte:02x}" for byte in character.encode("utf-8")))
        if name.split(".", 1)[0].lower() in _DEVICE_NAMES and parts[0].isalpha():
            parts[0] = f"%{ord(parts[0]):02x}"  # CON, con.txt: Windows devices, whatever the case
        encoded = "".join(parts)
    if len(encoded) > MAX_FILE_NAME:
        raise InvalidNameError(
            f"name {name[:40]!r}... encodes to a {len(encoded)}-byte file name, over the "
            f"{MAX_FILE_NAME} a file system allows: use a shorter name",
            name=name,
        )
    return encoded


def decode_name(encoded: str) -> str:
    """Return the name `encode_name` turned into ``encoded``.

    Raises:
        ValueError: ``encoded`` is not something `encode_name` produces.

    """
    raw = bytearray()
    upper = False
    for match in re.finditer(_TOKEN, encoded):
        token, hex_digits = match.group(), match.group(1)
        if token == "^":
            upper = not upper
        elif hex_digits is not None:
            raw += bytes.fromhex(hex_digits)
        else:
            raw += (token.upper() if upper else token).encode("ascii")
    name = raw.decode("utf-8")
    if encode_name(name) != encoded:
        raise ValueError(f"{encoded!r} is not an encoded name")
    return name


def key_encoding(keys: tuple[str, ...]) -> bytes:
    """Return the bytes whose digest names a record's file: each key's UTF-8 length, then it."""
    if len(keys) == 1:  # nearly every record: no join (a record read by a scan pays this)
        data = keys[0].encode("utf-8")
        return _LENGTH(len(data)) + data
    return b"".join(_LENGTH(len(data)) + data for data in [key.encode("utf-8") for key in keys])


class _Digest(Protocol):
    def hexdigest(self) -> str: ...


def _sha256_function() -> Callable[[bytes], _Digest]:
    """Return CPython's own SHA-256 (as `random` takes its SHA-512), else hashlib's.

    The same digest either way; hashlib would load OpenSSL and blake2 first, about 1 ms of
    every process that opens a file store (tools/bench_startup.py).
    """
    for name in ("_sha2", "_sha256"):  # Python 3.12 renamed _sha256 to _sha2
        try:
            return importlib.import_module(name).sha256  # type: ignore[no-any-return]
        except ImportError:  # a build without it (or a newer name): hashlib has one
            pass
    from hashlib import sha256  # noqa: PLC0415

    return sha256


sha256 = _sha256_function()
_LENGTH = struct.Struct(">I").pack  # 4 bytes, big-endian


def key_digest(keys: tuple[str, ...]) -> str:
    """Return the 32-hex-digit digest naming the file of ``keys``."""
    return sha256(key_encoding(keys)).hexdigest()[:32]


def one_key_digest(key: bytes) -> str:
    """`key_digest` of the one key whose UTF-8 is ``key`` (a scan has the bytes, not the str)."""
    return sha256(_LENGTH(len(key)) + key).hexdigest()[:32]
