"""git's merge driver for record files: ``rapid-dev-storage merge-driver %O %A %B %L %P``.

git calls it with the three versions of one record file (base, ours, theirs), the conflict
marker size and the file's path, and takes the result from the "ours" file: exit status 0 for a
clean merge, 1 for a conflict. The three values are merged by structure (`_merge`). A clean
merge is written in the codec's canonical bytes. A conflict in a JSON record is written with
markers around the conflicting entries only (`_merge_text`); in a msgpack record, which no
person can edit as text, each conflicting place keeps "ours" and ``rapid-dev-storage resolve``
settles it. Anything that is not a merge of one record's values (a side that does not decode,
keys that differ, a file that is not a record) is left to git: its own text merge for JSON,
"ours" and a conflict for msgpack. The driver never crashes and never writes half a result: the
merged file is written beside "ours" and renamed over it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ._codecs import Codec, JSONCodec, MsgpackCodec
from ._file_layout import decode_record, encode_record
from ._merge import MISSING, conflicts, merge, pick
from ._merge_text import render_record


def codec_for(path: str) -> Codec | None:
    """Return the codec of a record file by its name, or None for a file that is not one."""
    if path.endswith(".json"):
        return JSONCodec()
    if path.endswith(".msgpack"):
        return MsgpackCodec()
    return None


def merge_files(base: Path, ours: Path, theirs: Path, marker_size: int, name: str) -> int:
    """Merge the record file ``name``'s versions into ``ours``; return git's exit status."""
    codec = codec_for(name)
    if codec is None:
        return _leave_to_git(None, base, ours, theirs, marker_size, f"{name} is not a record file")
    try:
        sides = [path.read_bytes() for path in (base, ours, theirs)]
        parts = [None if not data else decode_record(codec, data) for data in sides[1:]]
        base_parts = decode_record(codec, sides[0]) if sides[0] else None
    except (OSError, ValueError, TypeError) as exc:
        return _leave_to_git(codec, base, ours, theirs, marker_size, f"{name}: {exc}")
    if parts[0] is None or parts[1] is None:
        return _leave_to_git(codec, base, ours, theirs, marker_size, f"{name}: a side is empty")
    keys = parts[0][0]
    if parts[1][0] != keys or (base_parts is not None and base_parts[0] != keys):
        reason = f"{name}: the sides hold different keys, so this is not one record's merge"
        return _leave_to_git(codec, base, ours, theirs, marker_size, reason)
    base_value = MISSING if base_parts is None else base_parts[1]
    merged = merge(base_value, parts[0][1], parts[1][1])
    found = conflicts(merged)
    if not found:
        replace_file(ours, encode_record(codec, keys, merged))
        return 0
    if isinstance(codec, JSONCodec):
        replace_file(ours, render_record(list(keys), merged, marker_size).encode("utf-8"))
    else:
        replace_file(ours, encode_record(codec, keys, pick(merged, "ours")))
    if isinstance(codec, JSONCodec):
        todo = "edit the marked entries, then `git add`"
    else:
        todo = f"run `rapid-dev-storage resolve {name} --ours/--theirs/--edit`"
    _say(f"conflict in {name} at {', '.join(found)}: {todo}")
    return 1


def _leave_to_git(
    codec: Codec | None, base: Path, ours: Path, theirs: Path, marker_size: int, reason: str
) -> int:
    """Do what git does without us: a text merge for text, "ours" and a conflict for msgpack."""
    if isinstance(codec, MsgpackCodec):
        _say(f"{reason}: keeping ours")
        return 1
    labels = ["-L", "ours", "-L", "base", "-L", "theirs"]
    command = ["git", "merge-file", f"--marker-size={marker_size}", *labels]
    try:
        status = subprocess.run([*command, str(ours), str(base), str(theirs)], check=False)
    except OSError as exc:
        _say(f"{reason}; git merge-file: {exc}")
        return 1
    _say(f"{reason}: merged as text")
    return 0 if status.returncode == 0 else 1


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` whole: beside it, then renamed (never half a result)."""
    temp = path.with_name(f".{path.name}.rds-merge")
    temp.write_bytes(data)
    os.replace(temp, path)


def main(arguments: list[str]) -> int:
    """Run as git's driver: ``BASE OURS THEIRS MARKER_SIZE PATH``."""
    base, ours, theirs, size, name = arguments
    try:
        return merge_files(Path(base), Path(ours), Path(theirs), int(size), name)
    except Exception as exc:  # git must get an answer; "ours" stays as it was
        _say(f"cannot merge {name} ({exc!r}): keeping ours")
        return 1


def _say(text: str) -> None:
    """Tell the person merging (git shows a driver's standard error)."""
    sys.stderr.write(f"rapid-dev-storage: {text}\n")
