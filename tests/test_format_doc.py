"""docs/format.md is enough to read a store: its twenty-line reader agrees with the library."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest

from rapid_dev_storage import FileBackend, Storage
from rapid_dev_storage._names import key_digest, key_encoding

FORMAT = Path(__file__).resolve().parent.parent / "docs" / "format.md"


def reader_script() -> str:
    text = FORMAT.read_text(encoding="utf-8")
    section = text[text.index("## A reader in twenty lines") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_reader_is_about_twenty_lines() -> None:
    assert len(reader_script().strip().splitlines()) <= 24


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_the_documented_reader_reads_what_the_library_wrote(
    tmp_path: Path, codec: str
) -> None:
    records = {
        ("USER", ("u1", "settings")): {"theme": "dark", "tags": ["a", "b"]},
        ("USER", ("u1",)): None,
        ("main store", ("é", "")): 1.5,
        ("FEATURE_FLAGS", ("a/b", "c", "d", "e", "f")): True,
        ("con", ("x",)): "device name",
    }
    backend = await FileBackend.create_backend_instance(tmp_path, "my app", 1, codec=codec)
    async with Storage(backend) as store:
        for (group, keys), value in records.items():
            await store.get_group(group)[keys].set_value(value)
    script = tmp_path / "reader.py"
    script.write_text(reader_script(), encoding="utf-8")
    reader = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(tmp_path / "my%20app~1"), stdout=asyncio.subprocess.PIPE
    )
    output, _ = await reader.communicate()
    assert reader.returncode == 0
    read = {}
    for line in output.decode().splitlines():
        group, keys, value = json.loads(line)
        read[group, tuple(keys)] = value
    assert read == records


def test_the_documented_file_name_example_is_what_the_library_does() -> None:
    text = " ".join(FORMAT.read_text(encoding="utf-8").split())
    sentence = (
        r"For keys `\((.*?)\)` the encoding is `([0-9a-f ]+)` "
        r"and the file is `([0-9a-f]{32})\.json`"
    )
    match = re.search(sentence, text)
    assert match is not None, "the example sentence in docs/format.md changed shape"
    keys = tuple(json.loads(f"[{match.group(1)}]"))
    assert key_encoding(keys) == bytes.fromhex(match.group(2))
    assert key_digest(keys) == match.group(3)
