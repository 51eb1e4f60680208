"""Output downloads and Runway API calls never compete for one HTTP connection pool (issue 8, item 3).

Every open StreamContent holds one upstream download connection for its whole life. Those connections must
come from a pool of their own, sized to VIDEOGEN_MAX_STREAMS, so that streams held open by slow readers can
never leave a Generate (or a Get, or a poll) waiting for a connection to Runway's API."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
from conftest import FAST_SIMULATOR, start_server, stop_server
from rpc_helpers import wait_terminal
from videogen.v1 import video_pb2, video_service_pb2_grpc
from videogen.v1 import video_service_pb2 as pb

MIB = 1024 * 1024
HOG, OTHER = "hog-caller-key-0123456789", "other-caller-key-0123456789"
KEYS = {"hog": HOG, "other": OTHER}
# More than the API pool's 100 connections would be the same test; 100 is what filled the shared pool.
STREAMS = 100


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def test_held_downloads_leave_api_calls_free(tmp_path):
    # 8 MiB outputs: far more than flow control lets through, so each stream blocks after its first message
    # with its upstream download (and that download's connection) held open.
    sim = dataclasses.replace(FAST_SIMULATOR, output_size=8 * MIB)
    # 256 streams in all; the per-caller share (half: 128) still lets one caller hold 100.
    server = await start_server(str(tmp_path), sim_config=sim, api_keys=KEYS, max_streams=256)
    # BDP probing off keeps the HTTP/2 windows at their small defaults: the server cannot push ahead.
    hog_channel = grpc.aio.insecure_channel(server.address, options=[("grpc.http2.bdp_probe", 0)])
    hog = video_service_pb2_grpc.VideoServiceStub(hog_channel)
    calls: list[grpc.aio.UnaryStreamCall] = []  # type: ignore[type-arg]
    try:
        video = (
            await hog.Generate(pb.GenerateRequest(model="gen4.5", prompt="big"), metadata=bearer(HOG))
        ).video
        done = await wait_terminal(hog, video.id, metadata=bearer(HOG))
        assert done.status == video_pb2.VIDEO_STATUS_COMPLETED

        calls = [
            hog.StreamContent(pb.StreamContentRequest(id=video.id), metadata=bearer(HOG))
            for _ in range(STREAMS)
        ]
        firsts = await asyncio.gather(*(call.read() for call in calls))
        assert all(m.total_size == 8 * MIB for m in firsts)  # type: ignore[union-attr]
        assert server.app.limits is not None and server.app.limits.streams.in_use == STREAMS

        # Another caller's create must still reach Runway. Before the fix it waited for a pooled connection
        # until its deadline (DEADLINE_EXCEEDED); the deadline is generous for a shared, slow machine.
        created = await server.stub.Generate(
            pb.GenerateRequest(model="gen4.5", prompt="not starved"), metadata=bearer(OTHER), timeout=8
        )
        assert created.video.id
        got = await server.stub.Get(pb.GetRequest(id=created.video.id), metadata=bearer(OTHER), timeout=8)
        assert got.video.id == created.video.id
    finally:
        for call in calls:
            call.cancel()
        await hog_channel.close()
        await stop_server(server)
