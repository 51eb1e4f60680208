"""Every upstream call gets at most the caller's remaining time: a slow Runway costs the caller its deadline,
not more, and the server does not keep the upstream call running after the caller has gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from conftest import RunningServer, start_server, stop_server
from faults.helpers import LONG_RUNNING, gets, outputs, running_video
from rpc_helpers import expect_error, expect_stream_error, read_content, wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server import errors
from videogen_server.providers.runway import RunwayClient
from videogen_server.simulator.faults import Fault

SLOW = 30.0  # far beyond every deadline below


@pytest.fixture
async def quiet_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """Tasks that stay RUNNING, and no poll in the background while a test runs: every video is followed by
    its creator until it ends (issue 10), so its poller (one interval after the create) is kept out of the
    way with an interval of an hour. Every upstream GET counted here is then the test's own."""
    server = await start_server(str(tmp_path / "data"), sim_config=LONG_RUNNING, poll_interval=3600.0)
    try:
        yield server
    finally:
        await stop_server(server)


async def test_get_with_a_slow_runway_ends_at_the_callers_deadline(quiet_server):
    stub, sim = quiet_server.stub, quiet_server.simulator
    video = await running_video(quiet_server)
    before = gets(sim)
    sim.faults.add(Fault(route="get_task", kind="slow", delay=SLOW))
    err = await expect_error(stub.Get(pb.GetRequest(id=video.id), timeout=0.5))
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert gets(sim) - before == 1  # the read reached Runway
    # The upstream read ended with the caller: were it still in flight, this Get would share it (one poll
    # per task) and wait for the slow answer. It gets a fresh one instead.
    got = (await stub.Get(pb.GetRequest(id=video.id), timeout=10)).video
    assert got.status == video_pb2.VIDEO_STATUS_IN_PROGRESS
    assert gets(sim) - before == 2


async def test_the_adapter_bounds_each_attempt_by_the_deadline(quiet_server):
    sim = quiet_server.simulator
    video = await running_video(quiet_server)
    sim.faults.add(Fault(route="get_task", kind="slow", delay=SLOW))
    client = RunwayClient(sim.base_url, sim.api_key)
    try:
        with pytest.raises(errors.DeadlineExceeded):
            await client.get_task(video.upstream_task_id, deadline=time.monotonic() + 0.3)
        # Retries never start past the deadline either.
        sim.faults.add(Fault(route="get_task", kind="status", status=503, count=10))
        before = gets(sim)
        with pytest.raises(errors.DeadlineExceeded):
            await client.get_task(video.upstream_task_id, deadline=time.monotonic() + 0.2)
        assert gets(sim) - before == 1
    finally:
        await client.aclose()


async def test_stream_content_with_a_slow_output_ends_at_the_deadline(videogen_server):
    stub, sim = videogen_server.stub, videogen_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a", seconds=5))).video
    done = await wait_terminal(stub, video.id)
    sim.faults.add(Fault(route="output", kind="slow", delay=SLOW))
    err = await expect_stream_error(stub.StreamContent(pb.StreamContentRequest(id=video.id), timeout=0.5))
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert outputs(sim) == 1
    data, _ = await read_content(stub, video.id)
    assert data == sim.output_bytes(done.upstream_task_id)


async def test_watch_status_ends_at_the_deadline_and_releases_its_watcher(long_server):
    stub = long_server.stub
    video = await running_video(long_server)
    seen = []
    call = stub.WatchStatus(pb.WatchStatusRequest(id=video.id), timeout=0.6)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for update in call:
            seen.append(update.video.status)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert seen and seen[0] == video_pb2.VIDEO_STATUS_QUEUED
    tracker = long_server.app.tracker
    assert tracker is not None
    async with asyncio.timeout(5):
        while tracker.open_watchers:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    # Its poller stays: the video is unfinished, and followed by its creator until it ends (issue 10).
    assert tracker.active_pollers == 1


async def test_cancel_with_a_slow_delete_ends_at_the_deadline(long_server):
    stub, sim = long_server.stub, long_server.simulator
    video = await running_video(long_server)
    sim.faults.add(Fault(route="delete", kind="slow", delay=SLOW))
    err = await expect_error(stub.Cancel(pb.CancelRequest(id=video.id), timeout=0.5))
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # Nothing was recorded as cancelled on the strength of a DELETE that never answered.
    got = (await stub.Get(pb.GetRequest(id=video.id), timeout=10)).video
    assert got.status != video_pb2.VIDEO_STATUS_CANCELLED
