"""Three real server processes on one real redis-server, against one simulator (a real HTTP server in this
process, counting Runway's requests): one poller per task across the fleet, change notices, Get freshness
across replicas, take-over after kill -9 and SIGTERM, unwatched videos followed to the end, restart recovery
and one create per request_id (issue 10). The same logic in one process: tests/unit/test_fleet_tracker.py."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import httpx
import pytest
from faults.helpers import gets, posts
from faults.server_process import ServerProcess, free_port, start_process
from redis_server import RedisServer
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.domain.video import OUTCOME_UNKNOWN_CODE, VideoRecord, VideoStatus
from videogen_server.simulator import RunwaySimulator, SimulatorConfig
from videogen_server.simulator.faults import Fault
from videogen_server.store import open_store

# Tasks that run a few seconds: long enough to count polls, short enough to see them end.
RUNNING = SimulatorConfig(pending_seconds=0.05, running_seconds=4.0, max_concurrency=None, output_size=1024)
BOUND = 30.0  # generous: something that should happen "soon", under a loaded machine


def request(request_id: str = "", prompt: str = "a boat") -> pb.GenerateRequest:
    return pb.GenerateRequest(model="gen4.5", prompt=prompt, seconds=5, request_id=request_id)


@dataclasses.dataclass
class Replica:
    server: ServerProcess
    metrics_port: int

    async def leases_held(self) -> float:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        for line in text.splitlines():
            if line.startswith("videogen_leases_held "):
                return float(line.split()[1])
        raise AssertionError("no videogen_leases_held on /metrics")


@pytest.fixture
async def simulator() -> AsyncIterator[RunwaySimulator]:
    sim = RunwaySimulator(api_key="key_fleet", config=dataclasses.replace(RUNNING))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


StartReplica = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def start_replica(
    tmp_path: Path, redis_server: RedisServer, simulator: RunwaySimulator
) -> AsyncIterator[StartReplica]:
    started: list[Replica] = []

    async def start(name: str, *, poll_interval: float = 0.5, lease_ttl: float = 2.0) -> Replica:
        port = free_port()
        env = {
            "VIDEOGEN_STORE": redis_server.url,
            "VIDEOGEN_LEASE_TTL": str(lease_ttl),
            "VIDEOGEN_METRICS_LISTEN": f"127.0.0.1:{port}",
        }
        server = await start_process(tmp_path / name, simulator, poll_interval=poll_interval, extra_env=env)
        started.append(Replica(server, port))
        return started[-1]

    try:
        yield start
    finally:
        for replica in started:
            await replica.server.close()


async def three(start: StartReplica, **settings: float) -> list[Replica]:
    return [await start(name, **settings) for name in ("a", "b", "c")]


async def until(condition: Callable[[], Awaitable[bool]], bound: float = BOUND) -> None:
    async with asyncio.timeout(bound):
        while not await condition():  # noqa: ASYNC110 - the state of other processes: no event to wait on
            await asyncio.sleep(0.05)


async def watch_to_end(replica: Replica, video_id: str) -> list[int]:
    seen: list[int] = []
    async with asyncio.timeout(BOUND + 30):
        async for update in replica.server.stub.WatchStatus(pb.WatchStatusRequest(id=video_id)):
            seen.append(update.video.status)
    return seen


async def stored(redis_url: str, tmp_path: Path, video_id: str) -> VideoRecord | None:
    """The record as the fleet's store holds it (read directly: no replica polls on our behalf)."""
    store = open_store(tmp_path / "reader", redis_url)
    await store.open()
    try:
        return await store.get(video_id)
    finally:
        await store.close()


async def test_watchers_on_three_replicas_share_one_poller(start_replica: StartReplica, simulator) -> None:
    replicas = await three(start_replica, poll_interval=0.5)
    video = (await replicas[0].server.stub.Generate(request())).video
    watches = [asyncio.create_task(watch_to_end(r, video.id)) for r in replicas for _ in range(3)]
    await asyncio.sleep(0.5)  # every stream attached
    before, start = gets(simulator), time.monotonic()
    await asyncio.sleep(2.5)
    polls, elapsed = gets(simulator) - before, time.monotonic() - start
    # One poller in the fleet: about one GET per interval (jitter is ±20 %), where one poller per replica
    # would make three.
    assert 1 <= polls <= elapsed / 0.5 * 1.25 + 1, polls
    for seen in await asyncio.gather(*watches):
        assert seen[-1] == video_pb2.VIDEO_STATUS_COMPLETED


async def test_concurrent_stale_gets_on_three_replicas_cost_one_upstream_get(
    start_replica: StartReplica, simulator
) -> None:
    # A long poll interval: the holder's own poller stays out of the way; freshness is the default 1 s.
    replicas = await three(start_replica, poll_interval=60.0)
    video = (await replicas[0].server.stub.Generate(request())).video
    simulator.config = dataclasses.replace(RUNNING, running_seconds=600.0)  # (new tasks only)
    long_video = (await replicas[0].server.stub.Generate(request(prompt="long"))).video
    del video
    for round_no in range(3):
        await asyncio.sleep(1.2)  # past the freshness window: every replica's view is stale
        before = gets(simulator)
        got = await asyncio.gather(
            *(r.server.stub.Get(pb.GetRequest(id=long_video.id)) for r in replicas for _ in range(2))
        )
        assert {g.video.status for g in got} == {video_pb2.VIDEO_STATUS_IN_PROGRESS}
        assert gets(simulator) - before == 1, round_no


