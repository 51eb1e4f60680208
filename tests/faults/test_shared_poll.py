"""One upstream poll of a task is shared by every watcher and Get of it, but owned by none of them: each
waiter applies its own deadline and may leave without ending the poll for the others, and the poller never
runs under a caller's deadline nor dies with a caller (issue 8, item 1).

Runway is made slow on GET task (the simulator's "slow" fault) so that a poll is still in flight while
callers join it, leave it or run out of time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from conftest import RunningServer, start_server, stop_server
from faults.helpers import gets, running_video
from rpc_helpers import expect_error
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator import SimulatorConfig
from videogen_server.simulator.faults import Fault

SLOW = 1.5  # how long Runway takes to answer the slow GET: longer than every short deadline below
ANSWER_BOUND = 8.0  # generous: a Get that answers at all answers within SLOW plus scheduling noise

# Tasks that finish a few seconds after they start: a watcher whose poller is alive sees COMPLETED.
SHORT_RUNNING = SimulatorConfig(
    pending_seconds=0.05, running_seconds=3.0, max_concurrency=None, output_size=64 * 1024
)


@pytest.fixture
async def watched_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The poller sleeps long enough (0.5 s) for a Get to start a poll that the poller then joins, and a Get
    never reuses the poller's last answer (freshness 10 ms): each Get here asks Runway or joins a poll."""
    server = await start_server(
        str(tmp_path / "data"), sim_config=SHORT_RUNNING, poll_interval=0.5, freshness=0.01
    )
    try:
        yield server
    finally:
        await stop_server(server)


async def _until(condition: Callable[[], bool], bound: float = 5.0) -> None:
    async with asyncio.timeout(bound):
        # The simulator's request counter has no event to wait for.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _answer(call: grpc.aio.UnaryUnaryCall, what: str) -> video_pb2.Video:
    try:
        async with asyncio.timeout(ANSWER_BOUND):
            response: pb.GetResponse = await call
    except TimeoutError:
        raise AssertionError(f"{what}: no answer at all within {ANSWER_BOUND}s") from None
    return response.video


async def _until_terminal(call: grpc.aio.UnaryStreamCall, what: str) -> list[int]:
    """The statuses a watcher receives until its stream ends (it ends after a terminal state)."""
    seen: list[int] = []
    try:
        async with asyncio.timeout(ANSWER_BOUND):
            # read(), not `async for`: the stream was already read with read() (grpc forbids mixing).
            while (update := await call.read()) is not grpc.aio.EOF:
                seen.append(update.video.status)
    except TimeoutError:
        raise AssertionError(f"{what}: no terminal state within {ANSWER_BOUND}s; saw {seen}") from None
    return seen


async def test_a_get_that_joined_a_watchers_poll_is_answered_after_the_watcher_leaves(long_server):
    stub, sim = long_server.stub, long_server.simulator
    video = await running_video(long_server)
    before = gets(sim)
    sim.faults.add(Fault(route="get_task", kind="slow", delay=SLOW))
    watch = stub.WatchStatus(pb.WatchStatusRequest(id=video.id))
    await watch.read()  # the current state; the poller's first poll follows and is slow
    await _until(lambda: gets(sim) - before == 1)
    get = stub.Get(pb.GetRequest(id=video.id))  # no deadline: joins the poll in flight
    await asyncio.sleep(0.3)
    watch.cancel()  # the watcher (whose poller started the poll) goes away mid-poll
    got = await _answer(get, "Get after the watcher left")
    assert got.status == video_pb2.VIDEO_STATUS_IN_PROGRESS  # Runway's answer, not the stale record
    assert gets(sim) - before == 1  # the Get shared the poll in flight


@pytest.mark.parametrize("short_first", [True, False], ids=["short-starts", "long-starts"])
async def test_a_short_deadline_does_not_end_the_poll_for_a_longer_one(long_server, short_first):
    stub, sim = long_server.stub, long_server.simulator
    video = await running_video(long_server)
    before = gets(sim)
    sim.faults.add(Fault(route="get_task", kind="slow", delay=SLOW))

    def get(timeout: float) -> grpc.aio.UnaryUnaryCall:
        return stub.Get(pb.GetRequest(id=video.id), timeout=timeout)

    first = get(0.4 if short_first else 10.0)
    await _until(lambda: gets(sim) - before == 1)
    second = get(10.0 if short_first else 0.4)
    short, long = (first, second) if short_first else (second, first)
    err = await expect_error(short)
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.reason == "DEADLINE_EXCEEDED" or not err.reason  # ours, or grpc's own at the deadline
    got = await _answer(long, "Get with the longer deadline")
    assert got.status == video_pb2.VIDEO_STATUS_IN_PROGRESS
    assert gets(sim) - before == 1  # one upstream GET served both


async def _poller_sleeping(server: RunningServer, video_id: str) -> grpc.aio.UnaryStreamCall:
    """A watcher whose poller has just polled once (it now sleeps ~0.5 s): the next poll is a Get's."""
    watch = server.stub.WatchStatus(pb.WatchStatusRequest(id=video_id))
    first = await watch.read()
    assert first.video.status == video_pb2.VIDEO_STATUS_QUEUED
    while (await watch.read()).video.status != video_pb2.VIDEO_STATUS_IN_PROGRESS:
        pass
    await asyncio.sleep(0.1)  # past the freshness window of that poll; the poller wakes in 0.4-0.6 s
    return watch


async def test_a_cancelled_get_does_not_kill_the_poller_that_joined_its_poll(watched_server):
    stub, sim = watched_server.stub, watched_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a", seconds=5))).video
    watch = await _poller_sleeping(watched_server, video.id)
    before = gets(sim)
    sim.faults.add(Fault(route="get_task", kind="slow", delay=SLOW))
    get = stub.Get(pb.GetRequest(id=video.id))  # no deadline; starts the poll
    await _until(lambda: gets(sim) - before == 1)
    await asyncio.sleep(0.8)  # the poller (0.5 s +-20%) has woken and joined the Get's poll
    get.cancel()  # the caller goes away mid-poll
    with pytest.raises(asyncio.CancelledError):
        await get
    assert gets(sim) - before == 1  # the poller shared the Get's poll
    seen = await _until_terminal(watch, "watcher after another caller's Get was cancelled")
    assert seen[-1] == video_pb2.VIDEO_STATUS_COMPLETED


async def test_the_poller_never_runs_under_a_callers_deadline(watched_server, caplog):
    caplog.set_level(logging.WARNING, logger="videogen_server.services.tracker")
    stub, sim = watched_server.stub, watched_server.simulator
    video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a", seconds=5))).video
    watch = await _poller_sleeping(watched_server, video.id)
    before = gets(sim)
    sim.faults.add(Fault(route="get_task", kind="slow", delay=SLOW))
    # The Get starts the poll; the poller joins it before the Get's deadline passes.
    err = await expect_error(stub.Get(pb.GetRequest(id=video.id), timeout=0.9))
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert gets(sim) - before == 1
    seen = await _until_terminal(watch, "watcher after another caller's Get ran out of time")
    assert seen[-1] == video_pb2.VIDEO_STATUS_COMPLETED
    # The slow answer came within the service's own timeout: no poll failed, none backed off.
    failures = [r.getMessage() for r in caplog.records if r.name == "videogen_server.services.tracker"]
    assert failures == []
