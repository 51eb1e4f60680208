"""Faults on Runway reads (GET task, output downloads): retried with backoff and jitter inside the caller's
deadline; the caller sees an error only when the retry budget is spent.

Each test puts a fault plan on the simulator (a real HTTP server) and asserts what the gRPC caller sees and
how many requests reached "Runway"."""

from __future__ import annotations

import pytest
from faults.helpers import gets, outputs, running_video
from rpc_helpers import expect_stream_error, read_content, wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator.faults import Fault

# (fault, upstream requests the read costs: the faulted ones plus the one that succeeds)
RETRIED_READ_FAULTS = {
    "503 burst": (Fault(route="get_task", kind="status", status=503, count=3), 4),
    "502": (Fault(route="get_task", kind="status", status=502, count=2), 3),
    "504": (Fault(route="get_task", kind="status", status=504, count=2), 3),
    "429 without Retry-After": (Fault(route="get_task", kind="status", status=429, count=2), 3),
    "429 with Retry-After": (Fault(route="get_task", kind="status", status=429, retry_after=0.2), 2),
    "connection reset": (Fault(route="get_task", kind="reset", count=2), 3),
    "malformed JSON": (Fault(route="get_task", kind="malformed_json", count=2), 3),
    "slow answer": (Fault(route="get_task", kind="slow", delay=0.3), 1),
}


@pytest.mark.parametrize("name", list(RETRIED_READ_FAULTS))
async def test_get_of_a_running_video_retries_through_the_fault(long_server, name):
    fault, requests = RETRIED_READ_FAULTS[name]
    sim = long_server.simulator
    video = await running_video(long_server)
    before = gets(sim)
    sim.faults.add(fault)
    got = (await long_server.stub.Get(pb.GetRequest(id=video.id), timeout=20)).video
    # IN_PROGRESS can only come from Runway (the record says QUEUED): the read got through.
    assert got.status == video_pb2.VIDEO_STATUS_IN_PROGRESS and got.upstream_status == "RUNNING"
    assert gets(sim) - before == requests
    assert not sim.faults.pending


async def test_get_serves_the_recorded_state_when_the_retry_budget_is_spent(long_server):
    sim = long_server.simulator
    video = await running_video(long_server)
    before = gets(sim)
    sim.faults.add(Fault(route="get_task", kind="status", status=503, count=50))
    got = (await long_server.stub.Get(pb.GetRequest(id=video.id), timeout=20)).video
    # Documented behaviour: Runway unreachable -> the last recorded state, not an error.
    assert got.status == video_pb2.VIDEO_STATUS_QUEUED and got.id == video.id
    assert gets(sim) - before == 4  # one try and three retries (RetryPolicy.max_attempts)
    sim.faults.clear()
    fresh = (await long_server.stub.Get(pb.GetRequest(id=video.id))).video
    assert fresh.status == video_pb2.VIDEO_STATUS_IN_PROGRESS


async def test_a_long_retry_after_is_not_waited_for(long_server):
    sim = long_server.simulator
    video = await running_video(long_server)
    before = gets(sim)
    # Runway's daily cap answers 429 for hours: waiting inside one call helps nobody.
    sim.faults.add(Fault(route="get_task", kind="status", status=429, retry_after=3600, count=5))
    got = (await long_server.stub.Get(pb.GetRequest(id=video.id), timeout=20)).video
    assert got.status == video_pb2.VIDEO_STATUS_QUEUED
    assert gets(sim) - before == 1


async def test_watch_status_polls_through_bursts_to_the_end(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5))).video
    sim.faults.add(
        Fault(route="get_task", kind="status", status=503, count=5),
        Fault(route="get_task", kind="reset", count=2),
        Fault(route="get_task", kind="malformed_json", count=2),
        Fault(route="get_task", kind="status", status=429, retry_after=0.1),
        Fault(route="get_task", kind="slow", delay=0.2),
    )
    done = await wait_terminal(stub, video.id, limit=60)
    assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
    assert not sim.faults.pending


@pytest.mark.parametrize(
    "fault",
    [
        Fault(route="output", kind="status", status=503, count=2),
        Fault(route="output", kind="status", status=429, retry_after=0.1),
        Fault(route="output", kind="reset", count=2),
        Fault(route="output", kind="slow", delay=0.3),
    ],
    ids=["503", "429", "reset", "slow"],
)
async def test_content_reads_retry_through_the_fault(videogen_server, fault):
    stub, sim = videogen_server.stub, videogen_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5))).video
    done = await wait_terminal(stub, video.id)
    sim.faults.add(fault)
    data, _ = await read_content(stub, video.id)
    assert data == sim.output_bytes(done.upstream_task_id)
    assert not sim.faults.pending


async def test_content_fails_unavailable_when_runway_cannot_resolve_the_output(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5))).video
    await wait_terminal(stub, video.id)
    before = gets(sim)
    sim.faults.add(Fault(route="get_task", kind="status", status=503, count=50))
    err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=video.id), timeout=30))
    assert err.code.name == "UNAVAILABLE" and err.reason == "UPSTREAM_UNAVAILABLE"
    assert err.retry_delay is not None
    assert gets(sim) - before == 4
    assert outputs(sim) == 0


@pytest.mark.faults
async def test_content_fails_unavailable_when_the_output_host_stays_down(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5))).video
    await wait_terminal(stub, video.id)
    sim.faults.add(Fault(route="output", kind="status", status=502, count=1000))
    err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=video.id), timeout=90))
    assert err.code.name == "UNAVAILABLE"
    # Every open is retried (4 attempts), and the relay reconnects 5 times: 6 opens in all.
    assert outputs(sim) == 24


async def test_get_of_a_finished_video_needs_no_runway(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5))).video
    await wait_terminal(stub, video.id)
    sim.faults.add(Fault(route="any", kind="status", status=503, count=50))
    before = gets(sim)
    got = (await stub.Get(pb.GetRequest(id=video.id))).video
    assert got.status == video_pb2.VIDEO_STATUS_COMPLETED
    assert gets(sim) == before
