"""Issue 12's Remix acceptance through the real server (gRPC on loopback) and the simulator (a real HTTP
server): a remix of a completed video whose Runway URL still works, and of one whose URL expired and whose
task Runway forgot (through the archive, `file://`): both complete, and the video-to-video task's input is
that video's bytes (the simulator records the SHA-256 of what each task received). A source that is not
COMPLETED is FAILED_PRECONDITION, another caller's is NOT_FOUND, and a replayed request_id returns the same
video with one create (and one upload) between them."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

import grpc
from conftest import FAST_SIMULATOR, RunningServer, start_server, stop_server
from rpc_helpers import expect_error, read_content, wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.domain.video import ArchiveState
from videogen_server.simulator import RunwaySimulator

OUTPUT_SIZE = 2 * 1024 * 1024 + 777
SIM = dataclasses.replace(FAST_SIMULATOR, output_size=OUTPUT_SIZE, output_url_ttl=1.0)
V2V = ("POST", "/v1/video_to_video")
UPLOADS = ("POST", "/v1/uploads")
ALICE, BOB = "alice-secret-key-0001", "bob-secret-key-00002"
BOUND = 30.0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def completed_video(
    server: RunningServer, metadata: tuple[tuple[str, str], ...] = ()
) -> video_pb2.Video:
    video = (
        await server.stub.Generate(
            pb.GenerateRequest(model="gen4.5", prompt="a lighthouse", seconds=5), metadata=metadata
        )
    ).video
    done = await wait_terminal(server.stub, video.id, metadata=metadata)
    assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
    return done


async def wait_archived(server: RunningServer, video_id: str) -> None:
    async with asyncio.timeout(BOUND):
        while True:
            record = await server.app.store.get(video_id)
            if record is not None and record.outputs and record.outputs[0].archive is ArchiveState.ARCHIVED:
                return
            await asyncio.sleep(0.05)


def received(sim: RunwaySimulator, task_id: str) -> dict[str, object]:
    """What the simulator's task got as its video input."""
    inputs = sim.task_inputs(task_id)
    assert list(inputs) == ["videoUri"], inputs
    entry = inputs["videoUri"]
    assert isinstance(entry, dict)
    return entry


async def test_a_remix_of_a_video_whose_runway_url_still_works_sends_that_url(tmp_path: Path) -> None:
    server = await start_server(str(tmp_path / "data"), sim_config=SIM, archive="off")
    sim = server.simulator
    try:
        source = await completed_video(server)
        source_bytes, _ = await read_content(server.stub, source.id)
        assert len(source_bytes) == OUTPUT_SIZE
        remix = (
            await server.stub.Remix(pb.RemixRequest(id=source.id, prompt="make it snow", request_id="snow-1"))
        ).video
        assert remix.source_video_id == source.id and remix.model == "aleph2"
        assert remix.mode == video_pb2.GENERATION_MODE_VIDEO_TO_VIDEO
        done = await wait_terminal(server.stub, remix.id)
        assert done.status == video_pb2.VIDEO_STATUS_COMPLETED and done.source_video_id == source.id
        got = received(sim, done.upstream_task_id)
        assert got["sha256"] == sha256(source_bytes) and got["size"] == OUTPUT_SIZE
        assert got["task"] == source.upstream_task_id  # Runway's own output URL of the source task
        assert sim.request_counts[UPLOADS] == 0

        # A replay of the request_id: the same video, no second create.
        again = (
            await server.stub.Remix(pb.RemixRequest(id=source.id, prompt="make it snow", request_id="snow-1"))
        ).video
        assert again.id == remix.id and sim.request_counts[V2V] == 1
    finally:
        await stop_server(server)


async def test_a_remix_of_a_video_runway_forgot_is_uploaded_from_the_archive(tmp_path: Path) -> None:
    archive_dir = tmp_path / "archive"
    server = await start_server(
        str(tmp_path / "data"), sim_config=SIM, archive=f"file://{archive_dir}", archive_scan_interval=3600.0
    )
    sim = server.simulator
    try:
        source = await completed_video(server)
        await wait_archived(server, source.id)
        source_bytes, _ = await read_content(server.stub, source.id)
        await asyncio.sleep(SIM.output_url_ttl + 0.2)  # Runway's URL expired
        assert sim.forget_task(source.upstream_task_id)  # and Runway forgot the task
        request = pb.RemixRequest(id=source.id, prompt="make it snow", request_id="snow-2")
        remix = (await server.stub.Remix(request)).video
        assert remix.source_video_id == source.id
        done = await wait_terminal(server.stub, remix.id)
        assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
        got = received(sim, done.upstream_task_id)
        assert str(got["uri"]).startswith("runway://")
        archived = (await server.stub.Get(pb.GetRequest(id=source.id))).video.videos[0].sha256
        assert got["sha256"] == sha256(source_bytes) == archived
        assert got["size"] == OUTPUT_SIZE
        assert sim.request_counts[UPLOADS] == 1 and sim.uploads.counts.with_authorization == 0

        again = (await server.stub.Remix(request)).video  # a replay: no second upload, no second create
        assert again.id == remix.id
        assert sim.request_counts[UPLOADS] == 1 and sim.request_counts[V2V] == 1
    finally:
        await stop_server(server)


async def test_a_source_not_completed_or_another_callers_is_refused_before_any_create(tmp_path: Path) -> None:
    slow = dataclasses.replace(SIM, pending_seconds=30.0)
    server = await start_server(
        str(tmp_path / "data"), sim_config=slow, api_keys={"alice": ALICE, "bob": BOB}
    )
    sim = server.simulator
    alice, bob = server.metadata(ALICE), server.metadata(BOB)
    try:
        queued = (
            await server.stub.Generate(
                pb.GenerateRequest(model="gen4.5", prompt="x", seconds=5), metadata=alice
            )
        ).video
        refused = await expect_error(
            server.stub.Remix(pb.RemixRequest(id=queued.id, prompt="snow"), metadata=alice)
        )
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.reason == "SOURCE_VIDEO_NOT_COMPLETED"
        hidden = await expect_error(
            server.stub.Remix(pb.RemixRequest(id=queued.id, prompt="snow"), metadata=bob)
        )
        assert hidden.code == grpc.StatusCode.NOT_FOUND
        bad = await expect_error(server.stub.Remix(pb.RemixRequest(id=queued.id, index=-1), metadata=alice))
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and "index" in bad.violations
        assert sim.request_counts[V2V] == 0 and sim.request_counts[UPLOADS] == 0
    finally:
        await stop_server(server)
