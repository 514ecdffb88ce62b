"""One place resolves settings: the argument, else ``RAPID_DEV_STORAGE_<NAME>``, else a default."""

from __future__ import annotations

import os
from typing import Any, Callable, Literal, NamedTuple, TypeVar

from ._codecs import Codec, resolve_codec
from ._validate import check_store_name

T = TypeVar("T")

Durability = Literal["full", "fast"]
"""``full``: a write whose ``await`` returned survives power loss (on an honest disk).
``fast``: writes stay atomic against a process crash, but the newest may be lost with the power."""

DURABILITY_LEVELS: tuple[Durability, ...] = ("full", "fast")

ENV_PREFIX = "RAPID_DEV_STORAGE_"


def resolve(name: str, argument: T | None, default: T, parse: Callable[[str], T]) -> T:
    """Return ``argument`` if given, else the parsed environment variable, else ``default``.

    Raises:
        ValueError: the environment variable's value does not parse; the message names it.

    """
    if argument is not None:
        return argument
    variable = ENV_PREFIX + name.upper()
    raw = os.environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {variable}={raw!r} is not valid: {exc}") from exc


def parse_durability(text: str) -> Durability:
    """Accept one of `DURABILITY_LEVELS`."""
    if text in DURABILITY_LEVELS:
        return text
    raise ValueError(f"durability must be one of {', '.join(DURABILITY_LEVELS)}, not {text!r}")


def parse_seconds(text: str) -> float:
    """Accept a non-negative number of seconds.

    Raises:
        ValueError: saying what was expected and quoting ``text`` (float's own message,
            "could not convert string to float", names neither the setting nor what it wants).

    """
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")  # refused below, with the message that says what is wanted
    if not seconds >= 0:
        raise ValueError(f"a timeout must be a number of seconds >= 0, not {text!r}")
    return seconds


def resolve_durability(argument: str | None) -> Durability:
    """Return the durability level for a new backend instance."""
    checked = parse_durability(argument) if argument is not None else None
    return resolve("durability", checked, "full", parse_durability)


def parse_byte_count(text: str) -> int:
    """Accept a whole number of bytes >= 0 (`parse_seconds` says why int's message is not used)."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"a size must be a whole number of bytes >= 0, not {text!r}")
    return count


def resolve_inline_limit(argument: int | None) -> int:
    """Return the largest record read on the event loop thread (0: all reads use a thread)."""
    checked = parse_byte_count(str(argument)) if argument is not None else None
    return resolve("inline_limit", checked, 64 * 1024, parse_byte_count)


def parse_flag(text: str) -> bool:
    """Accept 1/0, true/false, yes/no, on/off."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected 1 or 0 (true or false), not {text!r}")


def resolve_force_polling(argument: bool | None) -> bool:
    """Return whether the file watcher polls instead of using OS events (WSL, Docker volumes)."""
    return resolve("force_polling", argument, False, parse_flag)


def resolve_lock_timeout(argument: float | None) -> float:
    """Return how long to wait for another process's lock before `LockTimeoutError`."""
    checked = parse_seconds(str(argument)) if argument is not None else None
    return resolve("lock_timeout", checked, 10.0, parse_seconds)


class StoreOptions(NamedTuple):
    """What opening any store resolves: its names, the codec asked for, and the settings.

    A NamedTuple, not a frozen dataclass: making the class costs a fifth as much (about 0.7 ms
    less at every start of the command line, which measures its start-up).
    """

    name: str
    identifier: str
    codec: Codec | None
    """None: use the store's own codec (msgpack for a new store)."""
    durability: Durability
    lock_timeout: float


def resolve_store_options(
    name: object,
    unique_identifier: object,
    serializer: Callable[[Any], bytes] | None,
    deserializer: Callable[[bytes], Any] | None,
    codec: str | Codec | None,
    durability: str | None,
    lock_timeout: float | None,
) -> StoreOptions:
    """Check and resolve the arguments every backend's ``create_backend_instance`` takes.

    They come in the order of its signature, so a backend may pass them on as they stand.

    Raises:
        InvalidNameError: unusable store names.
        ValueError: an unknown codec or setting, naming the argument or environment variable.

    """
    store_name, identifier = check_store_name(name, unique_identifier)
    return StoreOptions(
        name=store_name,
        identifier=identifier,
        codec=resolve_codec(codec, serializer, deserializer),
        durability=resolve_durability(durability),
        lock_timeout=resolve_lock_timeout(lock_timeout),
    )
