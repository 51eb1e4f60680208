"""Graceful shutdown (SIGTERM to the server process): health turns NOT_SERVING, new calls are refused, streams
in flight get VIDEOGEN_SHUTDOWN_GRACE seconds and then end with an error status, never a short OK."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path

import grpc
import pytest
from conftest import FAST_SIMULATOR
from faults.helpers import outputs
from faults.server_process import SERVICE, start_process
from grpc_health.v1 import health_pb2
from rpc_helpers import wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator import RunwaySimulator
from videogen_server.simulator.faults import Fault

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")

GRACE = 2.0


async def drain(call) -> tuple[list[object], grpc.StatusCode]:
    """Every message until the stream ends, and how it ended."""
    messages: list[object] = []
    while True:
        try:
            message = await call.read()
        except grpc.aio.AioRpcError as err:
            return messages, err.code()
        if message is grpc.aio.EOF:
            return messages, await call.code()
        messages.append(message)


async def test_sigterm_drains_then_ends_streams_with_an_error(tmp_path: Path):
    sim = RunwaySimulator(
        api_key="key_shutdown_test",
        config=dataclasses.replace(FAST_SIMULATOR, output_size=64 * 1024 * 1024, max_concurrency=None),
    )
    await sim.start()
    server = await start_process(tmp_path / "data", sim, grace=GRACE)
    try:
        stub = server.stub
        big = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="big", seconds=5))).video
        await wait_terminal(stub, big.id)
        sim.config.running_seconds = 600.0
        running = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="long", seconds=5))).video

        health = server.health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await health.read()).status == health_pb2.HealthCheckResponse.SERVING
        watch = stub.WatchStatus(pb.WatchStatusRequest(id=running.id))
        assert (await watch.read()).video.status == video_pb2.VIDEO_STATUS_QUEUED
        # A download whose caller reads slowly (flow control holds the server back) ...
        download = stub.StreamContent(pb.StreamContentRequest(id=big.id))
        assert len((await download.read()).data) > 0
        # ... and one still waiting for Runway's output host.
        sim.faults.add(Fault(route="output", kind="slow", delay=60.0))
        before = outputs(sim)
        waiting = stub.StreamContent(pb.StreamContentRequest(id=big.id))
        async with asyncio.timeout(10):
            while outputs(sim) == before:  # noqa: ASYNC110 - the simulator's counter
                await asyncio.sleep(0.01)

        server.terminate()
        assert (await health.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING

        # New calls are refused.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Get(pb.GetRequest(id=big.id), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        # Streams in flight keep working during the grace: the watcher still gets changes.
        updates, watch_end = await drain(watch)
        assert updates, "the watcher got nothing during the grace period"
        assert all(u.video.status == video_pb2.VIDEO_STATUS_IN_PROGRESS for u in updates)
        chunks, download_end = await drain(download)
        _, waiting_end = await drain(waiting)
        _, health_end = await drain(health)
        for end in (watch_end, download_end, waiting_end, health_end):
            assert end in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), end
        # The download did not finish, and the caller was told so.
        assert sum(len(c.data) for c in chunks) < 64 * 1024 * 1024
        assert await server.wait_exit() == 0
        assert "shutting down" in server.output()
    finally:
        await server.close()
        await sim.stop()
