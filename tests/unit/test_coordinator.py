"""The Coordinator contract (services/ports.py), on every engine: the in-process one (a shared group stands
for several replicas) and Redis (a real redis-server, several coordinators on one key prefix).

Timing: expiry is checked from below (a lease is never free before `lease_ttl` has passed since it was
taken) and waited for with generous deadlines, never "within N ms", so that a slow, shared machine makes
these tests slower, not flaky."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from redis_server import RedisServer, require_redis_server, shared_redis, unique_prefix
from videogen_server import errors
from videogen_server.services.ports import Coordinator, Notice
from videogen_server.store import open_coordinator, redis_coordinator
from videogen_server.store.local_coordinator import LocalCoordinator
from videogen_server.store.redis_coordinator import RedisCoordinator

ENGINES = ["local", "redis"]

# Generous: a wait that should take milliseconds; only a broken engine reaches it.
WAIT_S = 10.0

MakeFleet = Callable[..., Awaitable[list[Coordinator]]]


@pytest.fixture(params=ENGINES)
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[MakeFleet]:
    """`await fleet(n, lease_ttl=...)`: n opened coordinators of one fleet (closed after the test)."""
    engine: str = request.param
    async with AsyncExitStack() as stack:

        async def make(n: int, lease_ttl: float = 10.0) -> list[Coordinator]:
            coords: list[Coordinator]
            if engine == "local":
                coords = list(LocalCoordinator.group(n, lease_ttl=lease_ttl))
            elif engine == "redis":
                url, prefix = shared_redis().url, unique_prefix()
                coords = [RedisCoordinator(url, prefix=prefix, lease_ttl=lease_ttl) for _ in range(n)]
            else:
                raise ValueError(engine)
            for c in coords:
                await c.open()
                stack.push_async_callback(c.close)
            return coords

        yield make


async def next_notice(it: AsyncIterator[Notice]) -> Notice:
    return await asyncio.wait_for(anext(it), WAIT_S)


async def wait_until_acquired(coord: Coordinator, video_id: str) -> float:
    """Try `acquire` until it succeeds; returns the monotonic time it did."""
    deadline = time.monotonic() + WAIT_S
    while not await coord.acquire(video_id):
        assert time.monotonic() < deadline, f"{video_id} never became free"
        await asyncio.sleep(0.02)
    return time.monotonic()


async def test_one_winner_among_concurrent_acquires(fleet: MakeFleet) -> None:
    coords = await fleet(3)
    assert len({c.instance for c in coords}) == 3
    results = await asyncio.gather(*(coords[i % 3].acquire("v1") for i in range(20)))
    winners = {coords[i % 3].instance for i, won in enumerate(results) if won}
    assert len(winners) == 1
    (winner,) = winners
    # Every call of the winner holds it (a second acquire renews); every call of the others lost.
    assert all(won == (coords[i % 3].instance == winner) for i, won in enumerate(results))
    for c in coords:
        assert await c.holder("v1") == winner
    assert await coords[0].holder("v-unknown") is None


async def test_a_lease_not_renewed_expires_and_another_takes_it(fleet: MakeFleet) -> None:
    ttl = 0.3
    a, b = await fleet(2, lease_ttl=ttl)
    assert a.lease_ttl == ttl
    start = time.monotonic()
    assert await a.acquire("v1")
    taken = await wait_until_acquired(b, "v1")
    assert taken - start >= ttl - 0.01  # never free before its ttl (1 ms rounding in Redis)
    assert await a.holder("v1") == b.instance
    assert not await a.acquire("v1")


async def test_renew_keeps_a_lease_past_its_ttl(fleet: MakeFleet) -> None:
    ttl = 3.0
    a, b = await fleet(2, lease_ttl=ttl)
    start = time.monotonic()
    assert await a.acquire("v1")
    await asyncio.sleep(ttl * 2 / 3)
    assert await a.renew(["v1"]) == {"v1"}
    await asyncio.sleep(ttl * 2 / 3)
    assert time.monotonic() - start > ttl  # past the first expiry: only the renewal holds it
    assert not await b.acquire("v1")
    assert await b.holder("v1") == a.instance


async def test_renew_returns_only_own_leases(fleet: MakeFleet) -> None:
    a, b = await fleet(2)
    assert await a.acquire("mine") and await b.acquire("theirs")
    assert await a.renew(["mine", "theirs", "nobody's"]) == {"mine"}
    assert await a.renew([]) == set()
    assert await a.holder("theirs") == b.instance
    assert await a.holder("nobody's") is None  # renew does not take a free lease


async def test_renew_after_another_took_the_lease_returns_nothing(fleet: MakeFleet) -> None:
    a, b = await fleet(2, lease_ttl=0.3)
    assert await a.acquire("v1")
    await wait_until_acquired(b, "v1")
    assert await a.renew(["v1"]) == set()
    assert await b.holder("v1") == b.instance


async def test_release_frees_only_own_leases_and_tells_the_others(fleet: MakeFleet) -> None:
    a, b, c = await fleet(3)
    a_notices, b_notices, c_notices = a.notices(), b.notices(), c.notices()
    assert await a.acquire("x") and await b.acquire("y")
    await a.release(["x", "y", "free"])
    assert await a.holder("x") is None
    assert await a.holder("y") == b.instance  # compare-and-delete: never another's
    assert await next_notice(b_notices) == Notice("released", "x")
    assert await next_notice(c_notices) == Notice("released", "x")
    # Nothing for "y" (not a's) nor "free" (not held), and nothing back to the sender: the next notice each
    # gets is the marker announced after.
    await c.announce("marker")
    assert await next_notice(a_notices) == Notice("changed", "marker")
    assert await next_notice(b_notices) == Notice("changed", "marker")
    assert await c.acquire("x")


async def test_poll_lock_is_exclusive_and_freed_only_by_its_taker(fleet: MakeFleet) -> None:
    a, b = await fleet(2)
    assert await a.lock_poll("v1", 30)
    assert not await b.lock_poll("v1", 30)
    assert not await a.lock_poll("v1", 30)  # not reentrant: one read in flight, even from one instance
    await b.unlock_poll("v1")  # not b's: no effect
    assert not await b.lock_poll("v1", 30)
    await a.unlock_poll("v1")
    assert await b.lock_poll("v1", 30)
    assert await a.lock_poll("v2", 30)  # per video
    # Leases and poll locks are apart.
    assert await a.holder("v1") is None and await a.acquire("v1")


async def test_poll_lock_expires(fleet: MakeFleet) -> None:
    a, b = await fleet(2)
    ttl = 0.3
    start = time.monotonic()
    assert await a.lock_poll("v1", ttl)
    deadline = start + WAIT_S
    while not await b.lock_poll("v1", 30):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert time.monotonic() - start >= ttl - 0.01
    await a.unlock_poll("v1")  # expired and taken by b: a's unlock must not free b's
    assert not await a.lock_poll("v1", 30)


async def test_announce_reaches_the_others_not_the_sender(fleet: MakeFleet) -> None:
    a, b, c = await fleet(3)
    its = {x.instance: x.notices() for x in (a, b, c)}
    await a.announce("v1")
    await b.announce("v2")
    assert await next_notice(its[b.instance]) == Notice("changed", "v1")
    assert await next_notice(its[c.instance]) == Notice("changed", "v1")
    assert await next_notice(its[c.instance]) == Notice("changed", "v2")
    assert await next_notice(its[a.instance]) == Notice("changed", "v2")  # not its own v1


async def test_notices_end_when_closed(fleet: MakeFleet) -> None:
    (a,) = await fleet(1)
    it = a.notices()
    pending = asyncio.ensure_future(anext(it))
    await asyncio.sleep(0)
    await a.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, WAIT_S)
    with pytest.raises(RuntimeError):
        await a.acquire("v1")


async def test_a_lone_local_coordinator_is_the_whole_fleet() -> None:
    coord = LocalCoordinator(lease_ttl=5.0)
    with pytest.raises(RuntimeError):
        await coord.acquire("v1")  # not open
    await coord.open()
    assert await coord.acquire("v1") and await coord.acquire("v1")
    assert await coord.renew(["v1", "v2"]) == {"v1"}
    await coord.announce("v1")  # nobody to tell
    await coord.release(["v1"])
    assert await coord.holder("v1") is None
    it = coord.notices()
    await coord.close()
    assert [n async for n in it] == []  # it never heard of itself
    assert LocalCoordinator().instance != coord.instance


def test_open_coordinator_follows_the_store_setting() -> None:
    assert isinstance(open_coordinator("sqlite", lease_ttl=3.0), LocalCoordinator)
    assert isinstance(open_coordinator("sqlite:///tmp/x.db", lease_ttl=3.0), LocalCoordinator)
    for url in ("redis://127.0.0.1:1/0", "rediss://user:pw@redis.internal:6380/2"):
        coord = open_coordinator(url, lease_ttl=3.0)
        assert isinstance(coord, RedisCoordinator) and coord.lease_ttl == 3.0
    assert open_coordinator("sqlite", lease_ttl=3.0).lease_ttl == 3.0


# --- Redis: its own redis-server, to kill and restart ----------------------------------------------------


async def test_notices_resync_after_a_redis_restart_then_flow_again(redis_server: RedisServer) -> None:
    prefix = unique_prefix()
    a = RedisCoordinator(redis_server.url, prefix=prefix)
    b = RedisCoordinator(redis_server.url, prefix=prefix)
    await a.open()
    await b.open()
    try:
        it = b.notices()
        await a.announce("before")
        assert await next_notice(it) == Notice("changed", "before")
        assert await a.acquire("v1")

        redis_server.kill()
        for call in (
            lambda: a.acquire("v2"),
            lambda: a.renew(["v1"]),
            lambda: a.release(["v1"]),
            lambda: a.holder("v1"),
            lambda: a.lock_poll("v1", 5),
            lambda: a.unlock_poll("v1"),
            lambda: a.announce("during"),
        ):
            start = time.monotonic()
            with pytest.raises(errors.StoreUnavailable) as info:
                await call()
            assert time.monotonic() - start < 5  # bounded by the store's timeouts, not a caller's deadline
            assert info.value.reason == "STORE_UNAVAILABLE"

        redis_server.start()  # the same directory: the append-only file comes back
        assert await next_notice(it) == Notice("resync")
        await a.announce("after")
        assert await next_notice(it) == Notice("changed", "after")
        assert await a.holder("v1") == a.instance  # the lease survived in the AOF
    finally:
        await a.close()
        await b.close()


async def test_close_is_prompt_while_redis_is_down(redis_server: RedisServer) -> None:
    coord = RedisCoordinator(redis_server.url, prefix=unique_prefix())
    await coord.open()
    it = coord.notices()
    pending = asyncio.ensure_future(anext(it))
    redis_server.kill()
    await asyncio.sleep(0.3)  # the listener is reconnecting, in its backoff
    start = time.monotonic()
    await asyncio.wait_for(coord.close(), WAIT_S)
    assert time.monotonic() - start < 5
    with pytest.raises(StopAsyncIteration):  # ended by close, never an error because Redis is down
        await asyncio.wait_for(pending, WAIT_S)


async def test_close_is_prompt_while_redis_is_hung(redis_server: RedisServer) -> None:
    coord = RedisCoordinator(redis_server.url, prefix=unique_prefix())
    await coord.open()
    assert await coord.acquire("v1")  # a pooled command connection too
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(errors.StoreUnavailable):
            await coord.holder("v1")
        start = time.monotonic()
        await asyncio.wait_for(coord.close(), WAIT_S)
        assert time.monotonic() - start < 5
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)


async def test_open_with_redis_down_resyncs_once_it_is_up(tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "late")  # not started yet
    prefix = unique_prefix()
    coord = RedisCoordinator(server.url, prefix=prefix)
    await asyncio.wait_for(coord.open(), WAIT_S)  # does not fail: the listener keeps trying
    try:
        it = coord.notices()
        server.start()
        assert await next_notice(it) == Notice("resync")  # anything sent before it subscribed is lost
        other = RedisCoordinator(server.url, prefix=prefix)
        await other.open()
        try:
            await other.announce("v1")
            assert await next_notice(it) == Notice("changed", "v1")
        finally:
            await other.close()
    finally:
        await coord.close()
        server.stop()


async def test_a_hung_subscription_is_noticed_and_resynced(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGSTOP: the connection stays open and silent (no FIN, as with a partition); only the PING the
    # listener sends after a silence tells it is dead. Shortened here so the test takes seconds.
    monkeypatch.setattr(redis_coordinator, "_PING_AFTER_SILENCE_S", 0.3)
    prefix = unique_prefix()
    coord = RedisCoordinator(redis_server.url, prefix=prefix, socket_timeout=0.5)
    await coord.open()
    try:
        it = coord.notices()
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            # Longer than silence + PING timeout + a tick: the listener has given up on the connection.
            await asyncio.sleep(3.0)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        assert await next_notice(it) == Notice("resync")
        other = RedisCoordinator(redis_server.url, prefix=prefix)
        await other.open()
        try:
            await other.announce("v1")
            assert await next_notice(it) == Notice("changed", "v1")
        finally:
            await other.close()
    finally:
        await coord.close()
