"""File names for groups, stores and keys: readable, reversible, portable, collision-free."""

from __future__ import annotations

import hashlib
import importlib
import re
import unicodedata
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapid_dev_storage import InvalidNameError
from rapid_dev_storage import _names as names
from rapid_dev_storage._names import decode_name, encode_name, key_digest, key_encoding

ENCODED = re.compile(r"[a-z0-9_.\-^%]+")


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("users", "users"),
        ("feature_flags", "feature_flags"),
        ("v1.2-beta", "v1.2-beta"),
        ("USER", "^user"),
        ("Test", "^t^est"),
        ("main store", "main%20store"),
        ("a/b", "a%2fb"),
        ("a\\b", "a%5cb"),
        (".", "%2e"),
        ("..", "%2e%2e"),
        (".hidden", "%2ehidden"),
        ("trailing.", "trailing%2e"),
        ("trailing ", "trailing%20"),
        ("con", "%63on"),
        ("nul.txt", "%6eul.txt"),
        ("CON", "^con"),
        ("com1", "%63om1"),
        ("C:", "^c%3a"),
        ("/etc/passwd", "%2fetc%2fpasswd"),
        ("a\x00b", "a%00b"),
        ("tab\there", "tab%09here"),
        ("100%", "100%25"),
        ("^caret", "%5ecaret"),
        ("é", "%c3%a9"),
        ("a~b", "a%7eb"),
        ("FEATURE_FLAGS", "^feature_flags"),
        ("UserId", "^u^ser^i^d"),
        ("getHTTPResponse", "get^httpr^esponse"),
        ("A1b", "^a1^b"),
    ],
)
def test_known_encodings(name: str, encoded: str) -> None:
    assert encode_name(name) == encoded
    assert decode_name(encoded) == name


@given(st.text(min_size=1, max_size=21))
def test_encoding_round_trips_and_is_portable(name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates are refused before names reach the file system
    encoded = encode_name(name)
    assert ENCODED.fullmatch(encoded), encoded
    assert not encoded.startswith(".")
    assert not encoded.endswith((".", " "))
    assert encoded.casefold() == encoded  # nothing for a case-insensitive file system to fold
    assert unicodedata.normalize("NFD", encoded) == encoded  # nor for a normalising one
    assert decode_name(encoded) == name


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_distinct_names_never_share_a_directory_even_case_folded(first: str, second: str) -> None:
    if first == second:
        return
    try:
        a, b = encode_name(first), encode_name(second)
    except UnicodeEncodeError:
        return
    assert a.casefold() != b.casefold()


def test_case_and_normal_form_pairs_are_distinct() -> None:
    pairs = [("User", "user"), ("USER", "user"), ("é", unicodedata.normalize("NFD", "é"))]
    for first, second in pairs:
        assert encode_name(first).casefold() != encode_name(second).casefold()


def test_names_too_long_for_a_file_name_are_refused() -> None:
    assert encode_name("a" * 255) == "a" * 255
    with pytest.raises(InvalidNameError, match="shorter name"):
        encode_name("a" * 256)
    with pytest.raises(InvalidNameError, match="shorter name"):
        encode_name("é" * 50)  # 6 bytes encoded each


@pytest.mark.parametrize(
    "encoded", ["USER", "%zz", "%2", "a%2Fb", "%61", "über", ".x", "^A", "^^user", "^1", "a^"]
)
def test_foreign_directory_names_do_not_decode(encoded: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # the message varies with what is wrong
        decode_name(encoded)


def test_key_digest_is_the_documented_one() -> None:
    # sha256(b"\x00\x00\x00\x02ab\x00\x00\x00\x00"), first 32 hex digits: see docs/format.md
    assert key_digest(("ab", "")) == "421fb38456f1afe5c04ed5c0c11c88c4"
    assert key_digest(("ab", "")) != key_digest(("a", "b"))
    assert key_digest(("a/b",)) != key_digest(("a", "b"))
    assert len({key_digest((f"k{i}",)) for i in range(10_000)}) == 10_000


@pytest.mark.parametrize("key", ["k0000001", "", "é", "a/b", "x" * 40])
def test_one_keys_digest_from_its_bytes_is_key_digest(key: str) -> None:
    assert names.one_key_digest(key.encode("utf-8")) == key_digest((key,))


def test_record_names_use_sha256_with_or_without_cpythons_own_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = key_encoding(("ab", ""))
    assert names.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    real = importlib.import_module

    def without_builtin(name: str, package: str | None = None) -> ModuleType:
        if name in ("_sha2", "_sha256"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_builtin)
    assert names._sha256_function() is hashlib.sha256