async def test_kill_9_of_the_lease_holder_leaves_no_watcher_stranded(
    start_replica: StartReplica, simulator
) -> None:
    replicas = await three(start_replica, poll_interval=0.3, lease_ttl=1.5)
    holder, others = replicas[0], replicas[1:]
    video = (await holder.server.stub.Generate(request())).video
    assert await holder.leases_held() == 1  # the creator holds the lease
    assert [await r.leases_held() for r in others] == [0, 0]
    watches = [asyncio.create_task(watch_to_end(r, video.id)) for r in others for _ in range(3)]
    await asyncio.sleep(0.3)
    holder.server.kill()
    for seen in await asyncio.gather(*watches):
        assert seen[-1] == video_pb2.VIDEO_STATUS_COMPLETED


async def test_sigterm_of_the_holder_hands_the_lease_on_within_an_interval(
    start_replica: StartReplica, simulator
) -> None:
    interval = 1.0
    # A lease of 60 s: only the hand-over at shutdown (not expiry) can explain a prompt take-over.
    replicas = await three(start_replica, poll_interval=interval, lease_ttl=60.0)
    simulator.config = dataclasses.replace(RUNNING, running_seconds=600.0)
    holder, follower = replicas[0], replicas[1]
    video = (await holder.server.stub.Generate(request())).video
    watch = asyncio.create_task(watch_to_end(follower, video.id))
    ticks: list[float] = []  # when the simulator's GET count moved
    last = gets(simulator)

    async def note_gets() -> None:
        nonlocal last
        while True:
            now = gets(simulator)
            if now != last:
                last = now
                ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    noting = asyncio.create_task(note_gets())
    try:
        await until(lambda: asyncio.sleep(0, len(ticks) >= 2))  # the holder polls
        holder.server.terminate()
        stopped_at = time.monotonic()
        assert await holder.server.wait_exit() == 0
        await until(lambda: asyncio.sleep(0, bool(ticks) and ticks[-1] > stopped_at), bound=10.0)
        before = [t for t in ticks if t <= stopped_at]
        after = [t for t in ticks if t > stopped_at]
        gap = after[0] - before[-1]
        # The bound is one poll interval; the margin covers jitter (±20 %) and a process exit.
        assert gap < 2 * interval, (gap, ticks)
        assert await follower.leases_held() + await replicas[2].leases_held() == 1
    finally:
        noting.cancel()
        watch.cancel()


async def test_a_video_never_watched_is_followed_to_completion(
    start_replica: StartReplica, simulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    replicas = await three(start_replica, poll_interval=0.3)
    video = (await replicas[1].server.stub.Generate(request())).video

    async def completed() -> bool:
        record = await stored(redis_server.url, tmp_path, video.id)
        return record is not None and record.status is VideoStatus.COMPLETED

    await until(completed)  # nobody called Get or WatchStatus
    await until(lambda: _all_zero(replicas))  # and its lease was released


async def _all_zero(replicas: list[Replica]) -> bool:
    return all([await r.leases_held() == 0 for r in replicas])


async def test_restart_closes_a_create_killed_mid_post_and_resumes_an_unfinished_video(
    start_replica: StartReplica, simulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    a = await start_replica("a", poll_interval=0.3, lease_ttl=1.5)
    simulator.config = dataclasses.replace(RUNNING, running_seconds=3.0)
    unfinished = (await a.server.stub.Generate(request("q", "queued"))).video
    simulator.faults.add(Fault(route="create", kind="slow", delay=10.0))
    in_flight = asyncio.ensure_future(a.server.stub.Generate(request("mid", "mid")))
    await until(lambda: asyncio.sleep(0, posts(simulator) == 2))  # the POST reached Runway
    a.server.kill()  # between the POST and its answer
    with pytest.raises(grpc.aio.AioRpcError):
        await in_flight
    simulator.faults.clear()
    creating = [
        r
        for r in await _unfinished(redis_server.url, tmp_path)
        if r.status is VideoStatus.CREATING and r.request_id == "mid"
    ]
    assert len(creating) == 1
    await start_replica("a-again", poll_interval=0.3, lease_ttl=1.5)  # a new process: a new instance

    async def settled() -> bool:
        mid = await stored(redis_server.url, tmp_path, creating[0].id)
        done = await stored(redis_server.url, tmp_path, unfinished.id)
        return (
            mid is not None
            and mid.status is VideoStatus.FAILED
            and done is not None
            and done.status is VideoStatus.COMPLETED
        )

    await until(settled)  # with no call from anyone: the recovery scan
    mid = await stored(redis_server.url, tmp_path, creating[0].id)
    assert mid is not None and mid.error_code == OUTCOME_UNKNOWN_CODE
    assert posts(simulator) == 2  # nothing sent again


async def _unfinished(redis_url: str, tmp_path: Path) -> list[VideoRecord]:
    store = open_store(tmp_path / "reader", redis_url)
    await store.open()
    try:
        return await store.list_unfinished()
    finally:
        await store.close()


async def test_fifty_generates_of_one_request_id_over_three_replicas_post_once(
    start_replica: StartReplica, simulator
) -> None:
    replicas = await three(start_replica, poll_interval=0.5)
    # The POST takes a while, so that the duplicates on the other replicas arrive while it is in flight.
    simulator.faults.add(Fault(route="create", kind="slow", delay=1.0))
    got = await asyncio.gather(
        *(replicas[n % 3].server.stub.Generate(request("one-key"), timeout=BOUND) for n in range(50))
    )
    assert len({g.video.id for g in got}) == 1
    assert posts(simulator) == 1
