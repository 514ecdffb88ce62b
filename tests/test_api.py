"""The public surface: names, sentinel, errors, handles and settings."""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest

import rapid_dev_storage
from rapid_dev_storage import (
    InvalidKeyError,
    MemoryBackend,
    NoValue,
    Storage,
    StorageGroup,
    StorageValue,
    _backend,
    errors,
)


def test_public_names_are_sorted_and_importable() -> None:
    assert rapid_dev_storage.__all__ == sorted(rapid_dev_storage.__all__)
    for name in rapid_dev_storage.__all__:
        assert getattr(rapid_dev_storage, name) is not None
    for name in errors.__all__:
        assert getattr(rapid_dev_storage, name) is getattr(errors, name)


def test_every_public_class_and_method_has_a_docstring() -> None:
    classes = [getattr(rapid_dev_storage, name) for name in rapid_dev_storage.__all__]
    for cls in [thing for thing in classes if inspect.isclass(thing)]:
        assert cls.__doc__, cls
        for name, member in vars(cls).items():
            if not name.startswith("_") and callable(getattr(member, "__func__", member)):
                assert getattr(member, "__doc__", None), f"{cls.__name__}.{name}"


def test_novalue_is_a_falsy_singleton() -> None:
    assert not NoValue
    assert NoValue is not None
    assert repr(NoValue) == "NoValue"
    assert copy.deepcopy(NoValue) is NoValue
    assert pickle.loads(pickle.dumps(NoValue)) is NoValue


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.InvalidKeyError, ValueError),
        (errors.InvalidNameError, ValueError),
        (errors.InvalidValueError, TypeError),
        (errors.InvalidValueError, ValueError),
        (errors.CorruptRecordError, ValueError),
        (errors.IncompatibleStoreError, ValueError),
        (errors.LockTimeoutError, TimeoutError),
        (errors.StorageIOError, OSError),
        (errors.StoreClosedError, RuntimeError),
        (errors.UnsupportedOperationError, NotImplementedError),
    ],
)
def test_errors_subclass_storage_error_and_their_builtin(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, errors.StorageError)
    assert issubclass(error, builtin)


def test_handles_describe_themselves() -> None:
    store = Storage(MemoryBackend())
    group = store.get_group("USER")
    handle = group["42", "settings"]
    assert isinstance(group, StorageGroup)
    assert isinstance(handle, StorageValue)
    assert group.name == "USER"
    assert (handle.group_name, handle.keys) == ("USER", ("42", "settings"))
    assert repr(handle) == "<StorageValue group='USER' keys=('42', 'settings')>"
    assert "MemoryBackend" in repr(store)


def test_str_subclass_keys_are_stored_as_plain_str() -> None:
    class Name(str):
        pass

    handle = Storage(MemoryBackend()).get_group("G")[Name("a"), "b"]
    assert handle.keys == ("a", "b")
    assert all(type(key) is str for key in handle.keys)


def test_direct_handle_construction_checks_keys() -> None:
    with pytest.raises(InvalidKeyError, match="got 0"):
        StorageValue(MemoryBackend(), "G")


async def test_async_with_closes_the_backend() -> None:
    backend = MemoryBackend()
    async with Storage(backend) as store:
        await store.get_group("G")["k"].set_value(1)
    assert backend.closed


async def test_subclassed_storage_keeps_its_type_in_async_with() -> None:
    class AppStorage(Storage):
        def settings(self) -> StorageValue:
            return self.get_group("APP")["settings"]

    async with AppStorage(MemoryBackend()) as store:
        await store.settings().set_value({"debug": True})
        assert await store.settings().get_value() == {"debug": True}


async def test_a_handle_checks_its_keys_once_not_on_every_get_and_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handle checked its keys when made: the policy's get and set do not check them again."""
    checked: list[object] = []
    real_check = _backend.check_record

    def counting_check(group: object, keys: tuple[object, ...]) -> tuple[str, tuple[str, ...]]:
        checked.append(keys)
        return real_check(group, keys)

    monkeypatch.setattr(_backend, "check_record", counting_check)
    store = Storage(MemoryBackend())
    handle = store.get_group("g")["k", "j"]
    await handle.set_value({"a": 1})
    assert await handle.get_value() == {"a": 1}
    assert checked == []
    assert await store.backend.get_data("g", "k", "j") == {"a": 1}  # the public method checks
    assert checked == [("k", "j")]
    await store.close()
    with pytest.raises(errors.StoreClosedError):
        await handle.get_value()
    with pytest.raises(errors.StoreClosedError):
        await handle.set_value(1)
