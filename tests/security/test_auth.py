"""Who may do what (VIDEOGEN_API_KEYS): authentication, ownership, caller-scoped idempotency, open health
and reflection. The real server on loopback against the simulator."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from conftest import RunningServer, start_server, stop_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rpc_helpers import TERMINAL, expect_error, expect_stream_error, read_content
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.api.auth import Authenticator

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
ALICE, BOB = "alice-key-7f3a9c", "bob-key-5e1d22a7c0"  # keys are at least 16 characters
KEYS = {"alice": ALICE, "bob": BOB}


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def authed(tmp_path) -> AsyncIterator[RunningServer]:
    server = await start_server(str(tmp_path / "data"), api_keys=KEYS)
    try:
        yield server
    finally:
        await stop_server(server)


@pytest.fixture
async def quiet(tmp_path) -> AsyncIterator[RunningServer]:
    """For "this call never reached Runway": the service asks Runway nothing on its own during a test (no
    background poll within an hour, no archive copy), and every Get asks Runway (no freshness window), so any
    call that got past authentication or ownership would show up in the simulator's request counts."""
    server = await start_server(
        str(tmp_path / "data"), api_keys=KEYS, poll_interval=3600.0, freshness=0.0, archive="off"
    )
    try:
        yield server
    finally:
        await stop_server(server)


async def _get_until_terminal(
    server: RunningServer, video_id: str, metadata: tuple[tuple[str, str], ...], limit: float = 20.0
) -> None:
    """Without background polls, each Get (freshness 0) is what asks Runway."""
    async with asyncio.timeout(limit):
        while True:
            got = (await server.stub.Get(pb.GetRequest(id=video_id), metadata=metadata)).video
            if got.status in TERMINAL:
                return
            await asyncio.sleep(0.1)


def _all_rpcs(
    server: RunningServer, video_id: str, metadata: tuple[tuple[str, str], ...], *, generate: bool = True
) -> list[object]:
    # grpc.aio sends a call when it is created, so Generate is only created when wanted.
    stub = server.stub
    calls: list[object] = [
        stub.Get(pb.GetRequest(id=video_id), metadata=metadata),
        stub.Cancel(pb.CancelRequest(id=video_id), metadata=metadata),
    ]
    if generate:
        calls.append(
            stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="x", seconds=5), metadata=metadata)
        )
    return calls


def _all_streams(server: RunningServer, video_id: str, metadata: tuple[tuple[str, str], ...]) -> list[object]:
    stub = server.stub
    return [
        stub.WatchStatus(pb.WatchStatusRequest(id=video_id), metadata=metadata),
        stub.StreamContent(pb.StreamContentRequest(id=video_id), metadata=metadata),
    ]


BAD_CREDENTIALS: list[tuple[tuple[str, str], ...]] = [
    (),  # none
    bearer("wrong-key"),
    bearer(ALICE[:-1]),  # a prefix of a real key
    bearer(ALICE + "x"),
    bearer(""),
    (("authorization", f"Basic {ALICE}"),),  # the right key under the wrong scheme
    (("authorization", ALICE),),  # no scheme
    (("x-api-key", ALICE),),  # the wrong header
]


async def test_missing_or_wrong_credentials_are_unauthenticated_on_every_rpc(quiet):
    video = (
        await quiet.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="mine"), metadata=bearer(ALICE))
    ).video
    before = dict(quiet.simulator.request_counts)
    for metadata in BAD_CREDENTIALS:
        for call in _all_rpcs(quiet, video.id, metadata):
            err = await expect_error(call)
            assert err.code == grpc.StatusCode.UNAUTHENTICATED, metadata
            assert err.reason == "MISSING_OR_INVALID_CREDENTIALS" and err.error_infos == 1
            assert ALICE not in err.message and BOB not in err.message
        for stream in _all_streams(quiet, video.id, metadata):
            err = await expect_stream_error(stream)
            assert err.code == grpc.StatusCode.UNAUTHENTICATED, metadata
    # Nothing reached Runway for any of them.
    assert dict(quiet.simulator.request_counts) == before


async def test_scheme_is_case_insensitive_and_both_keys_work(authed):
    for metadata in (bearer(ALICE), (("authorization", f"bearer {ALICE}"),), bearer(BOB)):
        video = (
            await authed.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="hi"), metadata=metadata)
        ).video
        assert video.id


