"""Upload over gRPC (issue 12): the real server on loopback against the simulator (a real HTTP server), driven
by the Python client. The runway:// URI it returns works in Generate; bad files are refused before any
Runway call; a caller who goes away leaves no temp file."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from conftest import RunningServer
from videogen.v1 import video_service_pb2
from videogen_client import AsyncVideoClient, InvalidArgument, RetryPolicy, Unavailable
from videogen_server.domain.generation import GenerateSpec, MediaRef
from videogen_server.providers.runway.mapping import build_upstream_request
from videogen_server.simulator import Fault
from videogen_server.simulator.media import OutputMedia

PNG = b"\x89PNG\r\n\x1a\n" + bytes(3000)


async def write(path: Path, data: bytes) -> Path:
    await asyncio.to_thread(path.write_bytes, data)
    return path


def spool_files(server: RunningServer) -> list[Path]:
    directory = Path(server.app.config.data_dir) / "uploads"
    return list(directory.iterdir()) if directory.exists() else []


@pytest.fixture
async def client(videogen_server: RunningServer) -> AsyncIterator[AsyncVideoClient]:
    async with AsyncVideoClient(videogen_server.address) as c:
        yield c


async def test_uploaded_image_and_video_are_inputs_runway_receives(
    videogen_server: RunningServer, client: AsyncVideoClient, tmp_path: Path
) -> None:
    sim = videogen_server.simulator
    image = await write(tmp_path / "cat.png", PNG)
    seen: list[tuple[int, int]] = []
    up = await client.upload(image, progress=lambda sent, total: seen.append((sent, total)), chunk_size=65536)
    assert up.uri.startswith("runway://") and up.size_bytes == len(PNG) and up.content_type == "image/png"
    assert up.sha256 == hashlib.sha256(PNG).hexdigest() and up.expire_time.seconds > 0
    assert seen[-1] == (len(PNG), len(PNG))
    video = await client.generate("gen4_turbo", "a cat", input_reference=up.uri, seconds=5)
    assert sim.task_inputs(video.upstream_task_id)["promptImage"]["sha256"] == up.sha256

    mp4 = OutputMedia("src", 0, 300_000).read(0, 300_000)
    clip = await client.upload(await write(tmp_path / "clip.mp4", mp4))
    v2v = await client.generate("aleph2", "snow", video_uri=clip.uri)
    assert sim.task_inputs(v2v.upstream_task_id)["videoUri"]["sha256"] == hashlib.sha256(mp4).hexdigest()
    assert sim.uploads.counts.with_authorization == 0
    assert spool_files(videogen_server) == []


def test_runway_uris_accepted_in_reference_lists() -> None:
    """references and reference_images take runway:// URIs too (the plan forwards them as they are)."""
    uri = "runway://uploads/0b6c9f6e-2b7d-4c1e-9d6e-3f1a2b3c4d5e"
    plan = build_upstream_request(
        GenerateSpec(
            model="seedance2", prompt="p", reference_images=(MediaRef(uri),), references=(MediaRef(uri),)
        )
    )
    assert plan.body["references"] == [{"uri": uri}]
    assert plan.body["referenceVideos"] == [{"type": "video", "uri": uri}]


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        ("photo.mp4", PNG, "filename"),
        ("tiny.png", PNG[:100], "size_bytes"),  # the client announces the size: refused at once
        ("anim.gif", b"GIF89a" + bytes(900), "filename"),
    ],
    ids=["png-named-mp4", "100-bytes", "gif"],
)
async def test_bad_files_refused_before_any_runway_call(
    videogen_server: RunningServer,
    client: AsyncVideoClient,
    tmp_path: Path,
    name: str,
    data: bytes,
    field: str,
) -> None:
    with pytest.raises(InvalidArgument) as info:
        await client.upload(await write(tmp_path / name, data))
    assert field in str(info.value)
    sim = videogen_server.simulator
    assert sim.request_counts[("POST", "/v1/uploads")] == 0 and sim.uploads.counts.requests == 0
    assert spool_files(videogen_server) == []


async def test_caller_gone_mid_upload_leaves_no_temp_file(videogen_server: RunningServer) -> None:
    stub = videogen_server.stub
    release = asyncio.Event()

    async def messages() -> AsyncIterator[video_service_pb2.UploadRequest]:
        yield video_service_pb2.UploadRequest(
            filename="clip.mp4", size_bytes=10_000_000, data=OutputMedia("src", 0, 10_000_000).read(0, 4000)
        )
        await release.wait()  # never sends the rest

    call = stub.Upload(messages())
    async with asyncio.timeout(10):
        while not spool_files(videogen_server):  # noqa: ASYNC110 - the server's worker thread makes it
            await asyncio.sleep(0.02)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    async with asyncio.timeout(10):
        while spool_files(videogen_server):  # noqa: ASYNC110 - removed when the server sees the cancel
            await asyncio.sleep(0.02)
    assert videogen_server.simulator.request_counts[("POST", "/v1/uploads")] == 0


async def test_storage_down_is_unavailable_and_leaves_no_file(
    videogen_server: RunningServer, client: AsyncVideoClient, tmp_path: Path
) -> None:
    videogen_server.simulator.faults.add(Fault(route="storage", kind="status", status=503, count=100))
    client.retry = RetryPolicy(max_attempts=1)
    with pytest.raises(Unavailable) as info:
        await client.upload(await write(tmp_path / "cat.png", PNG), timeout=60)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert spool_files(videogen_server) == []
