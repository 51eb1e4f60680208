"""Every RPC through the generated stubs, against the real server and the simulator on loopback."""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid

import grpc
from google.protobuf import struct_pb2
from rpc_helpers import expect_error, expect_stream_error, read_content, wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


async def test_text_to_video_round_trip(videogen_server):
    stub = videogen_server.stub
    created = (
        await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a cat on a boat", seconds=5))
    ).video
    assert created.status == video_pb2.VIDEO_STATUS_QUEUED
    assert created.mode == video_pb2.GENERATION_MODE_TEXT_TO_VIDEO
    assert (created.model, created.prompt, created.seconds, created.size) == (
        "gen4.5",
        "a cat on a boat",
        5,
        "1280x720",
    )
    assert uuid.UUID(created.id) and uuid.UUID(created.upstream_task_id)

    done = await wait_terminal(stub, created.id)
    assert done.status == video_pb2.VIDEO_STATUS_COMPLETED, done
    assert done.progress == 100 and done.upstream_status == "SUCCEEDED"
    assert len(done.videos) == 1 and done.HasField("complete_time") and done.HasField("expire_time")

    data, messages = await read_content(stub, created.id)
    expected = videogen_server.simulator.output_bytes(done.upstream_task_id, 0)
    assert data == expected
    assert data[4:8] == b"ftyp"
    assert messages[0].content_type == "video/mp4" and messages[0].total_size == len(expected)
    assert all(256 * 1024 <= len(m.data) <= 1024 * 1024 for m in messages[:-1])
    offsets = [m.offset for m in messages]
    assert offsets == sorted(offsets) and offsets[0] == 0

    got = (await stub.Get(pb.GetRequest(id=created.id))).video
    assert got.status == video_pb2.VIDEO_STATUS_COMPLETED and got.videos[0].size_bytes == len(expected)
    assert (got.model, got.prompt, got.size) == ("gen4.5", "a cat on a boat", "1280x720")


async def test_image_and_video_modes_hit_their_endpoints(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    i2v = (
        await stub.Generate(pb.GenerateRequest(model="gen4_turbo", prompt="waves", input_reference=PNG))
    ).video
    assert i2v.mode == video_pb2.GENERATION_MODE_IMAGE_TO_VIDEO and i2v.seconds > 0
    v2v = (
        await stub.Generate(
            pb.GenerateRequest(model="aleph2", prompt="make it snow", video_uri="https://example.com/in.mp4")
        )
    ).video
    assert v2v.mode == video_pb2.GENERATION_MODE_VIDEO_TO_VIDEO
    assert sim.request_counts[("POST", "/v1/image_to_video")] == 1
    assert sim.request_counts[("POST", "/v1/video_to_video")] == 1
    for video in (i2v, v2v):
        assert (await wait_terminal(stub, video.id)).status == video_pb2.VIDEO_STATUS_COMPLETED


async def test_veo_with_audio_and_provider_options(videogen_server):
    options = struct_pb2.Struct()
    options.update({"negativePrompt": "blurry"})
    req = pb.GenerateRequest(
        model="veo3.1_fast", prompt="rain", size="720x1280", audio=False, provider_options=options
    )
    video = (await videogen_server.stub.Generate(req)).video
    assert (video.seconds, video.size) == (8, "720x1280")


async def test_validation_errors_name_fields_and_cost_nothing(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    err = await expect_error(
        stub.Generate(pb.GenerateRequest(model="veo3.1", prompt="x", seconds=5, size="640x480"))
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "seconds" in err.violations and "8" in err.violations["seconds"]
    assert "size" in err.violations
    err = await expect_error(stub.Generate(pb.GenerateRequest(model="gen4.5")))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "prompt" in err.violations
    err = await expect_error(stub.Generate(pb.GenerateRequest(prompt="no model")))
    assert "model" in err.violations
    err = await expect_error(
        stub.Generate(
            pb.GenerateRequest(
                model="gen4.5", prompt="x", input_reference=PNG, video_uri="https://a.example/v.mp4"
            )
        )
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    err = await expect_error(
        stub.Generate(pb.GenerateRequest(model="gen3a_turbo", prompt="x", input_reference=PNG))
    )
    assert "gen4_turbo" in err.violations["model"]
    err = await expect_error(
        stub.Generate(
            pb.GenerateRequest(model="gen4_turbo", prompt="x", input_reference="http://10.0.0.1/a.png")
        )
    )
    assert "input_reference" in err.violations
    assert err.reason and err.error_infos == 1
    assert not any(method == "POST" for method, _ in sim.request_counts)


async def test_unknown_model_is_passed_through_and_runway_400_relayed(videogen_server):
    err = await expect_error(
        videogen_server.stub.Generate(pb.GenerateRequest(model="future_model_9", prompt="x"))
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "UPSTREAM_REJECTED" and "model" in err.violations
    assert videogen_server.simulator.request_counts[("POST", "/v1/text_to_video")] == 1


async def test_get_and_ids(videogen_server):
    stub = videogen_server.stub
    err = await expect_error(stub.Get(pb.GetRequest(id=str(uuid.uuid4()))))
    assert err.code == grpc.StatusCode.NOT_FOUND and err.resource_name
    err = await expect_error(stub.Get(pb.GetRequest(id="../../v1/organization")))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "id" in err.violations
    assert not any("organization" in route for _, route in videogen_server.simulator.request_counts)


async def test_failed_generation_reports_runway_failure(videogen_server):
    stub = videogen_server.stub
    video = (
        await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="bad [sim:fail=SAFETY.INPUT.TEXT]"))
    ).video
    done = await wait_terminal(stub, video.id)
    assert done.status == video_pb2.VIDEO_STATUS_FAILED
    assert done.error.code == "SAFETY.INPUT.TEXT" and done.error.message and not done.error.retryable
    err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=video.id)))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_content_before_completion_resume_and_out_of_range(videogen_server):
    stub = videogen_server.stub
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="slow"))).video
    err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=video.id)))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    done = await wait_terminal(stub, video.id)
    expected = videogen_server.simulator.output_bytes(done.upstream_task_id, 0)

    part, messages = await read_content(stub, video.id, offset=1000, limit=300_000)
    assert part == expected[1000:301_000] and messages[0].offset == 1000
    tail, _ = await read_content(stub, video.id, offset=len(expected) - 10)
    assert tail == expected[-10:]
    empty, _ = await read_content(stub, video.id, offset=len(expected))
    assert empty == b""
    err = await expect_stream_error(
        stub.StreamContent(pb.StreamContentRequest(id=video.id, offset=len(expected) + 1))
    )
    assert err.code == grpc.StatusCode.OUT_OF_RANGE
    err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=video.id, offset=-1)))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=video.id, index=3)))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "index" in err.violations


