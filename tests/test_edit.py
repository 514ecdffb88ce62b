"""Editing a value in a person's editor: a scripted $EDITOR, real files, another real process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _scripted_editor import Editor

from rapid_dev_storage import FileBackend, NoValue, Storage
from rapid_dev_storage._edit import (
    EditorError,
    Outcome,
    Person,
    edit_value,
    editor_command,
    parse_buffer,
)

pytestmark = pytest.mark.usefixtures("private_tmpdir")


async def run(
    store: Storage, editor: Editor, *, answers: list[bool] | None = None, **options: Any
) -> Outcome:
    asked: list[str] = []

    def ask(question: str) -> bool:
        asked.append(question)
        assert answers, f"asked {question!r} with no answer left"
        return answers.pop(0)

    command = options.pop("command", editor.command)
    person = Person(command, answers is not None, lambda _: None, ask)
    return await edit_value(
        store.get_group("USER")["u1"],
        store.backend.codec,
        person,
        describe="USER ('u1',)",
        **options,
    )


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    backend = await FileBackend.create_backend_instance(tmp_path / "data", "app", 1)
    async with Storage(backend) as opened:
        yield opened


async def test_a_change_is_saved_and_the_editor_sees_the_value_not_the_wrapper(
    store: Storage, tmp_path: Path
) -> None:
    await store.get_group("USER")["u1"].set_value({"theme": "dark", "blob": b"\x00\x01"})
    editor = Editor(tmp_path, [{"replace": ['"dark"', '"light"']}])
    outcome = await run(store, editor)
    assert outcome.status == "saved"
    assert await store.get_group("USER")["u1"].get_value() == {
        "theme": "light",
        "blob": b"\x00\x01",
    }
    (opened,) = editor.seen
    assert '"keys"' not in opened
    assert '"blob": {\n    "$bytes": "AAE="\n  }' in opened
    assert parse_buffer(opened) == {"theme": "dark", "blob": b"\x00\x01"}


async def test_an_unchanged_or_empty_buffer_writes_nothing(store: Storage, tmp_path: Path) -> None:
    record = store.get_group("USER")["u1"]
    assert (await run(store, Editor(tmp_path, [{}]))).status == "unchanged"
    assert await record.get_value() is NoValue
    assert not list((tmp_path / "data").rglob("*.msgpack"))
    await record.set_value(1)
    files = {path: path.stat().st_mtime_ns for path in (tmp_path / "data").rglob("*.msgpack")}
    assert (await run(store, Editor(tmp_path, [{}]))).status == "unchanged"
    assert (await run(store, Editor(tmp_path, [{"write": "# all gone\n\n"}]))).status == "unchanged"
    assert {path: path.stat().st_mtime_ns for path in files} == files


async def test_an_absent_record_is_created(store: Storage, tmp_path: Path) -> None:
    outcome = await run(
        store,
        Editor(tmp_path, [{"replace": ["creates the record.\n", "creates the record.\n[1, 2]\n"]}]),
    )
    assert outcome.status == "saved"
    assert await store.get_group("USER")["u1"].get_value() == [1, 2]


async def test_invalid_json_keeps_the_text_and_writes_nothing(
    store: Storage, tmp_path: Path
) -> None:
    await store.get_group("USER")["u1"].set_value({"a": 1})
    outcome = await run(store, Editor(tmp_path, [{"write": '{"a": 2,\n  "b": }\n'}]))
    assert outcome.status == "kept"
    assert outcome.kept is not None
    assert "not JSON" in outcome.message
    assert "line 2" in outcome.message
    assert str(outcome.kept) in outcome.message
    assert outcome.kept.read_text().endswith('{"a": 2,\n  "b": }\n')
    assert outcome.kept.read_text().startswith("# ERROR: not JSON")
    assert await store.get_group("USER")["u1"].get_value() == {"a": 1}
    # The next attempt starts from the kept text and fixes it.
    fixed = Editor(tmp_path, [{"replace": ['"b": }', '"b": 3}']}])
    again = await run(store, fixed, start_from=outcome.kept.read_text())
    assert again.status == "saved"
    assert await store.get_group("USER")["u1"].get_value() == {"a": 2, "b": 3}


async def test_at_a_terminal_the_editor_reopens_until_the_text_is_right(
    store: Storage, tmp_path: Path
) -> None:
    editor = Editor(tmp_path, [{"write": "[1, 2"}, {"replace": ["[1, 2", "[1, 2]"]}])
    outcome = await run(store, editor, answers=[True])
    assert outcome.status == "saved"
    assert await store.get_group("USER")["u1"].get_value() == [1, 2]
    assert editor.seen[1].startswith("# ERROR: not JSON")


async def test_a_value_the_codec_cannot_carry_is_refused(tmp_path: Path) -> None:
    backend = await FileBackend.create_backend_instance(tmp_path / "j", "app", 1, codec="json")
    async with Storage(backend) as store:
        outcome = await run(store, Editor(tmp_path, [{"write": '{"$bytes": "AA=="}'}]))
        assert outcome.status == "kept"
        assert "bytes" in outcome.message
        assert await store.get_group("USER")["u1"].get_value() is NoValue


async def test_a_change_made_meanwhile_is_never_overwritten(store: Storage, tmp_path: Path) -> None:
    record = store.get_group("USER")["u1"]
    await record.set_value({"n": 1})
    data = str(tmp_path / "data")
    editor = Editor(tmp_path, [{"elsewhere": {"n": 100}, "store": data, "write": '{"n": 2}'}])
    outcome = await run(store, editor)
    assert outcome.status == "kept"
    assert "changed while you edited it" in outcome.message
    assert await record.get_value() == {"n": 100}
    assert outcome.kept is not None
    assert '{"n": 2}' in outcome.kept.read_text()
    # At a terminal: re-opened on the person's text with the new value shown; saving writes it.
    editor = Editor(tmp_path, [{"elsewhere": {"n": 200}, "store": data, "write": '{"n": 3}'}, {}])
    outcome = await run(store, editor, answers=[True])
    assert outcome.status == "saved"
    assert await record.get_value() == {"n": 3}
    assert (
        '# It changed while you edited it; it now holds:\n# {\n#   "n": 200\n# }' in editor.seen[1]
    )


async def test_an_editor_that_fails_writes_nothing(store: Storage, tmp_path: Path) -> None:
    with pytest.raises(EditorError, match="exited with status 3: nothing written"):
        await run(store, Editor(tmp_path, [{"write": "[1]", "status": 3}]))
    assert await store.get_group("USER")["u1"].get_value() is NoValue
    with pytest.raises(EditorError, match="cannot start the editor"):
        await run(store, Editor(tmp_path, []), command=[str(tmp_path / "nope")])


def test_the_editor_comes_from_visual_then_editor() -> None:
    assert editor_command({"VISUAL": "code --wait", "EDITOR": "vi"}) == ["code", "--wait"]
    assert editor_command({"EDITOR": "nano -w"}) == ["nano", "-w"]
    assert editor_command({"VISUAL": " ", "EDITOR": "vim"}) == ["vim"]
