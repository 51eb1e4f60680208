"""The archive with replicas (issue 11): two real server processes on one real redis-server and one shared
archive directory, against the simulator. Every video is copied by one replica, once, though both scan for
copies every few tenths of a second; either replica serves it from the archive with no request to Runway; a
replica killed (SIGKILL) mid-copy loses its copy's lease by expiry and the other redoes the copy."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import FAST_SIMULATOR
from faults.helpers import outputs
from faults.server_process import ServerProcess, start_process
from redis_server import RedisServer
from rpc_helpers import read_content
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.domain.video import archive_key
from videogen_server.simulator import RunwaySimulator
from videogen_server.simulator.media import OutputMedia

SIZE = 1024 * 1024 + 17
BOUND = 60.0


@pytest.fixture
async def simulator() -> AsyncIterator[RunwaySimulator]:
    sim = RunwaySimulator(
        api_key="key_archive_replicas",
        config=dataclasses.replace(FAST_SIMULATOR, output_size=SIZE, max_concurrency=None),
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def replica_env(redis: RedisServer, archive_dir: Path) -> dict[str, str]:
    return {
        "VIDEOGEN_STORE": redis.url,
        "VIDEOGEN_ARCHIVE": f"file://{archive_dir}",  # the directory every replica mounts
        "VIDEOGEN_ARCHIVE_SCAN_INTERVAL": "0.3",  # both look for copies to do, all the time
        "VIDEOGEN_LEASE_TTL": "1.5",
    }


async def wait_archived(server: ServerProcess, video_id: str) -> video_pb2.Video:
    async with asyncio.timeout(BOUND):
        while True:
            video = (await server.stub.Get(pb.GetRequest(id=video_id))).video
            if video.videos and video.videos[0].sha256:
                return video
            await asyncio.sleep(0.05)


def original(task_id: str, size: int = SIZE) -> bytes:
    return OutputMedia(task_id, 0, size).read(0, size)


async def test_each_video_is_copied_once_by_one_replica_and_served_by_both(
    tmp_path: Path, redis_server: RedisServer, simulator: RunwaySimulator
) -> None:
    env = replica_env(redis_server, tmp_path / "archive")
    a = await start_process(tmp_path / "a", simulator, extra_env=env)
    b = await start_process(tmp_path / "b", simulator, extra_env=env)
    try:
        made = [
            (
                await (a if i % 2 else b).stub.Generate(
                    pb.GenerateRequest(model="gen4.5", prompt=f"v{i}", seconds=5)
                )
            )
            for i in range(6)
        ]
        videos = [await wait_archived(b, m.video.id) for m in made]
        for video in videos:
            assert video.videos[0].sha256 == hashlib.sha256(original(video.upstream_task_id)).hexdigest()
        await asyncio.sleep(1.0)  # a few more scans on both: nothing is copied again
        assert outputs(simulator) == len(videos)  # one download per video, by one replica
        before = sum(simulator.request_counts.values())
        for server in (a, b):
            data, _ = await read_content(server.stub, videos[0].id)
            assert data == original(videos[0].upstream_task_id)
        assert sum(simulator.request_counts.values()) == before
    finally:
        await a.close()
        await b.close()


async def test_a_replica_killed_mid_copy_loses_the_copy_to_the_other(
    tmp_path: Path, redis_server: RedisServer, simulator: RunwaySimulator
) -> None:
    size = 12 * 1024 * 1024
    simulator.config.output_size = size
    simulator.config.output_bytes_per_second = 2 * 1024 * 1024  # a copy lasts ~6 s
    env = replica_env(redis_server, tmp_path / "archive")
    a = await start_process(tmp_path / "a", simulator, extra_env=env)
    try:
        made = (await a.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="killed", seconds=5))).video
        async with asyncio.timeout(BOUND):
            while outputs(simulator) < 1:  # noqa: ASYNC110 - A's copy began (B is not even running)
                await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        a.kill()
    finally:
        await a.close()
    simulator.config.output_bytes_per_second = None
    b = await start_process(tmp_path / "b", simulator, extra_env=env)
    try:
        video = await wait_archived(b, made.id)  # after A's lease expired, B's scan took the copy over
        want = original(video.upstream_task_id, size)
        assert video.videos[0].sha256 == hashlib.sha256(want).hexdigest()
        assert outputs(simulator) == 2  # A's cut copy, B's whole one
        assert (tmp_path / "archive" / archive_key(made.id, 0)).read_bytes() == want
    finally:
        await b.close()
