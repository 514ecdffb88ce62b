"""The conformance suite every backend passes, shipped so that your own backend can run it too.

Subclass `BackendConformance` in a test module (the class name must start with ``Test``) and
implement `BackendConformance.open_backend`::

    class TestMyBackend(BackendConformance):
        codecs = ("msgpack", "json")

        async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
            return await MyBackend.create_backend_instance(directory, "suite", 1, codec=codec)

pytest then runs every check once per codec. The suite needs pytest and hypothesis (the
``test`` extra) but no asyncio plugin: each check runs its own event loop.

The checks live in one module per concern (``_conformance_values``, ``_conformance_records``,
``_conformance_update``, ``_conformance_bad_day``, ``_conformance_model``); this module runs
them and checks that the backend implements every hook of the contract.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from ._api import Storage
from ._backend import StorageBackend
from ._conformance_bad_day import BadDayCases
from ._conformance_model import DictModel
from ._conformance_records import RecordCases
from ._conformance_support import BAD_VALUES, Case, storable_values
from ._conformance_update import UpdateCases
from ._conformance_values import ValueCases
from ._hooks import missing_hooks
from .errors import UnsupportedOperationError

__all__ = ["BAD_VALUES", "BackendConformance", "storable_values"]


def _resources() -> tuple[int, int]:
    """Return the process's thread and open-file counts (file count 0 where /proc is missing)."""
    try:
        descriptors = len(os.listdir("/proc/self/fd"))
    except OSError:
        descriptors = 0
    return threading.active_count(), descriptors


class BackendConformance(ValueCases, RecordCases, UpdateCases, BadDayCases):
    """Every behaviour the `StorageBackend` contract promises, as pytest tests."""

    codecs: ClassVar[tuple[str, ...]] = ("msgpack", "json")
    """Codec names each check runs with; each is passed to `open_backend`."""

    model_examples: ClassVar[int] = 40
    """Examples for the stateful comparison with a dict model."""

    async def open_backend(self, codec: str, directory: Path) -> StorageBackend:
        """Return a new, empty backend using ``codec``; ``directory`` is yours to use."""
        raise NotImplementedError("subclasses of BackendConformance implement open_backend()")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run each check once per codec in `codecs`."""
        if "codec" in metafunc.fixturenames:
            metafunc.parametrize("codec", self.codecs)

    def run_case(self, body: Case, codec: str, directory: Path) -> None:
        """Run one check against a fresh store in its own event loop, closing it afterwards."""

        async def main() -> None:
            store = Storage(await self.open_backend(codec, directory))
            try:
                await body(self, store)
            finally:
                await store.close()

        before = _resources()
        asyncio.run(main())
        assert _resources() == before, "the store leaked threads or file descriptors"

    # --- the contract -------------------------------------------------------------------------

    def test_implements_every_hook(self, codec: str, tmp_path: Path) -> None:
        """The backend implements every hook of `StorageBackend`, ``_read`` to ``_close``."""

        async def check(suite: Any, store: Storage) -> None:
            backend_class = type(store.backend)
            missing = ", ".join(f"{hook}()" for hook in missing_hooks(backend_class))
            if missing:
                pytest.fail(
                    f"{backend_class.__name__} implements none of StorageBackend's hooks "
                    f"({missing}): it follows the original seven-method contract, which Storage "
                    "runs through an adapter that cannot list groups, watch changes or update "
                    "atomically across processes; implement every hook",
                    pytrace=False,
                )

        try:
            self.run_case(check, codec, tmp_path)
        except UnsupportedOperationError as exc:  # at construction: some hooks but not all
            pytest.fail(str(exc), pytrace=False)

    # --- model --------------------------------------------------------------------------------

    def test_matches_a_dict_model(self, codec: str) -> None:
        """Random sequences of every operation leave the store equal to a plain dict."""
        open_backend = self.open_backend

        class Model(DictModel):
            def __init__(self) -> None:
                super().__init__(open_backend, codec)

        run_state_machine_as_test(
            Model,
            settings=settings(
                max_examples=self.model_examples,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
