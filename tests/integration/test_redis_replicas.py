"""Two real server processes sharing one real redis-server (VIDEOGEN_STORE=redis://...), against the
simulator: a video made on one replica is the same video on the other (Get, Cancel, the idempotency key),
another caller gets NOT_FOUND on both; Redis stopped makes calls UNAVAILABLE with RetryInfo and sends
nothing to Runway; Redis started again on its data has everything acknowledged before."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from faults.helpers import LONG_RUNNING, posts
from faults.server_process import ServerProcess, start_process
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis_server import RedisServer
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator import RunwaySimulator

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef00"
KEYS = f"alice:{ALICE},bob:{BOB}"


def auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def request(request_id: str = "", prompt: str = "a boat") -> pb.GenerateRequest:
    return pb.GenerateRequest(model="gen4.5", prompt=prompt, seconds=5, request_id=request_id)


@pytest.fixture
async def simulator() -> AsyncIterator[RunwaySimulator]:
    sim = RunwaySimulator(api_key="key_replicas", config=dataclasses.replace(LONG_RUNNING))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def replicas(
    tmp_path: Path, redis_server: RedisServer, simulator: RunwaySimulator
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    env = {"VIDEOGEN_STORE": redis_server.url, "VIDEOGEN_API_KEYS": KEYS}
    a = await start_process(tmp_path / "a", simulator, extra_env=env)
    try:
        b = await start_process(tmp_path / "b", simulator, extra_env=env)
    except BaseException:
        await a.close()
        raise
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def details(err: grpc.aio.AioRpcError) -> list[object]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out: list[object] = []
    for any_ in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo):
            if any_.Is(cls.DESCRIPTOR):
                msg = cls()
                any_.Unpack(msg)
                out.append(msg)
    return out


async def test_a_video_made_on_one_replica_is_the_same_on_the_other(
    replicas: tuple[ServerProcess, ServerProcess], simulator: RunwaySimulator
) -> None:
    a, b = replicas
    assert "store redis://127.0.0.1:" in a.output()
    video = (await a.stub.Generate(request("same-key"), metadata=auth(ALICE))).video
    got = (await b.stub.Get(pb.GetRequest(id=video.id), metadata=auth(ALICE))).video
    assert got.id == video.id and got.prompt == "a boat"
    # The same request_id on the other replica: A's video, no second POST.
    again = (await b.stub.Generate(request("same-key"), metadata=auth(ALICE))).video
    assert again.id == video.id and posts(simulator) == 1
    # Another caller: NOT_FOUND on both replicas.
    for server in (a, b):
        for call in (server.stub.Get, server.stub.Cancel):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(
                    pb.GetRequest(id=video.id) if call is server.stub.Get else pb.CancelRequest(id=video.id),
                    metadata=auth(BOB),
                )
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # Cancel on B; A sees it.
    cancelled = (await b.stub.Cancel(pb.CancelRequest(id=video.id), metadata=auth(ALICE))).video
    assert cancelled.status == video_pb2.VIDEO_STATUS_CANCELLED
    seen = (await a.stub.Get(pb.GetRequest(id=video.id), metadata=auth(ALICE))).video
    assert seen.status == video_pb2.VIDEO_STATUS_CANCELLED


async def test_redis_down_is_unavailable_then_nothing_lost(
    replicas: tuple[ServerProcess, ServerProcess], redis_server: RedisServer, simulator: RunwaySimulator
) -> None:
    a, b = replicas
    before = [(await a.stub.Generate(request(f"k{i}"), metadata=auth(ALICE))).video for i in range(3)]
    sent = posts(simulator)
    redis_server.kill()  # a crash: what it acknowledged is in its append-only file
    for server in (a, b):
        for call in (
            server.stub.Generate(request("during"), metadata=auth(ALICE), timeout=10),
            server.stub.Get(pb.GetRequest(id=before[0].id), metadata=auth(ALICE), timeout=10),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
            found = details(info.value)
            assert any(
                isinstance(d, error_details_pb2.ErrorInfo) and d.reason == "STORE_UNAVAILABLE" for d in found
            )
            assert any(isinstance(d, error_details_pb2.RetryInfo) for d in found)
    assert posts(simulator) == sent  # no create whose key could not be claimed first
    redis_server.start()
    for server in (b, a):
        for video in before:
            got = (await server.stub.Get(pb.GetRequest(id=video.id), metadata=auth(ALICE))).video
            assert got.id == video.id
        again = (await server.stub.Generate(request("k0"), metadata=auth(ALICE))).video
        assert again.id == before[0].id
    assert posts(simulator) == sent
