"""VIDEOGEN_MAX_CONNECTION_AGE: the server asks clients to reconnect after a while (HTTP/2 GOAWAY), so that a
client behind a DNS name (a Kubernetes headless Service) resolves it again and reaches replicas added since;
calls in flight, long WatchStatus streams included, run on to their end on the old connection."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc
import pytest
from conftest import FAST_SIMULATOR, start_server, stop_server
from videogen.v1 import video_pb2, video_service_pb2
from videogen_server.api.server import server_options
from videogen_server.config import Config, ConfigError

AGE = 0.5


async def test_a_connection_older_than_the_age_is_closed_and_a_longer_stream_still_ends_normally(
    tmp_path: Path,
) -> None:
    # Every video takes several ages to finish: the stream must outlive its connection's age.
    slow = dataclasses.replace(FAST_SIMULATOR, pending_seconds=0.5, running_seconds=2.0)
    server = await start_server(str(tmp_path / "data"), sim_config=slow, max_connection_age=AGE)
    try:
        video = (
            await server.stub.Generate(video_service_pb2.GenerateRequest(model="gen4.5", prompt="a boat"))
        ).video
        assert server.channel.get_state() is grpc.ChannelConnectivity.READY
        updates = [
            u.video.status
            async for u in server.stub.WatchStatus(video_service_pb2.WatchStatusRequest(id=video.id))
        ]
        assert updates[-1] == video_pb2.VIDEO_STATUS_COMPLETED
        # Past the age (and its jitter), the server has sent GOAWAY: the channel left READY on its own,
        # with no call failing for it.
        state = server.channel.get_state()
        for _ in range(50):
            if state is not grpc.ChannelConnectivity.READY:
                break
            await asyncio.sleep(0.1)
            state = server.channel.get_state()
        assert state is not grpc.ChannelConnectivity.READY
        # The next call opens a new connection and succeeds.
        again = await server.stub.Get(video_service_pb2.GetRequest(id=video.id))
        assert again.video.status == video_pb2.VIDEO_STATUS_COMPLETED
    finally:
        await stop_server(server)


async def test_without_an_age_the_connection_stays() -> None:
    assert all(
        name != "grpc.max_connection_age_ms" for name, _ in server_options(Config(max_connection_age=None))
    )
    assert ("grpc.max_connection_age_ms", 300_000) in server_options(Config())


@pytest.mark.parametrize(
    ("raw", "expected"), [("", 300.0), ("off", None), ("OFF", None), ("60", 60.0), ("0.5", 0.5)]
)
def test_the_setting(raw: str, expected: float | None) -> None:
    assert Config.from_env({"VIDEOGEN_MAX_CONNECTION_AGE": raw}).max_connection_age == expected


@pytest.mark.parametrize("raw", ["0", "-1", "soon"])
def test_a_bad_setting_is_one_clear_line(raw: str) -> None:
    with pytest.raises(
        ConfigError, match="VIDEOGEN_MAX_CONNECTION_AGE must be a positive number of seconds or 'off'"
    ):
        Config.from_env({"VIDEOGEN_MAX_CONNECTION_AGE": raw})
