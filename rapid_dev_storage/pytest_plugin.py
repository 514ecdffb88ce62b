"""A pytest plugin: every test gets a fresh overlay over a fixture store, which never changes.

Name the fixture store's directory in your pytest configuration::

    [tool.pytest.ini_options]
    rapid_dev_storage_fixtures = "fixtures/store"
    asyncio_mode = "auto"    # async tests need an asyncio plugin: here pytest-asyncio
    asyncio_default_fixture_loop_scope = "function"

or per test with ``@pytest.mark.rapid_dev_storage_fixtures("path")``. Then::

    async def test_something(rapid_dev_storage_overlay):
        async with rapid_dev_storage_overlay() as store:
            await store.get_group("USER")["u1", "name"].set_value("changed")  # this test only

Writes and clears land in a layer in the test's temporary directory (clears as tombstones);
reads fall through to the fixture.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from ._api import Storage
from ._overlay import OverlayBackend

OverlayFactory = Callable[..., contextlib.AbstractAsyncContextManager[Storage]]
INI_NAME = "rapid_dev_storage_fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ini option naming the fixture store's directory."""
    parser.addini(INI_NAME, "directory of the fixture store that tests see through an overlay")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker that names a fixture store for one test."""
    config.addinivalue_line(
        "markers", f"{INI_NAME}(path): the fixture store directory for this test's overlay"
    )


@pytest.fixture
def rapid_dev_storage_overlay(request: pytest.FixtureRequest, tmp_path: Path) -> OverlayFactory:
    """Return ``open_overlay(name=None, unique_identifier=None)``: an async context manager.

    It yields a `Storage` over the fixture store through a fresh writable layer.
    """
    marker = request.node.get_closest_marker(INI_NAME)
    configured = marker.args[0] if marker else request.config.getini(INI_NAME)
    if not configured:
        raise pytest.UsageError(
            f"rapid_dev_storage_overlay needs a fixture store: set {INI_NAME} in the pytest "
            f"configuration or mark the test with @pytest.mark.{INI_NAME}(path)"
        )
    fixture = Path(request.config.rootpath, configured)
    layers = iter(range(1_000_000))

    @contextlib.asynccontextmanager
    async def open_overlay(
        name: str | None = None, unique_identifier: str | None = None
    ) -> AsyncIterator[Storage]:
        layer = tmp_path / f"rapid-dev-storage-layer-{next(layers)}"
        backend = await OverlayBackend.over(fixture, layer, name, unique_identifier)
        async with Storage(backend) as store:
            yield store

    return open_overlay
