"""The conformance suite's model check: random operations on a store and on a dict agree.

Part of `rapid_dev_storage.testing.BackendConformance`, which runs `DictModel` through
hypothesis's stateful testing.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from ._api import Storage
from ._backend import StorageBackend
from ._conformance_support import as_stored, contents, same, storable_values
from ._types import Keys, NoValue
from ._value_fits import INT_MAX

OpenBackend = Callable[[str, Path], Awaitable[StorageBackend]]

_KEY_PARTS = st.sampled_from(["", "a", "b", "a/b", "é"])
_KEYS = st.lists(_KEY_PARTS, min_size=1, max_size=5).map(tuple)
_GROUPS = st.sampled_from(["G", "H"])


class DictModel(RuleBasedStateMachine):
    """A store and a dict put through the same operations must always agree."""

    records = Bundle("records")

    def __init__(self, open_backend: OpenBackend, codec: str) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="rds-model-"))
        self.loop = asyncio.new_event_loop()
        self.store = Storage(self.loop.run_until_complete(open_backend(codec, self.directory)))
        self.model: dict[tuple[str, Keys], Any] = {}
        codec_object = self.store.backend.codec
        self.values = storable_values(
            allow_bytes=codec_object.allows_bytes, allow_non_finite=codec_object.allows_non_finite
        )

    def run(self, awaitable: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(awaitable)

    @rule(target=records, group=_GROUPS, keys=_KEYS, data=st.data())
    def set_value(self, group: str, keys: Keys, data: st.DataObject) -> tuple[str, Keys]:
        value = data.draw(self.values)
        self.run(self.store.get_group(group)[keys].set_value(value))
        self.model[group, keys] = as_stored(value)
        return group, keys

    @rule(record=records)
    def get_value(self, record: tuple[str, Keys]) -> None:
        group, keys = record
        got = self.run(self.store.get_group(group)[keys].get_value())
        expected = self.model.get(record, NoValue)
        assert got is NoValue if expected is NoValue else same(got, expected)

    @rule(record=records)
    def clear_value(self, record: tuple[str, Keys]) -> None:
        group, keys = record
        self.run(self.store.get_group(group)[keys].clear_value())
        self.model.pop(record, None)

    @rule(record=records)
    def increment(self, record: tuple[str, Keys]) -> None:
        group, keys = record

        def bump(current: Any) -> Any:
            return current + 1 if type(current) is int and current < INT_MAX else 0

        result = self.run(self.store.get_group(group)[keys].update(bump))
        self.model[record] = bump(self.model.get(record, NoValue))
        assert result == self.model[record]

    @rule(group=_GROUPS, keys=_KEYS, width=st.integers(min_value=1, max_value=5))
    def clear_prefix(self, group: str, keys: Keys, width: int) -> None:
        prefix = keys[:width]
        self.run(self.store.get_group(group).clear_prefix(*prefix))
        for record in [r for r in self.model if r[0] == group and r[1][: len(prefix)] == prefix]:
            del self.model[record]

    @rule(group=_GROUPS)
    def clear_group(self, group: str) -> None:
        self.run(self.store.get_group(group).clear_group())
        for record in [r for r in self.model if r[0] == group]:
            del self.model[record]

    @rule(group=_GROUPS, keys=_KEYS, width=st.integers(min_value=0, max_value=5))
    def iterate_prefix(self, group: str, keys: Keys, width: int) -> None:
        prefix = keys[:width]
        got = self.run(contents(self.store.get_group(group), *prefix))
        expected = {
            k: v for (g, k), v in self.model.items() if g == group and k[: len(prefix)] == prefix
        }
        assert got.keys() == expected.keys()
        assert all(same(got[k], expected[k]) for k in got)

    @invariant()
    def groups_agree(self) -> None:
        assert self.run(self.store.list_groups()) == sorted({g for g, _ in self.model})

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)
