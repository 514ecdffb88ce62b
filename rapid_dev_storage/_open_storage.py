"""`open_storage`: a `Storage` from a URL, so that choosing a backend is configuration, not code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._api import Storage
from ._urls import merge_options, parse_url, resolve_url
from .errors import InvalidNameError

if TYPE_CHECKING:
    from ._backend import StorageBackend


async def open_backend(
    url: str | None, name: object, unique_identifier: object, options: dict[str, Any]
) -> StorageBackend:
    """Open the backend `open_storage` wraps (the sync API opens through this too)."""
    if name is None or unique_identifier is None:
        raise InvalidNameError(
            "open_storage() needs the store's name and unique_identifier, as "
            "open_storage(url, 'my app', 1)",
            name=name,
        )
    resolved = resolve_url(url)
    parsed = parse_url(resolved)
    merged = merge_options(parsed, resolved, options)
    if parsed.scheme == "postgresql":
        from ._postgres_run import require_asyncpg  # noqa: PLC0415  (only PostgreSQL's)

        require_asyncpg()  # before anything else: the error names the extra to install
    return await parsed.backend.create_backend_instance(
        parsed.path,
        name,  # type: ignore[arg-type]  # checked by the backend, which names what is wrong
        unique_identifier,  # type: ignore[arg-type]
        **merged,
    )


async def open_storage(
    url: str | None = None,
    name: str | None = None,
    unique_identifier: int | str | None = None,
    **options: Any,
) -> Storage:
    """Open (creating if needed) the store ``(name, unique_identifier)`` at ``url``.

    ``url`` is ``file:DIR`` (or ``file:///abs/dir``), ``sqlite:FILE`` (or ``sqlite::memory:``),
    ``memory:`` or ``postgresql://...``; left out (None), the environment variable
    ``RAPID_DEV_STORAGE_URL``, else ``file:data``. Backend options come as keyword arguments
    (``codec="json"``) or as the URL's query (``file:data?codec=json&durability=fast``); an
    argument of None counts as not given. Use the result as ``async with``, like any `Storage`.

    Raises:
        LocationError: an unknown scheme, no path, an option the backend does not take, or one
            given in the URL and as an argument with different values.
        InvalidNameError: no or unusable store names.
        UnsupportedOperationError: a ``postgresql://`` URL without asyncpg installed (the
            message names the extra: ``pip install 'rapid_dev_storage[postgres]'``).

    """
    return Storage(await open_backend(url, name, unique_identifier, options))
