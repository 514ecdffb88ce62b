"""The store layout's name rules, which fsck, the watcher and the backend share."""

from __future__ import annotations

import pytest

from rapid_dev_storage._codecs import JSONCodec
from rapid_dev_storage._file_layout import (
    check_marker,
    conflict_copy_name,
    group_of_directory,
    hand_made_group,
    is_conflict_copy,
    is_leftover,
    is_record_name,
    marker_bytes,
    marker_names,
)
from rapid_dev_storage._names import encode_name
from rapid_dev_storage.errors import IncompatibleStoreError


@pytest.mark.parametrize(
    ("name", "group", "directory"),
    [
        ("USER", "USER", "^user"),
        ("Users", "Users", "^u^sers"),
        ("my orders", "my orders", "my%20orders"),
    ],
)
def test_a_directory_made_by_hand_is_the_group_of_its_very_name(
    name: str, group: str, directory: str
) -> None:
    assert group_of_directory(name) is None
    assert hand_made_group(name) == group
    assert encode_name(group) == directory


@pytest.mark.parametrize(
    "name", ["^user", "users", "my%20orders", ".quarantine", ".locks", "x~", "4913", "a" * 300]
)
def test_our_directories_bookkeeping_and_leftovers_are_not_made_by_hand(name: str) -> None:
    assert hand_made_group(name) is None


@pytest.mark.parametrize(
    "name",
    [
        ".DS_Store",
        ".x.json.swp",
        "x.json.swp",
        "x.json.swo",
        "x.swx",
        "4913",
        "x.json~",
        "#x.json#",
        ".#x.json",
        ".rds-1-ab.tmp",
    ],
)
def test_editors_leftovers_are_recognised(name: str) -> None:
    assert is_leftover(name)
    assert not is_record_name(name, ".json")


@pytest.mark.parametrize("name", ["x.json", "0" * 32 + ".json", "notes.txt", "swp", "49130"])
def test_other_names_are_not_leftovers(name: str) -> None:
    assert not is_leftover(name)


def test_conflict_copies_are_named_so_and_never_twice_alike() -> None:
    taken = {"alice.conflict.json", "alice.conflict-2.json"}
    assert conflict_copy_name("bob.json", ".json", taken.__contains__) == "bob.conflict.json"
    assert conflict_copy_name("alice.json", ".json", taken.__contains__) == "alice.conflict-3.json"
    assert conflict_copy_name("alice.conflict.json", ".json", taken.__contains__) == (
        "alice.conflict-3.json"
    )
    assert is_conflict_copy("alice.conflict-3.json", ".json")
    assert not is_conflict_copy("alice.json", ".json")
    assert not is_conflict_copy("alice.conflict.json", ".msgpack")


def test_a_marker_an_editor_saved_with_a_byte_order_mark_still_names_its_store() -> None:
    marker = marker_bytes(JSONCodec(), "app", "1")
    bom = b"\xef\xbb\xbf"
    assert marker_names(bom + marker) == marker_names(marker) == ("app", "1")
    assert check_marker("m", bom + marker, "app", "1", None).name == "json"
    assert marker_names(bom + bom + marker) is None  # one mark is skipped, as utf-8-sig does
    with pytest.raises(IncompatibleStoreError, match="does not decode as JSON"):
        check_marker("m", bom + bom + marker, "app", "1", None)
