"""What a new user met in the first hour (issue 13), through the real ``videogen`` process against the real
server: exit codes for FAILED/CANCELLED videos, hints that follow the error's reason, TLS mistakes named by
the flag that fixes them (without grpc's own log lines), how a cancelled video is shown, and TLS files given
to the Python client as paths."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from client.cli_process import run_cli
from conftest import RunningServer, start_server, stop_server
from security.conftest import Pki, pki  # noqa: F401 (the session fixture, shared with the TLS tests)
from videogen.v1 import video_pb2
from videogen_client import NotFound, VideoClient
from videogen_client.cli import EXIT_RPC_ERROR, EXIT_VIDEO_FAILED, error_hint, format_video
from videogen_client.errors import make_error
from videogen_server.simulator import SimulatorConfig
from videogen_server.simulator.faults import Fault

WAIT = 60.0


@pytest.fixture
async def slow_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """Videos stay QUEUED for a minute: time to download or cancel one that has not finished."""
    config = SimulatorConfig(pending_seconds=60.0, running_seconds=1.0, output_size=64 * 1024)
    server = await start_server(str(tmp_path / "data"), sim_config=config)
    try:
        yield server
    finally:
        await stop_server(server)


def _gen(target: str, *extra: str) -> list[str]:
    return [
        "--target",
        target,
        *extra,
        "generate",
        "--model",
        "gen4.5",
        "--prompt",
        "a boat",
        "--seconds",
        "5",
    ]


# -- exit codes --------------------------------------------------------------------------------------------


async def test_generate_without_wait_exits_1_when_the_video_it_got_is_failed(
    videogen_server: RunningServer,
) -> None:
    # Runway answers the create with 503: the server cannot know whether the task started, closes the video
    # FAILED (VIDEOGEN.UPSTREAM_OUTCOME_UNKNOWN) and answers UNAVAILABLE; the CLI retries with the same
    # request_id and gets that FAILED video back.
    videogen_server.simulator.faults.add(Fault(route="create", kind="status", status=503))
    result = await run_cli(*_gen(videogen_server.address, "--json"))
    video = json.loads(result.out)
    assert video["status"] == "VIDEO_STATUS_FAILED", result
    assert video["error"]["code"] == "VIDEOGEN.UPSTREAM_OUTCOME_UNKNOWN"
    assert result.code == EXIT_VIDEO_FAILED, result

    # `get` of that video says the same; the JSON shape is unchanged.
    again = await run_cli("--target", videogen_server.address, "--json", "get", video["id"])
    assert again.code == EXIT_VIDEO_FAILED and json.loads(again.out) == video


async def test_cancel_exits_0_and_get_of_the_cancelled_video_exits_1(slow_server: RunningServer) -> None:
    started = await run_cli(*_gen(slow_server.address, "--json"))
    assert started.code == 0, started
    video_id = json.loads(started.out)["id"]
    cancelled = await run_cli("--target", slow_server.address, "--json", "cancel", video_id)
    # The cancel did what it was asked: exit 0. Any later look at the video: exit 1 (it will never complete).
    assert cancelled.code == 0, cancelled
    assert json.loads(cancelled.out)["status"] == "VIDEO_STATUS_CANCELLED"
    shown = await run_cli("--target", slow_server.address, "get", video_id)
    assert shown.code == EXIT_VIDEO_FAILED, shown
    # Item: show what is true of a cancelled video.
    lines = shown.out.splitlines()
    assert any(line.split() == ["status:", "CANCELLED"] for line in lines), shown.out
    assert "%" not in shown.out and "completed:" not in shown.out and "RUNNING" not in shown.out
    assert any(line.startswith("cancelled:") for line in lines), shown.out


def test_help_lists_the_exit_codes_of_every_command() -> None:
    from videogen_client.cli import MAIN_EPILOG

    assert "1    the video is FAILED or CANCELLED" in MAIN_EPILOG


# -- hints follow the reason -------------------------------------------------------------------------------


async def test_failed_precondition_hints_follow_the_reason(
    slow_server: RunningServer, tmp_path: Path
) -> None:
    target = slow_server.address
    queued = json.loads((await run_cli(*_gen(target, "--json"))).out)["id"]

    async def hint_of(*argv: str) -> dict[str, Any]:
        result = await run_cli("--target", target, "--json", *argv)
        assert result.code == EXIT_RPC_ERROR, result
        error: dict[str, Any] = json.loads(result.err)["error"]
        assert error["code"] == "FAILED_PRECONDITION"
        assert "credit" not in error["hint"].lower(), error
        return error

    error = await hint_of("download", queued, str(tmp_path / "q.mp4"))
    assert error["reason"] == "VIDEO_NOT_COMPLETED" and "watch" in error["hint"], error

    assert (await run_cli("--target", target, "cancel", queued)).code == 0
    error = await hint_of("download", queued, str(tmp_path / "c.mp4"))
    assert "CANCELLED" in error["hint"] and "generate" in error["hint"], error

    # The plain output ends with the same hint.
    plain = await run_cli("--target", target, "download", queued, str(tmp_path / "c.mp4"))
    assert plain.err_lines[-1] == f"hint: {error['hint']}"


async def test_cancelling_a_completed_video_says_it_already_finished(videogen_server: RunningServer) -> None:
    target = videogen_server.address
    done = await run_cli(*_gen(target, "--json"), "--wait")
    assert done.code == 0, done
    video_id = json.loads(done.out.splitlines()[-1])["id"]
    result = await run_cli("--target", target, "--json", "cancel", video_id)
    assert result.code == EXIT_RPC_ERROR, result
    error = json.loads(result.err)["error"]
    assert error["reason"] == "VIDEO_ALREADY_FINISHED"
    assert "credit" not in error["hint"].lower() and "COMPLETED" in error["hint"], error


@pytest.mark.parametrize(
    ("reason", "metadata", "words"),
    [
        ("VIDEO_NOT_COMPLETED", {"status": "IN_PROGRESS"}, ("watch",)),
        ("VIDEO_NOT_COMPLETED", {"status": "FAILED"}, ("FAILED", "generate")),
        ("VIDEO_ALREADY_FINISHED", {"status": "FAILED"}, ("FAILED",)),
        ("VIDEO_CREATING", {}, ("moment",)),
        ("VIDEO_OUTPUT_GONE", {}, ("no longer", "generate")),
        ("VIDEO_OUTPUT_EXPIRED", {}, ("retention", "generate")),
        ("UPSTREAM_INSUFFICIENT_CREDITS", {}, ("credits",)),
    ],
)
def test_failed_precondition_hint_per_reason(
    reason: str, metadata: dict[str, str], words: tuple[str, ...]
) -> None:
    err = make_error(grpc.StatusCode.FAILED_PRECONDITION, "x", reason=reason)
    err.metadata = metadata
    hint = error_hint(err)
    assert all(word in hint for word in words), hint
    if reason != "UPSTREAM_INSUFFICIENT_CREDITS":
        assert "credit" not in hint.lower(), hint


# -- a cancelled or failed video as text ------------------------------------------------------------------


def test_format_video_of_cancelled_and_failed_videos() -> None:
    video = video_pb2.Video(
        id="v1",
        status=video_pb2.VIDEO_STATUS_CANCELLED,
        upstream_status="RUNNING",
        progress=39,
        model="gen4.5",
    )
    video.create_time.FromJsonString("2025-01-01T00:00:00Z")
    video.complete_time.FromJsonString("2025-01-01T00:00:09Z")
    text = format_video(video)
    lines = [line.split() for line in text.splitlines()]
    assert ["status:", "CANCELLED"] in lines and ["cancelled:", "2025-01-01T00:00:09Z"] in lines, text
    assert "39%" not in text and "RUNNING" not in text and "completed:" not in text

    video.status = video_pb2.VIDEO_STATUS_FAILED
    video.upstream_status = "FAILED"
    text = format_video(video)
    assert "39%" not in text and "completed:" not in text
    assert any(line.split() == ["failed:", "2025-01-01T00:00:09Z"] for line in text.splitlines()), text

    video.status = video_pb2.VIDEO_STATUS_COMPLETED
    video.upstream_status, video.progress = "SUCCEEDED", 100
    assert any(line.split()[:1] == ["completed:"] for line in format_video(video).splitlines())


# -- TLS mistakes ------------------------------------------------------------------------------------------


@pytest.fixture
async def tls_servers(tmp_path: Path, pki: Pki) -> AsyncIterator[dict[str, RunningServer]]:  # noqa: F811
    tls = await start_server(
        str(tmp_path / "tls"), tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)
    )
    mtls = await start_server(
        str(tmp_path / "mtls"),
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca_cert),
    )
    plain = await start_server(str(tmp_path / "plain"))
    try:
        yield {"tls": tls, "mtls": mtls, "plain": plain}
    finally:
        for server in (tls, mtls, plain):
            await stop_server(server)


async def test_tls_mistakes_name_the_flag_and_keep_grpc_logs_quiet(
    tls_servers: dict[str, RunningServer],
    pki: Pki,  # noqa: F811
) -> None:
    missing = str(uuid.uuid4())
    ca = ("--ca-cert", str(pki.ca_cert))
    cases: list[tuple[str, tuple[str, ...], str]] = [
        # (server, flags, what the hint must name)
        ("tls", (), "--tls"),  # plaintext against a TLS server
        ("tls", ("--tls",), "--ca-cert"),  # the system's roots do not trust the test CA
        ("tls", ("--ca-cert", str(pki.client_cert)), "--ca-cert"),  # wrong roots
        ("mtls", ca, "--client-cert"),  # the server wants a client certificate
        ("plain", ca, "without --tls"),  # TLS against a plaintext server
    ]

    async def one(server: str, flags: tuple[str, ...], flag: str) -> None:
        address = tls_servers[server].address
        result = await run_cli("--target", address, "--timeout", "5", *flags, "get", missing)
        assert result.code == EXIT_RPC_ERROR, result
        assert "ssl_transport_security" not in result.err and "I1201" not in result.err, result.err
        hint = result.err_lines[-1]
        assert hint.startswith("hint: ") and flag in hint, (server, flags, result.err)
        assert "is the server running" not in hint, result.err

    await asyncio.gather(*(one(*case) for case in cases))


# -- TLS files as paths in the Python client --------------------------------------------------------------


async def test_python_client_accepts_tls_paths_or_bytes(
    tls_servers: dict[str, RunningServer],
    pki: Pki,  # noqa: F811
) -> None:
    address = tls_servers["mtls"].address

    def get_with(**tls: Any) -> None:
        with VideoClient(address, **tls) as client, pytest.raises(NotFound):
            client.get(str(uuid.uuid4()), timeout=30)

    await asyncio.to_thread(
        get_with,
        root_certificates=pki.ca_cert,  # a Path
        certificate_chain=str(pki.client_cert),  # a str path
        private_key=pki.client_key.read_bytes(),  # PEM bytes
    )
    with pytest.raises(OSError):
        VideoClient(address, root_certificates=str(pki.ca_cert) + ".missing")
    with pytest.raises(ValueError, match="not a PEM"):
        VideoClient(address, root_certificates=Path(__file__))
