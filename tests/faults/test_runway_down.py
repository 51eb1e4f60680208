"""Runway down entirely (nothing listens at RUNWAYML_BASE_URL): creates fail fast with UNAVAILABLE and
nothing is paid, while the service stays healthy and serves what it has recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
from conftest import FAST_SIMULATOR, start_server, stop_server
from faults.helpers import sim_tasks
from faults.server_process import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rpc_helpers import expect_error, expect_stream_error, wait_terminal
from videogen.v1 import video_pb2, video_service_pb2_grpc
from videogen.v1 import video_service_pb2 as pb
from videogen_server.app import App
from videogen_server.config import Config
from videogen_server.simulator import RunwaySimulator


async def test_runway_down_fails_fast_and_the_service_stays_healthy(tmp_path: Path):
    data_dir = str(tmp_path / "data")
    # First, with Runway up: one finished video and one still running.
    up = await start_server(
        data_dir, sim_config=dataclasses.replace(FAST_SIMULATOR), runway_api_secret="key_test"
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
            video = (
                await stub.Generate(
                    pb.GenerateRequest(model="gen4.5", prompt="c", seconds=5, request_id="k1")
                )
            ).video
            assert video.status == video_pb2.VIDEO_STATUS_QUEUED
            assert await sim_tasks(back) == 1
        finally:
            await app.stop(grace=0.5)
            await back.stop()
    finally:
        await channel.close()
        await app.stop(grace=0.5)
