"""VIDEOGEN_MAX_ACTIVE_PER_CALLER through the real server (issue 10, "Per-caller quotas, fleet-wide"): a
caller's Generate past its unfinished videos is RESOURCE_EXHAUSTED with a QuotaFailure naming the variable,
refused before any POST; other callers are unaffected; a video that ends frees the slot. With Redis, two
server processes on one redis-server honour one count for the fleet."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from conftest import start_server, stop_server
from faults.helpers import LONG_RUNNING, posts
from faults.server_process import start_process
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis_server import RedisServer
from rpc_helpers import wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator import RunwaySimulator

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef00"
KEYS = {"alice": ALICE, "bob": BOB}


def auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def request(request_id: str = "") -> pb.GenerateRequest:
    return pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5, request_id=request_id)


async def refused(call: object) -> tuple[grpc.StatusCode, str, list[str]]:
    """The status code, ErrorInfo reason and QuotaFailure subjects of a Generate that must fail."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
        assert status is not None
        reason, subjects = "", []
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                quota = error_details_pb2.QuotaFailure()
                detail.Unpack(quota)
                subjects = [v.subject for v in quota.violations]
        return err.code(), reason, subjects
    raise AssertionError("expected RESOURCE_EXHAUSTED")


REFUSED = (
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    "ACTIVE_VIDEOS_LIMIT_EXCEEDED",
    ["VIDEOGEN_MAX_ACTIVE_PER_CALLER"],
)


async def test_a_caller_past_its_unfinished_videos_is_refused_before_any_post(tmp_path: Path) -> None:
    sim = RunwaySimulator(api_key="key_test", config=dataclasses.replace(LONG_RUNNING))
    server = await start_server(str(tmp_path), simulator=sim, api_keys=KEYS, max_active_per_caller=2)
    try:
        stub = server.stub
        first = (await stub.Generate(request("a1"), metadata=auth(ALICE))).video
        await stub.Generate(request("a2"), metadata=auth(ALICE))
        assert await refused(stub.Generate(request("a3"), metadata=auth(ALICE))) == REFUSED
        assert posts(sim) == 2
        # A replay of a request_id already used is its video, not a refusal.
        again = (await stub.Generate(request("a1"), metadata=auth(ALICE))).video
        assert again.id == first.id
        # Another caller has slots of its own.
        await stub.Generate(request("b1"), metadata=auth(BOB))
        assert posts(sim) == 3

        # Alice's first video completes (its Runway task is made to finish now): a slot is free again.
        record = await server.app.store.get(first.id)
        assert record is not None
        task = sim._store.get(record.upstream_id)
        assert task is not None
        task.running_s = 0.0
        done = await wait_terminal(stub, first.id, metadata=auth(ALICE))
        assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
        await stub.Generate(request("a3"), metadata=auth(ALICE))
        assert posts(sim) == 4
        assert await refused(stub.Generate(request("a4"), metadata=auth(ALICE))) == REFUSED
        assert posts(sim) == 4
    finally:
        await stop_server(server)


@pytest.fixture
async def simulator() -> AsyncIterator[RunwaySimulator]:
    sim = RunwaySimulator(api_key="key_replicas", config=dataclasses.replace(LONG_RUNNING))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_two_replicas_on_one_redis_honour_one_count(
    tmp_path: Path, redis_server: RedisServer, simulator: RunwaySimulator
) -> None:
    env = {
        "VIDEOGEN_STORE": redis_server.url,
        "VIDEOGEN_API_KEYS": f"alice:{ALICE},bob:{BOB}",
        "VIDEOGEN_MAX_ACTIVE_PER_CALLER": "2",
    }
    a = await start_process(tmp_path / "a", simulator, extra_env=env)
    try:
        b = await start_process(tmp_path / "b", simulator, extra_env=env)
        try:
            await a.stub.Generate(request("x1"), metadata=auth(ALICE))
            await b.stub.Generate(request("x2"), metadata=auth(ALICE))
            for replica in (a, b):  # each replica has one of alice's videos: two in the fleet
                assert await refused(replica.stub.Generate(request("x3"), metadata=auth(ALICE))) == REFUSED
            assert posts(simulator) == 2
            await b.stub.Generate(request("y1"), metadata=auth(BOB))
            assert posts(simulator) == 3
        finally:
            await b.close()
    finally:
        await a.close()
