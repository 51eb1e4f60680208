"""Faults while relaying a finished video: a cut body is resumed with Range from the last byte sent, an
expired output URL is replaced by re-reading the task, and a download that cannot finish ends with an error
status, never a short success. Bytes are compared with what the simulator serves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import httpx
import pytest
from conftest import FAST_SIMULATOR, start_server, stop_server
from faults.helpers import gets, outputs
from rpc_helpers import expect_stream_error, read_content, wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator.faults import Fault

CHUNK = 256 * 1024


async def finished(server) -> video_pb2.Video:
    video = (await server.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a", seconds=5))).video
    done = await wait_terminal(server.stub, video.id)
    assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
    return done


@pytest.mark.parametrize("offset", [0, 100_000])
async def test_a_cut_body_is_resumed_byte_exact(videogen_server, offset):
    stub, sim = videogen_server.stub, videogen_server.simulator
    done = await finished(videogen_server)
    expected = sim.output_bytes(done.upstream_task_id)
    sim.faults.add(
        Fault(route="output", kind="cut_body", cut_after=300_000),
        Fault(route="output", kind="cut_body", cut_after=10),
    )
    data, messages = await read_content(stub, done.id, offset=offset)
    assert data == expected[offset:]
    assert outputs(sim) == 3  # two cut connections, one resumed to the end
    # Offsets are contiguous: nothing repeated, nothing skipped.
    position = offset
    for msg in messages:
        assert msg.offset == position
        position += len(msg.data)
    assert messages[0].total_size == len(expected)


async def test_an_expired_url_is_refreshed_by_rereading_the_task(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    done = await finished(videogen_server)
    before = gets(sim)
    sim.faults.add(Fault(route="output", kind="expired_url"))
    data, _ = await read_content(stub, done.id)
    assert data == sim.output_bytes(done.upstream_task_id)
    assert gets(sim) - before == 2  # the first URL, then a fresh one after the 403
    assert outputs(sim) == 2


async def test_expiry_and_cuts_together(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    done = await finished(videogen_server)
    sim.faults.add(
        Fault(route="output", kind="cut_body", cut_after=CHUNK + 1000),
        Fault(route="output", kind="expired_url"),
        Fault(route="output", kind="cut_body", cut_after=CHUNK + 5),
    )
    data, _ = await read_content(stub, done.id, offset=7)
    assert data == sim.output_bytes(done.upstream_task_id)[7:]


async def test_a_download_that_cannot_finish_ends_with_an_error(tmp_path: Path):
    sim_config = dataclasses.replace(FAST_SIMULATOR, output_size=4 * 1024 * 1024)
    server = await start_server(str(tmp_path / "data"), sim_config=sim_config, archive="off")  # the relay
    try:
        stub, sim = server.stub, server.simulator
        done = await finished(server)
        expected = sim.output_bytes(done.upstream_task_id)
        # Every connection dies a little after one chunk: progress, but never to the end.
        sim.faults.add(Fault(route="output", kind="cut_body", cut_after=CHUNK + 1000, count=1000))
        received: list[bytes] = []
        call = stub.StreamContent(pb.StreamContentRequest(id=done.id), timeout=60)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for msg in call:
                received.append(msg.data)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        data = b"".join(received)
        assert 0 < len(data) < len(expected)
        assert data == expected[: len(data)]  # what was sent is right; the error says it is not all
    finally:
        await stop_server(server)


async def test_an_output_deleted_at_runway_is_failed_precondition(external_server):
    stub, sim = external_server.stub, external_server.simulator
    done = await finished(external_server)
    # Runway forgets the task (e.g. a Cancel's DELETE raced the task's end): the record still says COMPLETED.
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        response = await http.delete(
            f"/v1/tasks/{done.upstream_task_id}",
            headers={"Authorization": f"Bearer {sim.api_key}", "X-Runway-Version": "2024-11-06"},
        )
        assert response.status_code == 204
    got = (await stub.Get(pb.GetRequest(id=done.id))).video
    assert got.status == video_pb2.VIDEO_STATUS_COMPLETED
    err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=done.id)))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.reason == "VIDEO_OUTPUT_GONE"
