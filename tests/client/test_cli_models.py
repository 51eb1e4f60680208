"""`videogen models` through the real command (.venv/bin/videogen, a process) against the real server: the
table names every model with its modes, sizes and durations; --json is one object per model, as ListModels
says; and the library's list_models (sync and asyncio) returns the same."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from conftest import RunningServer
from google.protobuf import json_format
from videogen.v1 import video_service_pb2
from videogen_client import AsyncVideoClient, VideoClient
from videogen_server.providers.runway.catalog import CATALOG

VIDEOGEN = Path(sys.executable).parent / "videogen"


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(VIDEOGEN), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_models_prints_a_table_of_the_catalog(videogen_server: RunningServer) -> None:
    code, out, err = await run_cli("--target", videogen_server.address, "models")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "MODEL", "STATUS", "MODE", "PROMPT", "SIZES", "SECONDS", "AUDIO", "SEED", "REFERENCES", "OPTIONS"
    ]  # fmt: skip
    first_column = [line.split()[0] for line in lines[1:] if line and not line.startswith(" ")]
    assert first_column == [m for m, s in CATALOG.items() if s.legacy is None] + [
        m for m, s in CATALOG.items() if s.legacy is not None
    ]
    row = {line.split()[0]: line for line in lines[1:] if line and not line.startswith(" ")}
    assert row["gen4.5"].split()[1:6] == ["current", "text", "required", "1280x720*", "720x1280"]
    assert "2-10 (5)" in row["gen4.5"] and "outputFormat" in row["gen4.5"]
    assert "4,6,8 (8)" in row["veo3.1"] and "negativePrompt" in row["veo3.1"]
    assert "from input" in row["aleph2"] and "targetAspectRatio" in out
    assert "legacy: use aleph2" in row["gen4_aleph"]
    assert "current, third-party" in row["seedance2"] and "images <=9" in row["seedance2"]
    assert "* the size sent when --size is not given" in err


async def test_models_json_is_one_object_per_model(videogen_server: RunningServer) -> None:
    code, out, err = await run_cli("--target", videogen_server.address, "--json", "models")
    assert code == 0, err
    assert err == ""
    listed = [json.loads(line) for line in out.splitlines()]
    expected = (await videogen_server.stub.ListModels(video_service_pb2.ListModelsRequest())).models
    assert listed == [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in expected]
    veo = next(m for m in listed if m["id"] == "veo3.1")
    assert veo["durations"] == {"allowed_seconds": [4, 6, 8], "default_seconds": 8}
    assert veo["provider_options"] == [
        {"key": "negativePrompt", "type": "PROVIDER_OPTION_TYPE_TEXT", "max_length": 1000}
    ]


async def test_list_models_sync_and_async(videogen_server: RunningServer) -> None:
    def sync() -> list[str]:
        with VideoClient(videogen_server.address) as client:
            return [m.id for m in client.list_models(timeout=10)]

    async with AsyncVideoClient(videogen_server.address) as client:
        async_ids = [m.id for m in await client.list_models(timeout=10)]
    assert await asyncio.to_thread(sync) == async_ids
    assert sorted(async_ids) == sorted(CATALOG)


async def test_a_reader_that_stops_early_ends_the_command_quietly(videogen_server: RunningServer) -> None:
    """`videogen --json models | head -1`: the reader closes the pipe after one line. The command ends the way
    Unix tools do when their reader goes away (status 141, 128 + SIGPIPE), with nothing on stderr: no
    "Broken pipe" error, no traceback."""
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        str(VIDEOGEN), "--target", videogen_server.address, "--json", "models",
        stdout=write_end, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert err.decode() == ""
    assert proc.returncode == 141
