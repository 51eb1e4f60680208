"""The leases this instance holds (issue 10, "one poller per task across the fleet"), and their keeper.

A lease says which instance polls a video (or, while it is CREATING, whose POST is in flight). Every lease
this process takes goes through `Leases`, so that "do I hold it?" is answered locally and at once, and one
keeper task renews all of them every `lease_ttl / 3` in one `renew` call. A lease not returned by `renew`
was lost (it expired, and another instance may have taken it): `on_lost` is told, and its poller stops.

When the shared engine cannot be reached, a lease is kept (and its poller runs on) until it would have
expired by our own clock, measured from the start of the call that last took or renewed it: by then another
instance may hold it, so we stop. Two pollers for a moment are harmless; a task nobody polls is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from videogen_server import errors
from videogen_server.services.ports import Coordinator

log = logging.getLogger(__name__)


class Leases:
    def __init__(self, coordinator: Coordinator, *, on_lost: Callable[[set[str]], None]) -> None:
        self._coordinator = coordinator
        self._on_lost = on_lost
        self._ttl = coordinator.lease_ttl
        # video id -> when the lease expires by our clock (monotonic), at the latest.
        self._held: dict[str, float] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def instance(self) -> str:
        return self._coordinator.instance

    def __len__(self) -> int:
        return len(self._held)

    def holds(self, video_id: str) -> bool:
        """This instance holds the lease (it took it, and has not lost it by `renew` or our own clock)."""
        expiry = self._held.get(video_id)
        return expiry is not None and expiry > time.monotonic()

    async def acquire(self, video_id: str) -> bool:
        """Take the lease unless anyone else holds it: another instance, or other work in this process that
        took it through this same `Leases` (the coordinator cannot tell two holders in one process apart, so
        it would answer True to both; one releasing would then end the other's lease). Raises
        `errors.StoreUnavailable` when the engine cannot be reached (then it is not taken)."""
        if self._closed or self.holds(video_id):
            return False
        start = time.monotonic()
        won = await self._coordinator.acquire(video_id)
        if won and not self._closed:
            self._held[video_id] = start + self._ttl
            self._ensure_keeper()
        return won

    async def release(self, video_ids: Collection[str]) -> None:
        """Give up leases held here, telling the others (a successor takes over at once). Never raises for
        an unreachable engine: those leases then end by expiry."""
        mine = [v for v in video_ids if self._held.pop(v, None) is not None]
        if not mine:
            return
        try:
            await self._coordinator.release(mine)
        except errors.StoreUnavailable as exc:
            log.warning("could not release %d lease(s) (%s); they end by expiry", len(mine), exc)

    async def close(self) -> None:
        """Stop renewing and release every lease still held (called once the pollers have stopped)."""
        self._closed = True
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await self.release(list(self._held))

    # -- the keeper ------------------------------------------------------------------------------------

    def _ensure_keeper(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="lease keeper")

    async def _keep(self) -> None:
        while self._held:
            await asyncio.sleep(self._ttl / 3)
            try:
                await self.renew_once()
            except Exception:
                # A bug: the leases then end by our clock (renew_once's rule); the keeper lives on.
                log.exception("renewing leases failed unexpectedly")

    async def renew_once(self) -> set[str]:
        """One renewal of every lease held; returns (and reports) those lost."""
        snapshot = dict(self._held)
        if not snapshot:
            return set()
        start = time.monotonic()
        try:
            kept = await self._coordinator.renew(list(snapshot))
        except errors.StoreUnavailable as exc:
            now = time.monotonic()
            lost = {v for v, expiry in snapshot.items() if expiry <= now}
            log.warning(
                "could not renew %d lease(s) (%s); %d expired by our clock", len(snapshot), exc, len(lost)
            )
        else:
            lost = set(snapshot) - kept
            for video_id in kept:
                if self._held.get(video_id) == snapshot[video_id]:
                    self._held[video_id] = start + self._ttl
        # Only leases untouched meanwhile: one released (or taken afresh) during the call is not lost.
        lost = {v for v in lost if self._held.get(v) == snapshot[v]}
        for video_id in lost:
            del self._held[video_id]
        if lost:
            log.warning("lost %d lease(s) (expired; another instance may poll them now)", len(lost))
            self._on_lost(lost)
        return lost
