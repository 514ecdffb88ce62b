"""Publication to watchers: a backend's side of change notifications.

Each backend has one `ChangeHub` (`_watch`), made when first watched. A write through the
backend tells the hub the bytes it is about to store, then publishes them once it landed
(`Publishes._publishing`); a write that fails or loses its compare-and-swap is forgotten again.
While nobody watches, writes skip all of it. A backend that can see other writers starts doing
so in the optional hooks `Publishes._start_watching` and `Publishes._stop_watching`, and
offers what it sees to the hub (`ChangeHub.publish`, `ChangeHub.offer`).

The hub reaches the backend only through the three callables it is given (decode, start,
stop); the backend uses only the hub's public methods.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator

from ._settling import SettlesReads
from ._types import Keys
from ._validate import check_group_name, check_prefix
from .errors import InvalidKeyError

if TYPE_CHECKING:
    from ._changes import Filter
    from ._watch import Callback, ChangeHub, Subscription, Watch

# `_watch` (the hub, watches, subscriptions and their dataclasses) loads with the first watch:
# a program or a command that never watches does not pay for it (start-up time is measured).
# ruff: noqa: PLC0415


class WriteOutcome:
    """Whether a write landed (a compare-and-swap may not); set inside `Publishes._publishing`."""

    landed = True


class Publishes(SettlesReads):
    """Watching a backend: its changes published to a `ChangeHub`, watches and subscriptions."""

    _change_hub: ChangeHub | None = None  # made by the first watch

    def watch_changes(self, group_name: str | None = None, *prefix: str) -> Watch:
        """Return a `Watch` of changes to ``group_name`` (None: all) under ``prefix``."""
        from ._watch import Watch

        return Watch(self._watch_hub(), self._watch_filter(group_name, prefix))

    async def subscribe_changes(
        self, callback: Callback, group_name: str | None = None, prefix: tuple[str, ...] = ()
    ) -> Subscription:
        """Call ``callback(change)`` (sync or async) for every matching change until cancelled.

        A callback that raises is logged and stays subscribed; it never stops the others.
        """
        from ._watch import Subscription

        where = self._watch_filter(group_name, prefix)
        hub = self._watch_hub()
        subscription = Subscription(hub, callback)
        await hub.add_callback(subscription, where)
        return subscription

    # --- optional hooks ---------------------------------------------------------------------

    async def _start_watching(self) -> None:
        """Begin publishing other writers' changes (by default only our own are seen)."""

    async def _stop_watching(self) -> None:
        """Stop what `_start_watching` began."""

    # --- the hub ----------------------------------------------------------------------------

    def _watch_hub(self) -> ChangeHub:
        """Return the backend's change hub, made on first use."""
        self._check_open()
        if self._change_hub is None:
            from ._watch import ChangeHub

            self._change_hub = ChangeHub(
                decode=self._change_value, start=self._start_watching, stop=self._stop_watching
            )
        return self._change_hub

    def _change_value(self, group: str, keys: Keys, data: bytes) -> Any:
        """Return the value a change to ``data`` carries (raising `CorruptRecordError`)."""
        return self._decode(group, keys, data)[1]

    def _watch_filter(self, group_name: str | None, prefix: tuple[str, ...]) -> Filter:
        from ._changes import Filter

        group = None if group_name is None else check_group_name(group_name)
        if group is None and prefix:
            raise InvalidKeyError("a key prefix needs a group to apply to", keys=prefix)
        return Filter(group, check_prefix(prefix, group))

    def _active_hub(self) -> ChangeHub | None:
        """Return the change hub while anyone watches, else None: changes cost nothing then."""
        hub = self._change_hub
        return hub if hub is not None and hub.active else None

    async def _end_watches(self) -> None:
        """End every watch and subscription: the backend is closing."""
        if self._change_hub is not None:
            await self._change_hub.close()

    # --- publishing -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _publishing(
        self, group: str, records: list[Keys], data: bytes | None
    ) -> AsyncIterator[WriteOutcome]:
        """Publish a write of ``records`` (``data``; None: cleared) once it landed, if watched.

        The hub learns the new bytes before the write starts, so a file watcher that sees the
        write before it returns (a slow fsync, a large clear) takes it for our own and stays
        quiet; if the write fails, the hub forgets them again.
        """
        hub = self._active_hub()
        outcome = WriteOutcome()
        if hub is None:
            yield outcome
            return
        for keys in records:
            hub.remember(group, keys, data)
        try:
            yield outcome
        except BaseException:
            for keys in records:
                hub.forget(group, keys)
            raise
        if outcome.landed:
            for keys in records:
                self._published(group, keys, data)
        else:
            for keys in records:
                hub.forget(group, keys)

    def _published(self, group: str, keys: Keys, data: bytes | None) -> None:
        """Publish a change made through this backend, if anyone watches."""
        hub = self._active_hub()
        if hub is not None:
            hub.publish(group, keys, data, "local")
