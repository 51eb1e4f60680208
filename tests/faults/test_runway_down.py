"""Runway down entirely (nothing listens at RUNWAYML_BASE_URL): creates fail fast with UNAVAILABLE and
nothing is paid, while the service stays healthy and serves what it has recorded. After a few refused
connections the circuit breaker (runway/breaker.py) opens and later calls fail without trying to connect."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc
from conftest import FAST_SIMULATOR, start_server, stop_server
from faults.helpers import sim_tasks
from faults.server_process import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rpc_helpers import ErrorDetails, details_of, expect_error, expect_stream_error, wait_terminal
from videogen.v1 import video_pb2, video_service_pb2_grpc
from videogen.v1 import video_service_pb2 as pb
from videogen_server.api.server import App
from videogen_server.config import Config
from videogen_server.simulator import RunwaySimulator


def posts_sent(app: App, endpoint: str) -> float:
    """Requests the service sent to Runway (whatever their outcome), from its own metrics."""
    assert app.metrics is not None
    total = 0.0
    for metric in app.metrics.registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "videogen_upstream_requests_total" and labels.get("endpoint") == endpoint:
                total += sample.value
    return total


async def test_runway_down_fails_fast_and_the_service_stays_healthy(tmp_path: Path):
    data_dir = str(tmp_path / "data")
    # First, with Runway up: one finished video and one still running.
    # The archive off: this is about Runway's path (a finished video archived is served with Runway down:
    # tests/integration/test_archive.py).
    up = await start_server(
        data_dir, sim_config=dataclasses.replace(FAST_SIMULATOR), runway_api_secret="key_test", archive="off"
    )
    try:
        done = (await up.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a", seconds=5))).video
        assert (await wait_terminal(up.stub, done.id)).status == video_pb2.VIDEO_STATUS_COMPLETED
        up.simulator.config.running_seconds = 600.0
        running = (await up.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="b", seconds=5))).video
    finally:
        await stop_server(up)

    # Then Runway disappears: nothing listens on its port.
    down_port = free_port()
    app = App(
        Config(
            listen="127.0.0.1:0",
            data_dir=data_dir,
            poll_interval=0.1,
            runway_api_secret="key_test",
            runway_base_url=f"http://127.0.0.1:{down_port}",
            archive="off",
        )
    )
    port = await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = video_service_pb2_grpc.VideoServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    try:
        err = await expect_error(
            stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="c", seconds=5, request_id="k1"))
        )
        # The connection never opened, so Runway cannot have started anything: a plain UNAVAILABLE.
        assert err.code == grpc.StatusCode.UNAVAILABLE and err.reason == "UPSTREAM_UNAVAILABLE"
        assert err.retry_delay is not None
        assert app.metrics is not None
        posts_before = posts_sent(app, "/v1/text_to_video")
        assert app.metrics.registry.get_sample_value("videogen_upstream_circuit_open") == 1

        # A burst right after: refused by the open circuit without connecting (at most one probe goes out
        # should the cooldown pass meanwhile; a failed probe re-opens the circuit for the probe's own call).
        burst = await asyncio.gather(
            *(
                expect_error(
                    stub.Generate(
                        pb.GenerateRequest(model="gen4.5", prompt="d", seconds=5, request_id=f"burst-{i}")
                    )
                )
                for i in range(20)
            )
        )
        for refused in burst:
            assert refused.code == grpc.StatusCode.UNAVAILABLE and refused.reason == "UPSTREAM_UNAVAILABLE"
            assert refused.metadata.get("circuit") == "open" and refused.retry_delay is not None
        assert posts_sent(app, "/v1/text_to_video") - posts_before <= 1

        for service in ("", "videogen.v1.VideoService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        got = (await stub.Get(pb.GetRequest(id=done.id))).video
        assert got.status == video_pb2.VIDEO_STATUS_COMPLETED and got.prompt == "a"
        still = (await stub.Get(pb.GetRequest(id=running.id))).video
        assert still.status == video_pb2.VIDEO_STATUS_QUEUED  # the last recorded state
        err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=done.id)))
        assert err.code == grpc.StatusCode.UNAVAILABLE

        # Runway comes back on the same address: the same request_id now creates exactly one task.
        back = RunwaySimulator(api_key="key_test", config=dataclasses.replace(FAST_SIMULATOR))
        await back.start(port=down_port)
        try:
            # Until the cooldown has passed the circuit refuses at once; then one probe closes it.
            video: video_pb2.Video | None = None
            for _ in range(40):
                try:
                    video = (
                        await stub.Generate(
                            pb.GenerateRequest(model="gen4.5", prompt="c", seconds=5, request_id="k1")
                        )
                    ).video
                    break
                except grpc.aio.AioRpcError as exc:
                    refused: ErrorDetails = details_of(exc)
                    assert refused.metadata.get("circuit") == "open", refused
                    await asyncio.sleep(min(refused.retry_delay or 0.5, 5.0))
            assert video is not None
            assert app.metrics.registry.get_sample_value("videogen_upstream_circuit_open") == 0
            assert video.status == video_pb2.VIDEO_STATUS_QUEUED
            assert await sim_tasks(back) == 1
        finally:
            await app.stop(grace=0.5)
            await back.stop()
    finally:
        await channel.close()
        await app.stop(grace=0.5)
