"""The lease keeper (services/leases.py): one renew call for every lease held; a lease not returned is lost;
with the engine unreachable a lease is kept until it would have expired by our own clock, then lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from videogen_server import errors
from videogen_server.services.leases import Leases
from videogen_server.store.local_coordinator import LocalCoordinator

TTL = 0.3


class Flaky(LocalCoordinator):
    """A coordinator whose renew can be made to fail (the shared engine unreachable), counting its calls."""

    def __init__(self) -> None:
        super().__init__(TTL)
        self.down = False
        self.renews: list[list[str]] = []

    async def renew(self, video_ids):  # type: ignore[no-untyped-def]
        self.renews.append(sorted(video_ids))
        if self.down:
            raise errors.StoreUnavailable("redis is down (test)")
        return await super().renew(video_ids)


@pytest.fixture
async def coordinator() -> AsyncIterator[Flaky]:
    coord = Flaky()
    await coord.open()
    try:
        yield coord
    finally:
        await coord.close()


async def test_every_lease_is_renewed_in_one_call_and_kept(coordinator: Flaky) -> None:
    lost: list[set[str]] = []
    leases = Leases(coordinator, on_lost=lost.append)
    assert await leases.acquire("a") and await leases.acquire("b")
    await asyncio.sleep(TTL * 2)  # past the ttl: only renewals keep them
    assert leases.holds("a") and leases.holds("b") and lost == []
    assert ["a", "b"] in coordinator.renews  # both in one call
    await leases.close()
    assert await coordinator.holder("a") is None  # released at close


async def test_a_lease_another_instance_took_is_lost(coordinator: Flaky) -> None:
    lost: list[set[str]] = []
    leases = Leases(coordinator, on_lost=lost.append)
    assert await leases.acquire("a")
    coordinator._fleet.leases["a"] = ("someone else", float("inf"))  # it expired and was taken meanwhile
    assert await leases.renew_once() == {"a"}
    assert lost == [{"a"}] and not leases.holds("a")
    await leases.close()
    assert await coordinator.holder("a") == "someone else"  # never released on its new holder's behalf


async def test_an_unreachable_engine_keeps_leases_until_they_expire_by_our_clock(coordinator: Flaky) -> None:
    lost: list[set[str]] = []
    leases = Leases(coordinator, on_lost=lost.append)
    assert await leases.acquire("a")
    coordinator.down = True
    assert await leases.renew_once() == set()  # not expired yet: still ours (its poller runs on)
    assert leases.holds("a") and lost == []
    await asyncio.sleep(TTL)
    assert not leases.holds("a")  # by our clock it is over, whatever the keeper has done
    # Reported lost exactly once: by this renewal, or by the keeper's own if it ran at the same instant (it
    # renews every TTL/3; under load its third renewal can land just before this one).
    assert await leases.renew_once() in ({"a"}, set())
    assert lost == [{"a"}]
    await leases.close()
