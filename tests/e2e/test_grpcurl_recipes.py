"""The README's grpcurl recipes, run as written (bash, `.venv/bin/grpcurl`) against the real server.

Each fenced ``sh`` block of the README's grpcurl section is run unchanged; the only input is the ``ADDR``
environment variable the recipes read (``ADDR=${ADDR:-127.0.0.1:50051}``). The blocks run in a scratch
directory holding a ``.venv`` link to the repository's, so ``.venv/bin/grpcurl`` resolves as it does from
the repository root and ``video.mp4`` lands in the scratch directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from conftest import RunningServer
from videogen.v1 import video_service_pb2
from videogen_server.simulator import Fault

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
GRPCURL = REPO / ".venv" / "bin" / "grpcurl"
SECTION = "## Calling it with grpcurl"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def recipe_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)


async def run_recipe(block: str, address: str, workdir: Path) -> tuple[int, str]:
    """Runs one block with bash (errexit, nounset, pipefail); returns the exit code and stdout+stderr."""
    assert GRPCURL.exists(), f"{GRPCURL} is missing: run `make install`"
    link = workdir / ".venv"
    if not link.exists():
        link.symlink_to(REPO / ".venv", target_is_directory=True)
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        block,
        cwd=workdir,
        env={**os.environ, "ADDR": address},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode("utf-8", "replace")


def recipe_block(containing: str) -> str:
    """The one recipe block that contains `containing` (a block added before it does not shift it)."""
    (block,) = [b for b in recipe_blocks() if containing in b]
    return block


def test_the_section_has_the_four_recipe_blocks() -> None:
    blocks = recipe_blocks()
    assert len(blocks) == 4, blocks
    for block in blocks:
        assert block.startswith("ADDR=${ADDR:-127.0.0.1:50051}\n"), block.splitlines()[0]


async def test_list_describe_generate_watch_and_download(
    videogen_server: RunningServer, tmp_path: Path
) -> None:
    code, out = await run_recipe(recipe_blocks()[0], videogen_server.address, tmp_path)
    assert code == 0, out
    assert "videogen.v1.VideoService\n" in out
    assert "grpc.health.v1.Health\n" in out
    assert "service VideoService {" in out  # describe of the service
    assert "rpc WatchStatus ( .videogen.v1.WatchStatusRequest ) returns ( stream" in out
    assert "message GenerateRequest {" in out  # describe of the message
    assert '"status": "SERVING"' in out
    match = re.search(rf"^video ({UUID})$", out, flags=re.M)
    assert match, out
    statuses = re.findall(r'"status": "(VIDEO_STATUS_[A-Z_]+)"', out)
    assert statuses and statuses[-1] == "VIDEO_STATUS_COMPLETED", statuses

    video = (await videogen_server.stub.Get(video_service_pb2.GetRequest(id=match.group(1)))).video
    saved = (tmp_path / "video.mp4").read_bytes()
    assert saved[4:8] == b"ftyp"
    assert saved == videogen_server.simulator.output_bytes(video.upstream_task_id)


async def test_errors_show_their_details(videogen_server: RunningServer, tmp_path: Path) -> None:
    code, out = await run_recipe(recipe_blocks()[1], videogen_server.address, tmp_path)
    assert code == 0, out  # each failing call is followed by `|| echo "exit $?"`
    invalid, not_found = out.split("exit 67\n")
    assert "Code: InvalidArgument" in invalid
    bad_request = _detail(invalid, "google.rpc.BadRequest")
    assert bad_request["field_violations"][0]["field"] == "seconds"
    assert "4, 6, 8" in bad_request["field_violations"][0]["description"]
    assert _detail(invalid, "google.rpc.ErrorInfo")["domain"] == "videogen"

    assert not_found.endswith("exit 69\n"), not_found
    assert "Code: NotFound" in not_found
    assert _detail(not_found, "google.rpc.ErrorInfo")["reason"]
    assert _detail(not_found, "google.rpc.ResourceInfo")["resource_type"] == "videogen.v1.Video"


async def test_an_upstream_outage_shows_retry_info(videogen_server: RunningServer, tmp_path: Path) -> None:
    videogen_server.simulator.faults.add(Fault(route="create", kind="status", status=503))
    code, out = await run_recipe(recipe_blocks()[2], videogen_server.address, tmp_path)
    assert code == 0, out
    assert out.endswith("exit 78\n"), out
    assert "Code: Unavailable" in out
    assert _detail(out, "google.rpc.ErrorInfo")["reason"] == "UPSTREAM_OUTCOME_UNKNOWN"
    assert _detail(out, "google.rpc.RetryInfo")["retry_delay"] == "1s"


async def test_list_models_and_an_unknown_model(videogen_server: RunningServer, tmp_path: Path) -> None:
    code, out = await run_recipe(recipe_block("VideoService/ListModels"), videogen_server.address, tmp_path)
    assert code == 0, out  # the failing Generate is followed by `|| echo "exit $?"`
    listing, refused = out.split("ERROR:", 1)
    lines = listing.splitlines()
    models = (await videogen_server.stub.ListModels(video_service_pb2.ListModelsRequest())).models
    assert [line.split()[0] for line in lines] == [m.id for m in models]
    gen45 = next(line for line in lines if line.startswith("gen4.5 "))
    assert gen45 == (
        "gen4.5 MODEL_STATUS_CURRENT ['GENERATION_MODE_TEXT_TO_VIDEO', 'GENERATION_MODE_IMAGE_TO_VIDEO'] "
        "seconds: [2, 3, 4, 5, 6, 7, 8, 9, 10] default: 5 use: -"
    )
    assert any(line.startswith("aleph2 ") and "seconds: input" in line for line in lines), lines
    assert any(
        line.startswith("gen4_aleph MODEL_STATUS_LEGACY") and line.endswith("use: aleph2") for line in lines
    )

    assert refused.endswith("exit 67\n"), refused
    assert "Code: InvalidArgument" in refused
    assert "known models: gen4.5, gen4_turbo, veo3.1" in refused
    violation = _detail(refused, "google.rpc.BadRequest")["field_violations"][0]
    assert violation["field"] == "model" and "gen4.5" in violation["description"]
    assert _detail(refused, "google.rpc.ErrorInfo")["reason"] == "UPSTREAM_REJECTED"


def _detail(output: str, type_name: str) -> dict[str, Any]:
    """The detail of one type from grpcurl's ``Details:`` list (one JSON object per numbered line)."""
    for line in output.splitlines():
        _, sep, payload = line.partition(")\t")
        if sep and payload.startswith("{"):
            detail: dict[str, Any] = json.loads(payload)
            if detail.get("@type") == f"type.googleapis.com/{type_name}":
                return detail
    raise AssertionError(f"no {type_name} in grpcurl's output:\n{output}")