async def test_another_callers_video_is_not_found_on_every_rpc_and_costs_nothing(quiet):
    stub, sim = quiet.stub, quiet.simulator
    done = (
        await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="done"), metadata=bearer(ALICE))
    ).video
    await _get_until_terminal(quiet, done.id, bearer(ALICE))
    sim.config.running_seconds = 30.0  # the next one stays running for the whole test
    running = (
        await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="run"), metadata=bearer(ALICE))
    ).video
    missing = str(uuid.uuid4())

    before = dict(sim.request_counts)
    for video_id in (done.id, running.id, missing):
        for call in _all_rpcs(quiet, video_id, bearer(BOB), generate=False):
            err = await expect_error(call)
            assert err.code == grpc.StatusCode.NOT_FOUND
            assert err.resource_name == video_id and err.reason == "VIDEO_NOT_FOUND"
        for stream in _all_streams(quiet, video_id, bearer(BOB)):
            err = await expect_stream_error(stream)
            assert err.code == grpc.StatusCode.NOT_FOUND and err.resource_name == video_id
    # Bob's calls never reached Runway: no task read, no DELETE, no download.
    assert dict(sim.request_counts) == before

    # The owner still sees both, untouched (Bob's Cancel cancelled nothing).
    got = (await stub.Get(pb.GetRequest(id=running.id), metadata=bearer(ALICE))).video
    assert got.status in (video_pb2.VIDEO_STATUS_QUEUED, video_pb2.VIDEO_STATUS_IN_PROGRESS)
    data, _ = await read_content(stub, done.id, metadata=bearer(ALICE))
    assert data == sim.output_bytes(done.upstream_task_id, 0)
    cancelled = (await stub.Cancel(pb.CancelRequest(id=running.id), metadata=bearer(ALICE))).video
    assert cancelled.status == video_pb2.VIDEO_STATUS_CANCELLED


async def test_not_found_for_another_caller_looks_like_a_missing_video(authed):
    """Bob cannot tell whether an id exists: the status is the same as for an id nobody made."""
    stub = authed.stub
    video = (
        await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="p"), metadata=bearer(ALICE))
    ).video
    theirs = await expect_error(stub.Get(pb.GetRequest(id=video.id), metadata=bearer(BOB)))
    nobodys_id = str(uuid.uuid4())
    nobodys = await expect_error(stub.Get(pb.GetRequest(id=nobodys_id), metadata=bearer(BOB)))
    assert (theirs.code, theirs.reason, theirs.message.replace(video.id, "ID")) == (
        nobodys.code,
        nobodys.reason,
        nobodys.message.replace(nobodys_id, "ID"),
    )


async def test_idempotency_key_is_scoped_to_its_caller(authed):
    stub, sim = authed.stub, authed.simulator
    request_id = str(uuid.uuid4())
    req = pb.GenerateRequest(model="gen4.5", prompt="same words", seconds=5, request_id=request_id)
    a1, b1 = await asyncio.gather(
        stub.Generate(req, metadata=bearer(ALICE)), stub.Generate(req, metadata=bearer(BOB))
    )
    assert a1.video.id != b1.video.id
    assert sim.request_counts[("POST", "/v1/text_to_video")] == 2
    # Each caller's retry returns that caller's own video and costs nothing.
    a2 = await stub.Generate(req, metadata=bearer(ALICE))
    b2 = await stub.Generate(req, metadata=bearer(BOB))
    assert (a2.video.id, b2.video.id) == (a1.video.id, b1.video.id)
    assert sim.request_counts[("POST", "/v1/text_to_video")] == 2
    # Bob reusing the key for something else does not touch Alice's key.
    other = pb.GenerateRequest(model="gen4.5", prompt="other words", seconds=5, request_id=request_id)
    err = await expect_error(stub.Generate(other, metadata=bearer(BOB)))
    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    assert err.metadata.get("id") == b1.video.id


async def test_health_and_reflection_need_no_credentials(authed):
    health = health_pb2_grpc.HealthStub(authed.channel)
    for service in ("", "videogen.v1.VideoService"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    base = [GRPCURL, "-plaintext", "-max-time", "10"]
    listed = await _run([*base, authed.address, "list"])
    assert listed.returncode == 0, listed.stderr
    assert {"videogen.v1.VideoService", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = await _run([*base, authed.address, "describe", "videogen.v1.GenerateRequest"])
    assert described.returncode == 0 and "request_id" in described.stdout
    check = await _run([*base, "-d", '{"service": "videogen.v1.VideoService"}', authed.address,
                        "grpc.health.v1.Health/Check"])  # fmt: skip
    assert check.returncode == 0 and "SERVING" in check.stdout
    # The service itself, through the same tool without a key: refused.
    denied = await _run([*base, "-d", f'{{"id": "{uuid.uuid4()}"}}', authed.address,
                         "videogen.v1.VideoService/Get"])  # fmt: skip
    assert denied.returncode != 0 and "Unauthenticated" in denied.stderr


def test_authenticator_matches_exact_keys_only():
    auth = Authenticator({"alice": ALICE, "bob": BOB})
    assert auth.caller([("authorization", f"Bearer {ALICE}")]) == "alice"
    assert auth.caller([("authorization", f"Bearer  {BOB} ")]) == "bob"
    assert auth.caller([("authorization", f"Bearer {ALICE}".encode())]) == "alice"
    for bad in ("Bearer", "Bearer ", f"Bearer {ALICE}{BOB}", f"Bearer {ALICE.upper()}", "Bearer \x00"):
        assert auth.caller([("authorization", bad)]) is None, bad
    assert auth.caller([]) is None and auth.caller(None) is None
    assert Authenticator({}).caller(None) == ""  # no keys configured: one anonymous caller


class _Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


async def _run(argv: list[str]) -> _Done:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return _Done(proc.returncode or 0, out.decode(), err.decode())
