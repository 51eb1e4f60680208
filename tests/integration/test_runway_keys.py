"""Several Runway keys, end to end (issue 12, "Keys" acceptance): a real server on loopback in front of the
real simulator (an HTTP server), which gives each key its own organization and counts requests per key.

- two keys, the first without credits: 10 Generates all succeed on the second, and every video's Get,
  WatchStatus, StreamContent and Cancel reach the simulator with its own key only;
- both out: RESOURCE_EXHAUSTED with a QuotaFailure violation per key, and no task created;
- a 429 (daily cap) on key a for one model: key b takes that model, a still serves the others;
- a key removed from the configuration (restart, same data dir): Get of a finished video still answers from
  its record; calls that need Runway are FAILED_PRECONDITION naming the key;
- the upstream metrics carry the key's name, never its secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import FAST_SIMULATOR, RunningServer
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from observability.helpers import scrape, value
from rpc_helpers import expect_error, read_content, wait_terminal
from videogen.v1 import video_pb2, video_service_pb2_grpc
from videogen.v1 import video_service_pb2 as pb
from videogen_server.api.server import App
from videogen_server.config import Config
from videogen_server.simulator import RunwaySimulator

A = "key_" + "a1" * 32
B = "key_" + "b2" * 32
UNUSED = "key_" + "00" * 32  # the simulator's first key: the server is never given it


async def start(data_dir: Path, sim: RunwaySimulator, keys: dict[str, str], **config: Any) -> RunningServer:
    """The server pointed at the (already started) simulator as at Runway, with `keys`."""
    settings: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "data_dir": str(data_dir),
        "poll_interval": 0.1,
        "runway_base_url": sim.base_url,
        "runway_keys": keys,
        "archive": "off",  # StreamContent goes to Runway (an archived copy would need no key)
        "metrics_listen": "127.0.0.1:0",
    }
    settings.update(config)
    app = App(Config(**settings))
    port = await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = video_service_pb2_grpc.VideoServiceStub(channel)
    return RunningServer(app, f"127.0.0.1:{port}", sim, channel, stub)


async def stop(server: RunningServer) -> None:
    await server.channel.close()
    await server.app.stop(grace=0.5)


@pytest.fixture
async def sim() -> Any:
    simulator = RunwaySimulator(
        api_key=UNUSED,
        config=dataclasses.replace(FAST_SIMULATOR, max_concurrency=None),
        keys={"a": A, "b": B},
    )
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def quota_violations(err: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            out += [(v.subject, v.description) for v in quota.violations]
    return out


def task_requests(sim: RunwaySimulator, key: str) -> dict[str, int]:
    return {k: n for k, n in sim.key_requests(key).items() if "organization" not in k}


def generate(model: str = "gen4.5", prompt: str = "a kite over the sea") -> pb.GenerateRequest:
    return pb.GenerateRequest(model=model, prompt=prompt, seconds=8 if model == "veo3.1" else 5)


async def test_first_key_without_credits_every_video_on_the_second_and_only_its_key_used(
    tmp_path: Path, sim: RunwaySimulator
) -> None:
    sim.organization("a").credits = 0
    sim.config.running_seconds = 3.0  # long enough to cancel some while they run
    server = await start(tmp_path / "data", sim, {"a": A, "b": B})
    try:
        stub = server.stub
        videos = [(await stub.Generate(generate(prompt=f"kite {i}"))).video for i in range(10)]
        assert {v.runway_key for v in videos} == {"b"}
        assert all(sim.task_key(v.upstream_task_id) == "b" for v in videos)
        cancelled = [(await stub.Cancel(pb.CancelRequest(id=v.id))).video for v in videos[:5]]
        assert {c.status for c in cancelled} == {video_pb2.VIDEO_STATUS_CANCELLED}
        for v in videos[5:]:
            done = await wait_terminal(stub, v.id)
            assert done.status == video_pb2.VIDEO_STATUS_COMPLETED and done.runway_key == "b"
            got = (await stub.Get(pb.GetRequest(id=v.id))).video
            assert got.runway_key == "b"
            data, _ = await read_content(stub, v.id)
            assert data == sim.output_bytes(v.upstream_task_id)
        _, samples = await scrape(server.app.metrics_port)
        text, _ = await scrape(server.app.metrics_port)
    finally:
        await stop(server)
    # Key a was only asked about its organization (it had no credits: never sent a create).
    assert task_requests(sim, "a") == {}
    b = task_requests(sim, "b")
    assert b["POST /v1/text_to_video"] == 10
    assert b["DELETE /v1/tasks/{id}"] == 5
    assert b["GET /v1/tasks/{id}"] >= 10
    # Every task read and cancel was answered by b's organization: a 404 would have ended a video.
    assert sim.key_requests("default") == {}
    # The upstream metrics carry the key's name, never its secret.
    requests = "videogen_upstream_requests_total"
    assert value(samples, requests, key="b", endpoint="/v1/text_to_video", status="200") == 10
    assert value(samples, requests, key="b", endpoint="/v1/tasks/{id}", method="DELETE") == 5
    assert value(samples, requests, key="a", endpoint="/v1/organization") >= 1
    assert value(samples, requests, key="a", endpoint="/v1/text_to_video") == 0
    assert A not in text and B not in text


async def test_both_keys_out_is_resource_exhausted_per_key_and_no_task(
    tmp_path: Path, sim: RunwaySimulator
) -> None:
    server = await start(tmp_path / "data", sim, {"a": A, "b": B})
    try:
        # Emptied after start-up: the server learns it from the creates' refusals, not from its first read.
        sim.organization("a").credits = 0
        sim.organization("b").credits = 0
        try:
            await server.stub.Generate(generate())
        except grpc.aio.AioRpcError as err:
            error = err
        else:
            raise AssertionError("expected RESOURCE_EXHAUSTED")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        violations = quota_violations(error)
        assert [s for s, _ in violations] == ["a", "b"]
        assert all("credits" in why for _, why in violations)
        assert A not in str(error.details()) and B not in str(error.details())
        # Known out now: a second Generate is refused without another create.
        again = await expect_error(server.stub.Generate(generate(prompt="again")))
        assert again.code == grpc.StatusCode.RESOURCE_EXHAUSTED and again.reason == "RUNWAY_KEYS_EXHAUSTED"
    finally:
        await stop(server)
    assert sum(len(acc.store) for acc in sim.accounts) == 0  # no task created anywhere
    assert sim.key_requests("a").get("POST /v1/text_to_video") == 1
    assert sim.key_requests("b").get("POST /v1/text_to_video") == 1


async def test_a_429_on_a_for_one_model_sends_it_to_b_while_a_serves_the_others(
    tmp_path: Path, sim: RunwaySimulator
) -> None:
    server = await start(tmp_path / "data", sim, {"a": A, "b": B})
    try:
        sim.organization("a").overrides["gen4.5"] = {"daily": 0}  # a's daily cap for gen4.5: used up
        first = (await server.stub.Generate(generate("gen4.5"))).video
        assert first.runway_key == "b"
        other = (await server.stub.Generate(generate("veo3.1"))).video
        assert other.runway_key == "a"
        again = (await server.stub.Generate(generate("gen4.5", prompt="again"))).video
        assert again.runway_key == "b"
        for v in (first, other, again):
            assert (await wait_terminal(server.stub, v.id)).status == video_pb2.VIDEO_STATUS_COMPLETED
    finally:
        await stop(server)
    assert sim.key_requests("a")["POST /v1/text_to_video"] == 2  # the 429, then veo3.1; not again after
    assert sim.task_key(other.upstream_task_id) == "a"
    assert sim.task_key(first.upstream_task_id) == sim.task_key(again.upstream_task_id) == "b"


async def test_a_removed_key_keeps_its_records_and_runway_calls_name_it(
    tmp_path: Path, sim: RunwaySimulator
) -> None:
    data = tmp_path / "data"
    sim.organization("b").credits = 0  # everything on a
    server = await start(data, sim, {"a": A, "b": B})
    try:
        finished = (await server.stub.Generate(generate(prompt="finished"))).video
        assert (await wait_terminal(server.stub, finished.id)).status == video_pb2.VIDEO_STATUS_COMPLETED
        sim.config.running_seconds = 600.0
        running = (await server.stub.Generate(generate(prompt="running"))).video
        assert finished.runway_key == running.runway_key == "a"
    finally:
        await stop(server)
    sim.organization("b").credits = 1_000_000
    server = await start(data, sim, {"b": B})
    try:
        got = (await server.stub.Get(pb.GetRequest(id=finished.id))).video
        assert got.status == video_pb2.VIDEO_STATUS_COMPLETED and got.runway_key == "a"
        for call in (
            server.stub.Get(pb.GetRequest(id=running.id)),
            server.stub.Cancel(pb.CancelRequest(id=running.id)),
        ):
            err = await expect_error(call)
            assert err.code == grpc.StatusCode.FAILED_PRECONDITION
            assert err.reason == "RUNWAY_KEY_NOT_CONFIGURED" and err.metadata == {"runway_key": "a"}
            assert "'a'" in err.message
        content = await expect_error(read_content(server.stub, finished.id))
        assert content.code == grpc.StatusCode.FAILED_PRECONDITION and "'a'" in content.message
        # New videos go to the key that is left.
        assert (await server.stub.Generate(generate(prompt="new"))).video.runway_key == "b"
    finally:
        await stop(server)
    await asyncio.sleep(0)
    assert A not in str(sim.key_requests("b"))