async def test_cancel_semantics(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="to cancel"))).video
    cancelled = (await stub.Cancel(pb.CancelRequest(id=video.id))).video
    assert cancelled.status == video_pb2.VIDEO_STATUS_CANCELLED
    assert sim.request_counts[("DELETE", "/v1/tasks/{id}")] == 1
    # Runway answers 404 now; our record still knows.
    got = (await stub.Get(pb.GetRequest(id=video.id))).video
    assert (
        got.status == video_pb2.VIDEO_STATUS_CANCELLED and got.model == "gen4.5" and got.prompt == "to cancel"
    )
    again = (await stub.Cancel(pb.CancelRequest(id=video.id))).video
    assert again.status == video_pb2.VIDEO_STATUS_CANCELLED
    assert sim.request_counts[("DELETE", "/v1/tasks/{id}")] == 1

    finished = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="keep me"))).video
    await wait_terminal(stub, finished.id)
    err = await expect_error(stub.Cancel(pb.CancelRequest(id=finished.id)))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert sim.request_counts[("DELETE", "/v1/tasks/{id}")] == 1
    assert (await stub.Get(pb.GetRequest(id=finished.id))).video.status == video_pb2.VIDEO_STATUS_COMPLETED


async def test_watch_sends_current_state_then_changes(videogen_server):
    stub = videogen_server.stub
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="watch me"))).video
    seen = []
    async for update in stub.WatchStatus(pb.WatchStatusRequest(id=video.id)):
        seen.append(update.video)
    assert seen[0].status == video_pb2.VIDEO_STATUS_QUEUED
    assert seen[-1].status == video_pb2.VIDEO_STATUS_COMPLETED
    assert any(v.status == video_pb2.VIDEO_STATUS_IN_PROGRESS for v in seen)
    assert all(a != b for a, b in itertools.pairwise(seen))
    # A watch of a finished video: one message, then the stream ends.
    again = [u async for u in stub.WatchStatus(pb.WatchStatusRequest(id=video.id))]
    assert len(again) == 1 and again[0].video.status == video_pb2.VIDEO_STATUS_COMPLETED


async def test_one_poller_for_many_watchers(tmp_path):
    from conftest import start_server, stop_server

    server = await start_server(str(tmp_path), poll_interval=0.2)
    try:
        server.simulator.config.running_seconds = 1.5
        video = (await server.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="popular"))).video

        async def watch() -> list[video_pb2.Video]:
            return [u.video async for u in server.stub.WatchStatus(pb.WatchStatusRequest(id=video.id))]

        results = await asyncio.gather(*(watch() for _ in range(50)))
        assert all(r[-1].status == video_pb2.VIDEO_STATUS_COMPLETED for r in results)
        gets = server.simulator.request_counts[("GET", "/v1/tasks/{id}")]
        # About (pending + running) / interval polls for the one task, not 50x that.
        assert gets < 25, gets
        assert server.app.tracker is not None and server.app.tracker.active_pollers == 0
    finally:
        await stop_server(server)


async def test_idempotent_generate(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    req = pb.GenerateRequest(model="gen4.5", prompt="once", request_id=str(uuid.uuid4()))
    results = await asyncio.gather(*(stub.Generate(req) for _ in range(10)))
    assert len({r.video.id for r in results}) == 1
    assert sim.request_counts[("POST", "/v1/text_to_video")] == 1
    again = await stub.Generate(req)
    assert again.video.id == results[0].video.id
    other = pb.GenerateRequest(model="gen4.5", prompt="different", request_id=req.request_id)
    err = await expect_error(stub.Generate(other))
    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    assert sim.request_counts[("POST", "/v1/text_to_video")] == 1


async def test_idempotency_survives_restart(tmp_path):
    from conftest import start_server, stop_server

    data = str(tmp_path / "data")
    req = pb.GenerateRequest(model="gen4.5", prompt="durable", request_id="key-1")
    first = await start_server(data)
    try:
        video = (await first.stub.Generate(req)).video
    finally:
        await stop_server(first)
    second = await start_server(data)
    try:
        again = (await second.stub.Generate(req)).video
        assert again.id == video.id
        assert second.simulator.request_counts[("POST", "/v1/text_to_video")] == 0
        got = (await second.stub.Get(pb.GetRequest(id=video.id))).video
        assert got.prompt == "durable"
    finally:
        await stop_server(second)


async def test_health_and_reflection(videogen_server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(videogen_server.channel)
    for service in ("", "videogen.v1.VideoService"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
