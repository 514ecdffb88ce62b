"""rapid_dev_storage.sync on every backend: every operation against a dict model, and errors."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from _postgres import fresh_schema, requires_postgres

from rapid_dev_storage import (
    CorruptRecordError,
    FileBackend,
    InvalidKeyError,
    InvalidValueError,
    NoValue,
    ReentrantUpdateError,
    StoreClosedError,
    sync,
)


def urls(tmp_path: Path) -> dict[str, str]:
    return {
        "file json": f"file:{tmp_path / 'files'}?codec=json",
        "file msgpack": f"file:{tmp_path / 'files'}?codec=msgpack&durability=fast",
        "sqlite": f"sqlite:{tmp_path / 'app.db'}?codec=json",
        "sqlite memory": "sqlite::memory:",
        "memory": "memory:",
    }


BACKENDS = [
    *["file json", "file msgpack", "sqlite", "sqlite memory", "memory"],
    pytest.param("postgres", marks=requires_postgres),
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sync.Storage]:
    if request.param == "postgres":
        url = asyncio.run(fresh_schema())
    else:
        url = urls(tmp_path)[request.param]
    with sync.open_storage(url, "sync test", 1) as opened:
        yield opened
    assert opened.closed


def test_every_operation_against_a_dict_model(store: sync.Storage) -> None:
    model: dict[tuple[str, tuple[str, ...]], Any] = {}
    generator = random.Random(16)
    groups = ["USER", "APP"]
    for _ in range(300):
        group_name = generator.choice(groups)
        group = store.get_group(group_name)
        keys = tuple(generator.choice("ab") for _ in range(generator.randint(1, 3)))
        handle = group[keys]
        action = generator.random()
        if action < 0.35:
            value = {"n": generator.randint(0, 9), "tags": ("x", "y")}
            handle.set_value(value)
            model[group_name, keys] = {"n": value["n"], "tags": ["x", "y"]}
        elif action < 0.55:
            new = handle.update(lambda v: NoValue if v == 3 else (0 if v is NoValue else 3))
            if new is NoValue:
                model.pop((group_name, keys), None)
            else:
                model[group_name, keys] = new
        elif action < 0.65:
            handle.clear_value()
            model.pop((group_name, keys), None)
        elif action < 0.7:
            group.clear_prefix(keys[0])
            cleared = [k for k in model if k[0] == group_name and k[1][0] == keys[0]]
            model = {k: v for k, v in model.items() if k not in cleared}
        elif action < 0.72:
            group.clear_group()
            model = {k: v for k, v in model.items() if k[0] != group_name}
        assert handle.get_value() == model.get((group_name, keys), NoValue)
        assert handle.get_value("absent") == model.get((group_name, keys), "absent")
    for group_name in groups:
        stored = dict(store.get_group(group_name))
        assert stored == {k: v for (g, k), v in model.items() if g == group_name}
        under_a = dict(store.get_group(group_name).all_items("a"))
        assert under_a == {k: v for (g, k), v in model.items() if g == group_name and k[0] == "a"}
    assert store.list_groups() == sorted({group for group, _ in model})


def test_iteration_streams_in_chunks_and_can_stop_early(store: sync.Storage) -> None:
    group = store.get_group("MANY")
    for index in range(600):  # more than two chunks of ITERATION_CHUNK
        group[f"k{index:04}"].set_value(index)
    assert sorted(value for _, value in group) == list(range(600))
    items = iter(group)
    first = [next(items) for _ in range(10)]
    assert len(first) == 10
    del items  # closes the async iteration on the store's loop
    assert len(list(group.all_items("k0001"))) == 1


def test_errors_are_the_async_apis(store: sync.Storage) -> None:
    group = store.get_group("USER")
    with pytest.raises(InvalidKeyError):
        group[()]  # type: ignore[index]
    with pytest.raises(InvalidKeyError):
        group.clear_prefix()
    with pytest.raises(InvalidValueError):
        group["k"].set_value({1, 2})  # type: ignore[arg-type]
    assert group["k"].get_value() is NoValue
    with pytest.raises(ReentrantUpdateError, match="from inside one of its own update"):
        group["k"].update(lambda _: group["other"].get_value())
    with pytest.raises(ZeroDivisionError):
        group["k"].update(lambda _: 1 / 0)
    assert group["k"].get_value() is NoValue


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = sync.open_storage(f"file:{tmp_path}", "s", 1)
    handle = store.get_group("G")["k"]
    handle.set_value(1)
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(StoreClosedError):
        handle.get_value()
    with pytest.raises(StoreClosedError):
        handle.set_value(2)
    with pytest.raises(StoreClosedError):
        store.list_groups()


def test_a_record_that_does_not_decode_names_its_file(tmp_path: Path) -> None:
    with sync.open_storage(f"file:{tmp_path}?codec=json", "s", 1) as store:
        handle = store.get_group("G")["k"]
        handle.set_value(1)
        backend = store.backend
        assert isinstance(backend, FileBackend)
        path = Path(backend.record_path("G", ("k",)))
        path.write_text("{not json")
        old = path.stat().st_mtime - 10  # not a save in progress: reported at once
        os.utime(path, (old, old))
        with pytest.raises(CorruptRecordError) as caught:
            handle.get_value()
        assert caught.value.location == str(path)
        bad: list[CorruptRecordError] = []
        assert list(store.get_group("G").all_items(on_corrupt=bad.append)) == []
        assert len(bad) == 1


def test_large_records_go_through_the_loop(tmp_path: Path) -> None:
    with sync.open_storage(f"file:{tmp_path}", "s", 1, inline_limit=1024) as store:
        handle = store.get_group("G")["big"]
        handle.set_value("x" * 100_000)
        assert handle.get_value() == "x" * 100_000


def test_used_from_inside_a_running_event_loop(tmp_path: Path) -> None:
    """As in Jupyter, or an async framework calling sync code: the caller's loop is not used."""
    store = sync.open_storage(f"file:{tmp_path}", "s", 1)

    async def notebook_cell() -> list[Any]:
        handle = store.get_group("G")["k"]
        handle.set_value({"a": 1})
        handle.update(lambda v: {**v, "b": 2})
        seen = [handle.get_value(), store.list_groups(), list(store.get_group("G"))]
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            ticks += 1

        await asyncio.gather(tick(), tick())  # the caller's loop still runs its own work
        seen.append(ticks)
        return seen

    try:
        assert asyncio.run(notebook_cell()) == [
            {"a": 1, "b": 2},
            ["G"],
            [(("k",), {"a": 1, "b": 2})],
            2,
        ]
        store.close()
        inner = asyncio.run(_open_and_close_inside_a_loop(tmp_path))
        assert inner == {"a": 1, "b": 2}
    finally:
        store.close()


async def _open_and_close_inside_a_loop(tmp_path: Path) -> Any:
    with sync.open_storage(f"file:{tmp_path}", "s", 1) as store:
        return store.get_group("G")["k"].get_value()


def test_a_thread_of_the_store_is_not_left_behind(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with sync.open_storage(f"file:{tmp_path}", "s", 1) as store:
        store.get_group("G")["k"].set_value(1)
        with store.watch() as changes:
            store.get_group("G")["k"].set_value(2)
            assert next(changes).value == 2
    left = [t for t in set(threading.enumerate()) - before if t.name.startswith("rapid-dev")]
    assert left == []
