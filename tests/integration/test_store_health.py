"""Health follows the store: a server on a real redis-server reports NOT_SERVING (for videogen.v1.VideoService
and for the whole server, "") while Redis is down, and SERVING again once it is back; a call failing for the
store turns it at once, without waiting for the periodic check; shutdown's NOT_SERVING stays."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from conftest import RunningServer, start_server, stop_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis_server import RedisServer
from videogen.v1 import video_service_pb2 as pb
from videogen_server.api import server as api_server

SERVICE = "videogen.v1.VideoService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BOUND_S = 10.0  # generous: the check runs every second, a dead Redis fails it within ~2 s


@pytest.fixture
async def on_redis(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[RunningServer]:
    server = await start_server(str(tmp_path / "data"), store=redis_server.url)
    try:
        yield server
    finally:
        await stop_server(server)


async def statuses(server: RunningServer) -> dict[str, int]:
    health = health_pb2_grpc.HealthStub(server.channel)
    out = {}
    for service in (SERVICE, ""):
        out[service] = (await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)).status
    return out


async def wait_for(server: RunningServer, status: int, bound: float = BOUND_S) -> float:
    """Seconds until both services report `status`; fails past `bound`."""
    start = time.monotonic()
    while True:
        now = await statuses(server)
        if all(s == status for s in now.values()):
            return time.monotonic() - start
        assert time.monotonic() - start < bound, f"health still {now} after {bound}s"
        await asyncio.sleep(0.05)


async def test_health_is_not_serving_while_redis_is_down_and_serving_when_back(
    on_redis: RunningServer, redis_server: RedisServer
) -> None:
    assert await statuses(on_redis) == {SERVICE: SERVING, "": SERVING}
    redis_server.kill()
    await wait_for(on_redis, NOT_SERVING)
    redis_server.start()  # the same directory and port
    await wait_for(on_redis, SERVING)
    # And the service really serves again.
    video = (
        await on_redis.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5))
    ).video
    assert video.id


async def test_a_call_failing_for_the_store_turns_health_at_once(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No periodic check within the test: only the failed call can turn health.
    monkeypatch.setattr(api_server, "STORE_CHECK_INTERVAL_S", 3600.0)
    server = await start_server(str(tmp_path / "data"), store=redis_server.url)
    try:
        assert await statuses(server) == {SERVICE: SERVING, "": SERVING}
        redis_server.kill()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.stub.Get(pb.GetRequest(id="00000000-0000-4000-8000-000000000000"), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        await wait_for(server, NOT_SERVING)
    finally:
        await stop_server(server)


async def test_shutdown_not_serving_is_not_undone_by_the_store_check(on_redis: RunningServer) -> None:
    health = health_pb2_grpc.HealthStub(on_redis.channel)
    seen: list[int] = []

    async def watch() -> None:
        async for reply in health.Watch(health_pb2.HealthCheckRequest(service=SERVICE)):
            seen.append(reply.status)

    watcher = asyncio.create_task(watch())
    await wait_until(lambda: seen == [SERVING])
    await on_redis.app.stop(grace=2.0)
    await asyncio.wait([watcher], timeout=5)
    watcher.cancel()
    # SERVING, then NOT_SERVING for good: never SERVING again after the shutdown began.
    assert seen[0] == SERVING and NOT_SERVING in seen
    assert SERVING not in seen[seen.index(NOT_SERVING) :], seen
    # The periodic store check ended with the server.
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "videogen-store-health"]


async def wait_until(condition: Callable[[], bool], bound: float = BOUND_S) -> None:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < bound
        await asyncio.sleep(0.02)
