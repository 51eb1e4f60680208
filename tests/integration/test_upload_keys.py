"""Uploads pinned to their Runway key (issue 12), end to end: a real server on loopback with two keys in
front of the real simulator (an HTTP server), where each key is its own organization and, as on Runway, an
upload exists only for the organization whose key made it.

- a Generate naming an upload is created with the upload's key while the pool would pick the other key
  (that key is less loaded for the model): the create reaches the simulator with the upload's key, and
  Runway received the uploaded bytes; when that key is out, the error names it and no other key is tried;
- two uploads made through different keys (the second after a restart, from the same data directory: the
  keys are kept in the store) in one Generate: INVALID_ARGUMENT naming both fields, and no create at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import FAST_SIMULATOR, RunningServer
from rpc_helpers import expect_error
from videogen.v1 import video_service_pb2 as pb
from videogen.v1 import video_service_pb2_grpc
from videogen_client import AsyncVideoClient
from videogen_server.api.server import App
from videogen_server.config import Config
from videogen_server.simulator import RunwaySimulator

A = "key_" + "a1" * 32
B = "key_" + "b2" * 32
UNUSED = "key_" + "00" * 32  # the simulator's first key: the server is never given it
PNG = b"\x89PNG\r\n\x1a\n" + bytes(3000)
PNG_2 = b"\x89PNG\r\n\x1a\n" + bytes(4000)
IMAGE_MODEL = "gen4_turbo"
ELSEWHERE = "https://example.com/cat.png"


async def start(data_dir: Path, sim: RunwaySimulator) -> RunningServer:
    """The server pointed at the (already started) simulator as at Runway, with keys a and b."""
    app = App(
        Config(
            listen="127.0.0.1:0",
            data_dir=str(data_dir),
            poll_interval=0.1,
            runway_base_url=sim.base_url,
            runway_keys={"a": A, "b": B},
            archive="off",
        )
    )
    port = await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return RunningServer(
        app, f"127.0.0.1:{port}", sim, channel, video_service_pb2_grpc.VideoServiceStub(channel)
    )


async def stop(server: RunningServer) -> None:
    await server.channel.close()
    await server.app.stop(grace=0.5)


@pytest.fixture
async def sim() -> AsyncIterator[RunwaySimulator]:
    simulator = RunwaySimulator(
        api_key=UNUSED,
        config=dataclasses.replace(FAST_SIMULATOR, max_concurrency=None, running_seconds=600.0),
        keys={"a": A, "b": B},
    )
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def upload(server: RunningServer, path: Path, data: bytes) -> str:
    await asyncio.to_thread(path.write_bytes, data)
    async with AsyncVideoClient(server.address) as client:
        return (await client.upload(path)).uri


def image_to_video(input_reference: str, **fields: Any) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model=IMAGE_MODEL, prompt="a cat", input_reference=input_reference, seconds=5, **fields
    )


def creates(sim: RunwaySimulator, key: str) -> int:
    return sim.key_requests(key).get("POST /v1/image_to_video", 0)


async def test_a_generate_naming_an_upload_is_created_with_its_key_not_the_pools_choice(
    tmp_path: Path, sim: RunwaySimulator
) -> None:
    server = await start(tmp_path / "data", sim)
    try:
        uri = await upload(server, tmp_path / "cat.png", PNG)
        assert sim.uploads.resolve(uri).account == "a"  # type: ignore[union-attr]  # the pool's tie: a
        # Key a gets a task of the model first (running for minutes): the pool now prefers b for it.
        busy = (await server.stub.Generate(image_to_video(ELSEWHERE))).video
        assert busy.runway_key == "a"

        pinned = (await server.stub.Generate(image_to_video(uri))).video
        assert pinned.runway_key == "a"
        assert sim.task_key(pinned.upstream_task_id) == "a"
        inputs = sim.task_inputs(pinned.upstream_task_id)
        assert inputs["promptImage"]["sha256"] == hashlib.sha256(PNG).hexdigest()
        # The pool did prefer b: a Generate without an upload goes there.
        assert (await server.stub.Generate(image_to_video(ELSEWHERE))).video.runway_key == "b"
        assert (creates(sim, "a"), creates(sim, "b")) == (2, 1)

        # The upload's key out of credits: the error says the upload holds the video to it; b is not tried.
        sim.organization("a").credits = 0
        out = await expect_error(server.stub.Generate(image_to_video(uri, request_id="out")))
        assert out.code == grpc.StatusCode.FAILED_PRECONDITION
        assert out.reason == "UPSTREAM_INSUFFICIENT_CREDITS"
        assert "input_reference" in out.message and "Runway key 'a'" in out.message
        assert (creates(sim, "a"), creates(sim, "b")) == (3, 1)
    finally:
        await stop(server)
    assert A not in out.message and B not in out.message


async def test_uploads_through_two_keys_in_one_generate_are_invalid_argument_and_no_create(
    tmp_path: Path, sim: RunwaySimulator
) -> None:
    data = tmp_path / "data"
    sim.organization("a").credits = 0  # known at start-up: uploads go to b
    server = await start(data, sim)
    try:
        on_b = await upload(server, tmp_path / "b.png", PNG)
    finally:
        await stop(server)
    sim.organization("a").credits = 1_000_000
    server = await start(data, sim)  # a restart: the upload's key comes back from the store
    try:
        on_a = await upload(server, tmp_path / "a.png", PNG_2)
        assert sim.uploads.resolve(on_b).account == "b"  # type: ignore[union-attr]
        assert sim.uploads.resolve(on_a).account == "a"  # type: ignore[union-attr]
        request = pb.GenerateRequest(model="seedance2", prompt="two cats", seconds=5)
        request.reference_images.add(uri=on_a)
        request.reference_images.add(uri=on_b)
        err = await expect_error(server.stub.Generate(request))
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
        assert err.reason == "UPLOADS_ON_DIFFERENT_KEYS"
        assert set(err.violations) == {"reference_images[0].uri", "reference_images[1].uri"}
        assert "upload them again in one go" in err.message
        # Each alone works, on its own key.
        alone = (await server.stub.Generate(image_to_video(on_b))).video
        assert alone.runway_key == "b" and sim.task_key(alone.upstream_task_id) == "b"
    finally:
        await stop(server)
    assert (creates(sim, "a"), creates(sim, "b")) == (0, 1)
    for key in ("a", "b"):  # the refused Generate sent nothing
        assert sim.key_requests(key).get("POST /v1/text_to_video", 0) == 0
