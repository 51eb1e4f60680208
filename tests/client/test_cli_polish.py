"""The CLI for people and scripts: a hint for every error code, errors as JSON with --json, download
progress lines without a terminal, and a note when a download resumes a .part file."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from videogen_client.cli import error_hint, main
from videogen_client.errors import make_error


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK])
def test_every_error_code_has_a_hint(code: grpc.StatusCode) -> None:
    assert error_hint(make_error(code, "boom", reason="SOME_REASON"))


def test_unreachable_server_hint_names_the_target() -> None:
    err = make_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert "127.0.0.1:1" in error_hint(err, "127.0.0.1:1")
    outcome = make_error(grpc.StatusCode.UNAVAILABLE, "x", reason="UPSTREAM_OUTCOME_UNKNOWN")
    assert "--request-id" in error_hint(outcome)


async def test_json_errors_are_one_object_on_stderr(
    videogen_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", videogen_server.address, "--json"]
    code = await asyncio.to_thread(
        main, [*target, "generate", "--model", "veo3.1", "--prompt", "x", "--seconds", "5"]
    )
    assert code == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    error = json.loads(captured.err)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["field_violations"][0]["field"] == "seconds"
    assert error["hint"]

    assert await asyncio.to_thread(main, [*target, "get", str(uuid.uuid4())]) == 3
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "NOT_FOUND" and error["reason"] and error["hint"]


async def test_plain_errors_end_with_a_hint(videogen_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(main, ["--target", videogen_server.address, "get", str(uuid.uuid4())])
    assert code == 3
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("error: NOT_FOUND: ")
    assert lines[-1].startswith("hint: no video with that id")


async def test_generate_wait_output_shows_progress_and_resume(
    videogen_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", videogen_server.address]
    out = tmp_path / "boat.mp4"
    argv = [*target, "generate", "--model", "gen4.5", "--prompt", "a boat", "--seconds", "5", "--wait"]
    assert await asyncio.to_thread(main, [*argv, "--output", str(out)]) == 0
    err = capsys.readouterr().err
    size = out.stat().st_size
    assert f"downloaded {size} of {size} bytes (100%)" in err
    assert f"saved {size} bytes to {out}" in err

    video_id = err.split("started ", 1)[1].split()[0]
    again = tmp_path / "again.mp4"
    (tmp_path / "again.mp4.part").write_bytes(out.read_bytes()[:1000])
    assert await asyncio.to_thread(main, [*target, "download", video_id, str(again)]) == 0
    err = capsys.readouterr().err
    assert f"resuming {again} from 1000 bytes" in err
    assert again.read_bytes() == out.read_bytes()
