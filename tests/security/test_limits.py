"""Bounded resources: caps on concurrent WatchStatus and StreamContent streams, refused at once with
RESOURCE_EXHAUSTED (QuotaFailure + ErrorInfo + RetryInfo), released when a stream ends however it ends."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import grpc
from conftest import FAST_SIMULATOR, start_server, stop_server
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from rpc_helpers import expect_stream_error, read_content, wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.api.limits import ConcurrencyLimit
from videogen_server.config import Config

MIB = 1024 * 1024


async def _released(limit: ConcurrencyLimit, in_use: int) -> None:
    """Wait (bounded) for the server to notice that a stream the client cancelled has ended."""
    async with asyncio.timeout(10):
        while limit.in_use != in_use:  # noqa: ASYNC110 (the server exposes a counter, not an event)
            await asyncio.sleep(0.01)


async def _quota_failure(call: object) -> tuple[grpc.StatusCode, str, list[str]]:
    try:
        async for _ in call:  # type: ignore[attr-defined]
            pass
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


async def _first(call: grpc.aio.UnaryStreamCall) -> object:  # type: ignore[type-arg]
    return await call.read()


async def test_watcher_limit_refuses_fast_and_releases(tmp_path):
    server = await start_server(str(tmp_path), max_watchers=2)
    try:
        assert server.app.limits is not None
        watchers = server.app.limits.watchers
        server.simulator.config.running_seconds = 60.0  # stays running while we watch
        video = (await server.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="watched"))).video
        request = pb.WatchStatusRequest(id=video.id)

        first, second = server.stub.WatchStatus(request), server.stub.WatchStatus(request)
        for call in (first, second):
            assert (await _first(call)).video.id == video.id  # type: ignore[attr-defined]
        assert watchers.in_use == 2

        code, reason, subjects = await _quota_failure(server.stub.WatchStatus(request, timeout=10))
        assert (code, reason, subjects) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "CONCURRENCY_LIMIT_EXCEEDED",
            ["VIDEOGEN_MAX_WATCHERS"],
        )
        assert watchers.in_use == 2  # a refusal holds nothing
        # Other RPCs are not affected by the watcher cap.
        got = await server.stub.Get(pb.GetRequest(id=video.id))
        assert got.video.id == video.id
        health = health_pb2_grpc.HealthStub(server.channel)
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == 1

        first.cancel()
        await _released(watchers, 1)
        third = server.stub.WatchStatus(request)
        assert (await _first(third)).video.id == video.id  # type: ignore[attr-defined]
        assert watchers.in_use == 2

        # A stream that ends with an error releases its slot too.
        second.cancel()
        await _released(watchers, 1)
        err = await expect_stream_error(server.stub.WatchStatus(pb.WatchStatusRequest(id=str(uuid.uuid4()))))
        assert err.code == grpc.StatusCode.NOT_FOUND
        assert watchers.in_use == 1
        # And a cancelled video ends every watch: its slot comes back.
        await server.stub.Cancel(pb.CancelRequest(id=video.id))
        while await third.read() is not grpc.aio.EOF:
            pass
        await _released(watchers, 0)
    finally:
        await stop_server(server)


async def test_stream_limit_refuses_fast_and_releases(tmp_path):
    # Outputs big enough that an unread stream is held by flow control, not finished into buffers.
    sim = dataclasses.replace(FAST_SIMULATOR, output_size=64 * MIB)
    server = await start_server(str(tmp_path), sim_config=sim, max_streams=1)
    try:
        assert server.app.limits is not None
        streams = server.app.limits.streams
        video = (await server.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="big"))).video
        done = await wait_terminal(server.stub, video.id)

        held = server.stub.StreamContent(pb.StreamContentRequest(id=video.id))
        assert (await _first(held)).total_size == 64 * MIB  # type: ignore[attr-defined]
        assert streams.in_use == 1
        code, _, subjects = await _quota_failure(
            server.stub.StreamContent(pb.StreamContentRequest(id=video.id), timeout=10)
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and subjects == ["VIDEOGEN_MAX_STREAMS"]
        # Watchers have their own cap.
        watched = [u async for u in server.stub.WatchStatus(pb.WatchStatusRequest(id=video.id))]
        assert watched[-1].video.status == video_pb2.VIDEO_STATUS_COMPLETED

        held.cancel()
        await _released(streams, 0)
        data, _ = await read_content(server.stub, video.id, offset=64 * MIB - 1000)
        assert data == server.simulator.output_bytes(done.upstream_task_id)[-1000:]
        assert streams.in_use == 0
    finally:
        await stop_server(server)


def test_limits_come_from_the_environment():
    config = Config.from_env({"VIDEOGEN_MAX_STREAMS": "3", "VIDEOGEN_MAX_WATCHERS": "4"})
    assert (config.max_streams, config.max_watchers) == (3, 4)
    defaults = Config.from_env({})
    assert (defaults.max_streams, defaults.max_watchers) == (256, 10_000)
    for bad in ("0", "-1", "many"):
        try:
            Config.from_env({"VIDEOGEN_MAX_WATCHERS": bad})
        except ValueError as exc:
            assert "VIDEOGEN_MAX_WATCHERS" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
