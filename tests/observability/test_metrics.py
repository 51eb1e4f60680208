"""/metrics over HTTP after real traffic: the real server with metrics on 127.0.0.1:0, and the simulator."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest
from conftest import FAST_SIMULATOR, start_server, stop_server
from observability.helpers import scrape, value
from rpc_helpers import expect_error, expect_stream_error, read_content
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server import __version__
from videogen_server.api.server import App
from videogen_server.config import Config, ConfigError
from videogen_server.simulator import RunwaySimulator
from videogen_server.simulator.faults import Fault

SERVICE = "videogen.v1.VideoService"


async def test_metrics_after_a_generate_watch_download_round_trip(tmp_path):
    # The archive off: the download counted below is the relay's (an archive copy would be one more).
    server = await start_server(str(tmp_path / "data"), metrics_listen="127.0.0.1:0", archive="off")
    try:
        port = server.app.metrics_port
        assert port > 0
        stub, sim = server.stub, server.simulator
        # One 503 on a task read: retried once, and seen in the upstream families.
        sim.faults.add(Fault(route="get_task", kind="status", status=503))

        created = (
            await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a red kite", seconds=5))
        ).video
        updates = [u.video async for u in stub.WatchStatus(pb.WatchStatusRequest(id=created.id))]
        assert updates[-1].status == video_pb2.VIDEO_STATUS_COMPLETED
        data, chunks = await read_content(stub, created.id)
        assert data == sim.output_bytes(updates[-1].upstream_task_id, 0)
        # Errors mapped by the error interceptor are counted by their code.
        bad = await expect_error(stub.Get(pb.GetRequest(id="not-a-uuid")))
        assert bad.code.name == "INVALID_ARGUMENT"
        missing = await expect_error(stub.Cancel(pb.CancelRequest(id="6f1c2d9e-3c1b-4d7a-9a52-2b4c1d0e8f11")))
        assert missing.code.name == "NOT_FOUND"

        text, samples = await scrape(port)
    finally:
        await stop_server(server)

    def handled(method: str, code: str) -> float:
        return value(
            samples, "grpc_server_handled_total", grpc_service=SERVICE, grpc_method=method, grpc_code=code
        )

    # Per-RPC counters by method and code, and latency histograms.
    for method, kind in (
        ("Generate", "unary"),
        ("WatchStatus", "server_stream"),
        ("StreamContent", "server_stream"),
    ):
        assert value(samples, "grpc_server_started_total", grpc_method=method, grpc_type=kind) == 1, method
        assert handled(method, "OK") == 1, method
        assert value(samples, "grpc_server_handling_seconds_count", grpc_method=method) == 1, method
        assert value(samples, "grpc_server_handling_seconds_sum", grpc_method=method) > 0, method
        bucket = value(samples, "grpc_server_handling_seconds_bucket", grpc_method=method, le="+Inf")
        assert bucket == 1, method
    assert handled("Get", "INVALID_ARGUMENT") == 1 and handled("Get", "OK") == 0
    assert handled("Cancel", "NOT_FOUND") == 1
    assert value(samples, "grpc_server_started_total", grpc_method="Get") == 1

    # Messages and bytes streamed.
    assert value(samples, "videogen_stream_messages_sent_total", grpc_method="WatchStatus") == len(updates)
    assert value(samples, "videogen_stream_messages_sent_total", grpc_method="StreamContent") == len(chunks)
    assert value(samples, "videogen_content_bytes_sent_total") == len(data) == FAST_SIMULATOR.output_size

    # Watchers and pollers: all gone once the streams ended.
    assert ("videogen_open_watchers", frozenset()) in samples
    assert value(samples, "videogen_open_watchers") == 0
    assert value(samples, "videogen_active_pollers") == 0

    # Upstream calls by route template, method and status: exactly what the simulator received.
    assert sim.request_counts, "the simulator saw no request"
    for (method, route), count in sim.request_counts.items():
        got = value(samples, "videogen_upstream_requests_total", endpoint=route, method=method)
        assert got == count, (method, route)
        seconds = value(samples, "videogen_upstream_request_seconds_count", endpoint=route, method=method)
        assert seconds == count, (method, route)
    endpoints = {
        dict(labels).get("endpoint")
        for (name, labels) in samples
        if name.startswith("videogen_upstream") and name != "videogen_upstream_circuit_open"
    }
    assert endpoints == {"/v1/text_to_video", "/v1/tasks/{id}", "output"}
    assert value(samples, "videogen_upstream_circuit_open") == 0  # Runway was reachable throughout
    task = "/v1/tasks/{id}"
    assert value(samples, "videogen_upstream_requests_total", endpoint=task, method="GET", status="503") == 1
    assert value(samples, "videogen_upstream_requests_total", endpoint=task, method="GET", status="200") >= 1
    assert value(samples, "videogen_upstream_requests_total", endpoint="output", status="200") == 1
    assert value(samples, "videogen_upstream_requests_total", endpoint="/v1/text_to_video", status="200") == 1
    assert value(samples, "videogen_upstream_retries_total", endpoint=task) == 1
    assert value(samples, "videogen_upstream_retries_total", endpoint="output") == 0

    # Store latency by operation.
    for op in ("claim", "save", "get"):
        assert value(samples, "videogen_store_operation_seconds_count", op=op) >= 1, op

    assert value(samples, "videogen_build_info", version=__version__) == 1
    # Label values are bounded: no ids, no URLs, no keys.
    for secret in (created.id, updates[-1].upstream_task_id, sim.api_key, "http://"):
        assert secret not in text


async def test_watcher_and_poller_gauges_follow_open_streams(tmp_path):
    slow = dataclasses.replace(FAST_SIMULATOR, running_seconds=60.0)
    server = await start_server(str(tmp_path / "data"), sim_config=slow, metrics_listen="127.0.0.1:0")
    try:
        stub = server.stub
        video = (await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="slow", seconds=5))).video
        streams = [stub.WatchStatus(pb.WatchStatusRequest(id=video.id)) for _ in range(3)]
        for call in streams:
            await call.read()  # the current state: this watcher is attached
        _, samples = await scrape(server.app.metrics_port)
        assert value(samples, "videogen_open_watchers") == 3
        assert value(samples, "videogen_active_pollers") == 1  # one poller, shared
        for call in streams:
            call.cancel()
        async with asyncio.timeout(10):
            while True:
                _, samples = await scrape(server.app.metrics_port)
                if value(samples, "videogen_open_watchers") == 0:
                    break
                await asyncio.sleep(0.02)
        # The video is still polled: every unfinished video is followed until it ends, watched or not
        # (issue 10), by the replica holding its lease (this one: it created it).
        assert value(samples, "videogen_active_pollers") == 1
        assert value(samples, "videogen_leases_held") == 1
        assert (
            value(samples, "grpc_server_handled_total", grpc_method="WatchStatus", grpc_code="CANCELLED") == 3
        )

        # A stream that outlives the caller's deadline is counted DEADLINE_EXCEEDED, not CANCELLED.
        late = await expect_stream_error(stub.WatchStatus(pb.WatchStatusRequest(id=video.id), timeout=0.3))
        assert late.code.name == "DEADLINE_EXCEEDED"
        async with asyncio.timeout(10):
            while True:
                _, samples = await scrape(server.app.metrics_port)
                if value(samples, "grpc_server_handled_total", grpc_method="WatchStatus") == 4:
                    break
                await asyncio.sleep(0.02)
        assert (
            value(
                samples, "grpc_server_handled_total", grpc_method="WatchStatus", grpc_code="DEADLINE_EXCEEDED"
            )
            == 1
        )
    finally:
        await stop_server(server)


async def test_metrics_port_is_off_in_process_and_validated_from_the_environment(tmp_path):
    server = await start_server(str(tmp_path / "data"))
    try:
        assert server.app.metrics_server is None and server.app.metrics_port == 0
    finally:
        await stop_server(server)
    assert Config.from_env({}).metrics_listen == "127.0.0.1:9464"
    assert Config.from_env({"VIDEOGEN_METRICS_LISTEN": "off"}).metrics_listen == ""
    assert Config.from_env({"VIDEOGEN_METRICS_LISTEN": "[::1]:9100"}).metrics_listen == "[::1]:9100"
    with pytest.raises(ConfigError, match="VIDEOGEN_METRICS_LISTEN"):
        Config.from_env({"VIDEOGEN_METRICS_LISTEN": "localhost"})


async def test_a_taken_metrics_port_fails_the_start(tmp_path):
    first = await start_server(str(tmp_path / "a"), metrics_listen="127.0.0.1:0")
    try:
        taken = f"127.0.0.1:{first.app.metrics_port}"
        second = App(
            Config(listen="127.0.0.1:0", data_dir=str(tmp_path / "b"), metrics_listen=taken),
            simulator=RunwaySimulator(api_key="key_test"),
        )
        try:
            with pytest.raises(ConfigError, match=f"VIDEOGEN_METRICS_LISTEN={taken}: cannot listen there"):
                await second.start()
        finally:
            await second.stop(grace=0)
        async with httpx.AsyncClient() as client:
            index = await client.get(f"http://{taken}/")
        assert index.status_code == 200 and "/metrics" in index.text
    finally:
        await stop_server(first)


async def test_archive_families_count_copies_and_expiries(tmp_path):
    # A retention of 1 s and a sweep every 0.2 s: the one output is archived, then expired, within the test.
    server = await start_server(
        str(tmp_path / "data"),
        metrics_listen="127.0.0.1:0",
        archive=f"file://{tmp_path / 'archive'}",
        archive_retention=1.0,
        archive_sweep_interval=0.2,
    )
    try:
        port = server.app.metrics_port
        _, before = await scrape(port)
        created = (
            await server.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a red kite", seconds=5))
        ).video
        async with asyncio.timeout(30):
            while True:  # nobody watches: the tracker follows the video and the archiver copies it
                _, samples = await scrape(port)
                if value(samples, "videogen_archive_outputs_total", result="expired") >= 1:
                    break
                await asyncio.sleep(0.1)
        got = (await server.stub.Get(pb.GetRequest(id=created.id))).video
    finally:
        await stop_server(server)
    assert value(before, "videogen_archive_outputs_total", result="archived") == 0
    assert value(before, "videogen_archive_copies_in_flight") == 0
    assert value(samples, "videogen_archive_outputs_total", result="archived") == 1
    assert value(samples, "videogen_archive_outputs_total", result="lost") == 0
    assert value(samples, "videogen_archive_outputs_total", result="expired") == 1
    assert value(samples, "videogen_archive_copies_in_flight") == 0
    assert got.status == video_pb2.VIDEO_STATUS_COMPLETED
