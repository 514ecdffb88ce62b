"""Counting the turns a backend gives the event loop (`_turns.TakesTurns._give_turn`)."""

from __future__ import annotations

import pytest

from rapid_dev_storage import StorageBackend


def count_turns(backend: StorageBackend, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """Return a list that grows by one each time ``backend`` gives the loop a turn."""
    turns: list[None] = []
    give_turn = backend._give_turn

    async def counted() -> None:
        turns.append(None)
        await give_turn()

    monkeypatch.setattr(backend, "_give_turn", counted)
    return turns
