"""Creates in flight at SIGTERM (issue 8, items 2 and 9a). A paid create whose caller already left still runs
in the background; shutdown waits for it (within VIDEOGEN_SHUTDOWN_GRACE) before it closes the store, so the
Runway task it made is recorded, and the same request_id after a restart returns that task. A create still
running when the grace ends is recorded as outcome-unknown before the store closes, never left CREATING.

The simulator runs in the test process and outlives the server process, so the restarted server sees the
same Runway tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path

import grpc
import pytest
from conftest import FAST_SIMULATOR
from faults.helpers import posts, sim_tasks
from faults.server_process import ServerProcess, start_process
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.domain.video import OUTCOME_UNKNOWN_CODE, VideoRecord, VideoStatus
from videogen_server.simulator import RunwaySimulator
from videogen_server.simulator.faults import Fault
from videogen_server.store import open_store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")

LEAKS = ("never retrieved", "the video store is closed", "Traceback")


def request(request_id: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(model="gen4.5", prompt="a paid boat", seconds=5, request_id=request_id)


@pytest.fixture
async def simulator():
    sim = RunwaySimulator(api_key="key_shutdown_create", config=dataclasses.replace(FAST_SIMULATOR))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def wait_for(condition, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the simulator's counters, no event to wait on
            await asyncio.sleep(0.01)


async def abandoned_create(server: ServerProcess, sim: RunwaySimulator, request_id: str) -> None:
    """A Generate whose POST has reached Runway and whose caller then gave up (cancelled the call)."""
    call = server.stub.Generate(request(request_id))
    await wait_for(lambda: posts(sim) == 1)  # the POST is at Runway, which is slow to answer
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0.2)  # the server has seen the cancellation (nothing observable to wait on)


async def unfinished(data_dir: Path) -> list[VideoRecord]:
    """The unfinished records in a server's store, read straight from the file (also while it runs)."""
    store = open_store(data_dir)
    await store.open()
    try:
        return await store.list_unfinished()
    finally:
        await store.close()


async def left_creating(data_dir: Path, request_id: str) -> bool:
    return any(
        r.request_id == request_id and r.status is VideoStatus.CREATING for r in await unfinished(data_dir)
    )


async def test_sigterm_waits_for_an_abandoned_create_and_records_its_task(tmp_path: Path, simulator):
    data_dir = tmp_path / "data"
    # Runway answers the POST after 2.5 s; the caller leaves at once; SIGTERM comes while the POST is out.
    simulator.faults.add(Fault(route="create", kind="slow", delay=2.5))
    server = await start_process(data_dir, simulator, grace=8.0)
    try:
        await abandoned_create(server, simulator, "paid-1")
        server.terminate()
        assert await server.wait_exit(limit=20) == 0
        log = server.output()
    finally:
        await server.close()

    server = await start_process(data_dir, simulator)
    try:
        video = (await server.stub.Generate(request("paid-1"))).video
        assert video.status in (
            video_pb2.VIDEO_STATUS_QUEUED,
            video_pb2.VIDEO_STATUS_IN_PROGRESS,
            video_pb2.VIDEO_STATUS_COMPLETED,
        ), video
        assert video.upstream_task_id and simulator.task_status(video.upstream_task_id) is not None
        assert posts(simulator) == 1  # found, not sent again
        assert await sim_tasks(simulator) == 1  # the one task Runway made (and bills)
    finally:
        await server.close()
    for leak in LEAKS:
        assert leak not in log, f"{leak!r} in the server log:\n{log}"


async def test_a_create_still_running_when_the_grace_ends_is_closed_as_outcome_unknown(
    tmp_path: Path, simulator
):
    data_dir = tmp_path / "data"
    simulator.faults.add(Fault(route="create", kind="slow", delay=30.0))
    server = await start_process(data_dir, simulator, grace=1.0)
    try:
        await abandoned_create(server, simulator, "slow-1")
        server.terminate()
        assert await server.wait_exit(limit=20) == 0
        log = server.output()
    finally:
        await server.close()
    # Closed by the server that sent it, before its store closed: not left CREATING for a restart to guess.
    assert not await left_creating(data_dir, "slow-1"), "the record was left CREATING"
    assert "still in flight at shutdown" in log

    server = await start_process(data_dir, simulator)
    try:
        video = (await server.stub.Generate(request("slow-1"))).video
        assert video.status == video_pb2.VIDEO_STATUS_FAILED and video.error.code == OUTCOME_UNKNOWN_CODE
        assert posts(simulator) == 1  # never sent twice
    finally:
        await server.close()
    for leak in LEAKS:
        assert leak not in log, f"{leak!r} in the server log:\n{log}"


async def closed_video(server: ServerProcess, request_id: str) -> video_pb2.Video:
    """The video of `request_id` once the server has closed its create (UNAVAILABLE while it still runs)."""
    async with asyncio.timeout(10):
        while True:
            try:
                return (await server.stub.Generate(request(request_id))).video
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                await asyncio.sleep(0.05)


async def test_a_deadline_passing_mid_create_leaves_one_outcome_line_and_no_leak(tmp_path: Path, simulator):
    """Item 9a: a create outlives a caller whose deadline passed (the POST was sent: its answer is awaited
    under the service's own timeout, so Runway's task is recorded); a create's failure is logged once when
    no caller is left to receive it; no background task dies unobserved ("Task exception was never
    retrieved")."""
    data_dir = tmp_path / "data"
    server = await start_process(data_dir, simulator, grace=5.0)
    try:
        # The caller's deadline passes while Runway is slow to answer the POST.
        simulator.faults.add(Fault(route="create", kind="slow", delay=1.5))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await server.stub.Generate(request("late-1"), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # A caller that leaves first, and whose create then fails (Runway answers 500 late).
        simulator.faults.add(Fault(route="create", kind="status", status=500, delay=2.0))
        call = server.stub.Generate(request("left-1"), timeout=5.0)
        await wait_for(lambda: posts(simulator) == 2)
        call.cancel()
        (left_id,) = [r.id for r in await unfinished(data_dir) if r.request_id == "left-1"]
        # Not asked again before its outcome is logged: a retry of the request_id would join (and hear) it.
        await wait_for(lambda: left_id in server.output())
        late = await closed_video(server, "late-1")
        left = await closed_video(server, "left-1")
        assert left.id == left_id
        # The late caller's task was created and is recorded: the same request_id returns it, nothing lost.
        assert late.upstream_task_id and late.status != video_pb2.VIDEO_STATUS_FAILED, late
        assert left.status == video_pb2.VIDEO_STATUS_FAILED and left.error.code == OUTCOME_UNKNOWN_CODE
        assert posts(simulator) == 2  # the retries of both request_ids sent nothing
        server.terminate()
        assert await server.wait_exit(limit=20) == 0
        log = server.output()
    finally:
        await server.close()
    assert "never retrieved" not in log, log
    assert "Traceback" not in log, log
    # The caller that left first never heard the outcome: one line says it. The late caller's create
    # succeeded: no failure line for it.
    assert sum(left.id in line and "create failed" in line for line in log.splitlines()) == 1, log
    assert not any(late.id in line and "create failed" in line for line in log.splitlines()), log
