"""The server's wiring: the external-upstream path, the start-up log line, and the error interceptor."""

from __future__ import annotations

import base64
import logging

import grpc
import pytest
from conftest import start_server, stop_server
from rpc_helpers import expect_error, wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.providers.runway.catalog import CATALOG

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
MP4 = "https://cdn.example.com/source.mp4"

# One representative request per current first-party model and mode: the simulator (which validates like
# Runway) must accept every body the catalog builds for them.
FIRST_PARTY_REQUESTS = [
    pb.GenerateRequest(model="gen4.5", prompt="a lighthouse", seconds=7, size="720x1280", seed=42),
    pb.GenerateRequest(model="gen4.5", prompt="a lighthouse", input_reference=PNG, size="960x960"),
    pb.GenerateRequest(model="gen4_turbo", input_reference=PNG, seconds=10, size="1584x672"),
    pb.GenerateRequest(model="veo3.1", prompt="rain on a window", seconds=4, size="1080x1920", audio=True),
    pb.GenerateRequest(model="veo3.1", prompt="rain", input_reference=PNG, seconds=6),
    pb.GenerateRequest(model="veo3.1_fast", prompt="rain", seconds=8, audio=False, seed=7),
    pb.GenerateRequest(model="veo3.1_fast", input_reference=PNG),
    pb.GenerateRequest(model="aleph2", prompt="make it winter", video_uri=MP4, seed=1),
    pb.GenerateRequest(model="aleph2", video_uri=MP4),
]


def test_every_current_first_party_model_is_exercised():
    current = {name for name, spec in CATALOG.items() if spec.legacy is None and not spec.third_party}
    assert current <= {r.model for r in FIRST_PARTY_REQUESTS}


async def test_external_upstream_gets_only_valid_requests(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server(str(tmp_path), runway_api_secret="key_test")
    try:
        base_url = server.app.config.runway_base_url
        assert base_url.startswith("http://127.0.0.1:")
        assert any(f"upstream: Runway at {base_url}" in r.getMessage() for r in caplog.records)
        assert not any("key_test" in r.getMessage() for r in caplog.records)
        for request in FIRST_PARTY_REQUESTS:
            video = (await server.stub.Generate(request)).video
            assert video.status == video_pb2.VIDEO_STATUS_QUEUED, request
        posts = sum(n for (method, _), n in server.simulator.request_counts.items() if method == "POST")
        assert posts == len(FIRST_PARTY_REQUESTS)
        done = await wait_terminal(server.stub, video.id)
        assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
    finally:
        await stop_server(server)


async def test_startup_log_names_the_simulator(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    server = await start_server(str(tmp_path))
    try:
        assert any("upstream: the built-in Runway simulator" in r.getMessage() for r in caplog.records)
    finally:
        await stop_server(server)


async def test_startup_log_gives_the_stream_limits_and_each_callers_share(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    keys = {"alice": "alice-key-0123456789", "bob": "bob-key-0123456789ab"}
    server = await start_server(str(tmp_path), api_keys=keys, max_streams=10, max_watchers=40)
    try:
        assert any(
            "limits: 10 streams (5 per caller), 40 watchers (20 per caller)" in r.getMessage()
            for r in caplog.records
        )
    finally:
        await stop_server(server)


async def test_unexpected_exception_is_internal_with_a_generic_message(videogen_server, monkeypatch):
    store = videogen_server.app.store

    async def broken_get(video_id: str) -> None:
        raise RuntimeError("db password is hunter2")

    monkeypatch.setattr(store, "get", broken_get)
    request = pb.GetRequest(id="8c5b1c2e-4d5a-4d2b-9a8e-0d6c1a2b3c4d")
    err = await expect_error(videogen_server.stub.Get(request))
    assert err.code == grpc.StatusCode.INTERNAL
    assert "hunter2" not in err.message and "RuntimeError" not in err.message
    assert err.reason == "INTERNAL"


async def test_a_method_the_server_does_not_implement_is_unimplemented(videogen_server, monkeypatch):
    # What the generated base servicer does for an RPC of a newer proto: raise NotImplementedError.
    async def not_here(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("Method not implemented!")

    monkeypatch.setattr(videogen_server.app.videos, "get", not_here)
    request = pb.GetRequest(id="8c5b1c2e-4d5a-4d2b-9a8e-0d6c1a2b3c4d")
    err = await expect_error(videogen_server.stub.Get(request))
    assert err.code == grpc.StatusCode.UNIMPLEMENTED and err.reason == "UNIMPLEMENTED"


async def test_unexpected_exception_in_a_stream_is_internal(videogen_server, monkeypatch):
    store = videogen_server.app.store

    async def broken_get(video_id: str) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(store, "get", broken_get)
    call = videogen_server.stub.WatchStatus(pb.WatchStatusRequest(id="8c5b1c2e-4d5a-4d2b-9a8e-0d6c1a2b3c4d"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.INTERNAL and "boom" not in (info.value.details() or "")
