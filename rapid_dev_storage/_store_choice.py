"""Choosing a store among those a place holds: the one named, or else the only one there is."""

from __future__ import annotations

from .errors import LocationError


def only_store(
    where: str,
    stores: list[tuple[str, str]],
    name: str | None,
    identifier: str | None,
    *,
    options: tuple[str, str] = ("--name ", "--id "),
) -> tuple[str, str]:
    """Return the one store of ``stores`` (at ``where``) that has the names given, if any.

    ``options`` are how the caller's user names a store (the command line's, by default).

    Raises:
        LocationError: none or several of them match, listing those that do.

    """
    candidates = [
        store
        for store in stores
        if (name is None or store[0] == name) and (identifier is None or store[1] == identifier)
    ]
    if len(candidates) == 1:
        return candidates[0]
    by_name, by_identifier = options
    listed = ", ".join(f"{by_name}{n!r} {by_identifier}{u!r}" for n, u in candidates) or "none"
    raise LocationError(
        f"{where} holds {len(candidates)} matching stores ({listed}): say which with "
        f"{by_name.strip()} and {by_identifier.strip()}",
        location=where,
    )
