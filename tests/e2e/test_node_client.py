"""The Node.js client (clients/node) against the real server: its example generates, watches and downloads
a video byte-exact, and its error path decodes the google.rpc details of an INVALID_ARGUMENT.

Needs `node` and `clients/node/node_modules` (`make node`, which `make test` runs). Without `node` the test
is skipped on a developer's machine but fails in CI (`CI` set), where `.ci/run` installs Node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningServer
from videogen.v1 import video_pb2, video_service_pb2

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "clients" / "node"
EXAMPLE = NODE_DIR / "examples" / "generate_watch_download.js"


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed, but CI must run the Node client test (.ci/run installs it)")
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules is missing: run `make node` (npm ci)")
    return node


async def run_example(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    """Runs the example; returns its exit code, its JSON events (stdout) and its stderr."""
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        str(EXAMPLE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return proc.returncode or 0, events, err.decode("utf-8", "replace")


async def test_generate_watch_download(videogen_server: RunningServer, tmp_path: Path) -> None:
    out_file = tmp_path / "boat.mp4"
    code, events, stderr = await run_example("--target", videogen_server.address, "--out", str(out_file))
    assert code == 0, (events, stderr)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "generated" and kinds[-1] == "saved", kinds
    statuses = [e["status"] for e in events if e["event"] == "status"]
    assert statuses[-1] == "VIDEO_STATUS_COMPLETED", statuses
    saved = events[-1]
    assert saved["id"] == events[0]["id"]
    data = out_file.read_bytes()
    assert saved["bytes"] == len(data) > 0
    assert data == videogen_server.simulator.output_bytes(saved["upstream_task_id"])
    assert not (tmp_path / "boat.mp4.part").exists()
    assert "downloaded" in stderr  # the progress lines


async def test_invalid_argument_details_are_decoded(videogen_server: RunningServer) -> None:
    code, events, stderr = await run_example("--target", videogen_server.address, "--invalid")
    assert code == 3, (events, stderr)
    (error,) = events
    assert error["event"] == "error"
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["reason"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in error["fieldViolations"]] == ["seconds"]
    assert "4, 6, 8" in error["fieldViolations"][0]["description"]
    types = {d["@type"] for d in error["details"]}
    assert types == {"google.rpc.ErrorInfo", "google.rpc.BadRequest"}


async def test_list_models(videogen_server: RunningServer) -> None:
    """ListModels from Node: the same models, modes, sizes and durations the server lists (snake_case, enum
    names as strings, as the client documents)."""
    code, events, stderr = await run_example("--target", videogen_server.address, "--models")
    assert code == 0, (events, stderr)
    expected = (await videogen_server.stub.ListModels(video_service_pb2.ListModelsRequest())).models
    assert [e["event"] for e in events] == ["model"] * len(expected)
    assert [e["id"] for e in events] == [m.id for m in expected]
    for event, model in zip(events, expected, strict=True):
        assert event["status"] == video_service_pb2.ModelStatus.Name(model.status)
        modes = [(m["mode"], m["sizes"], m["default_size"], m["prompt"]) for m in event["modes"]]
        assert modes == [
            (
                video_pb2.GenerationMode.Name(m.mode),
                list(m.sizes),
                m.default_size,
                video_service_pb2.PromptRequirement.Name(m.prompt),
            )
            for m in model.modes
        ], model.id
        durations = event["durations"]
        if model.HasField("durations"):
            assert durations["allowed_seconds"] == list(model.durations.allowed_seconds), model.id
            assert durations["default_seconds"] == model.durations.default_seconds, model.id
        else:
            assert durations is None, model.id
        assert [o["key"] for o in event["provider_options"]] == [o.key for o in model.provider_options]


async def test_download_resumes_a_partial_file(videogen_server: RunningServer, tmp_path: Path) -> None:
    """A .part file left by an interrupted download is resumed with `offset`, not restarted: the example's
    first run writes the file; we cut it back to a .part prefix and download again through the library."""
    first = tmp_path / "first.mp4"
    code, events, stderr = await run_example("--target", videogen_server.address, "--out", str(first))
    assert code == 0, (events, stderr)
    video_id = events[-1]["id"]
    expected = videogen_server.simulator.output_bytes(events[-1]["upstream_task_id"])
    resumed = tmp_path / "resumed.mp4"
    prefix = len(expected) // 3
    # A wrong byte in the prefix proves the prefix was kept (resumed) rather than downloaded again.
    (tmp_path / "resumed.mp4.part").write_bytes(b"X" + expected[1:prefix])
    script = (
        "const { VideoClient } = require(process.argv[1]);"
        "const c = new VideoClient(process.argv[2]);"
        "c.download(process.argv[3], process.argv[4]).then((n) => { console.log(n); c.close(); },"
        " (e) => { console.error(e); process.exitCode = 1; c.close(); });"
    )
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        "-e",
        script,
        str(NODE_DIR / "src" / "client.js"),
        videogen_server.address,
        video_id,
        str(resumed),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert int(out) == len(expected)
    assert resumed.read_bytes() == b"X" + expected[1:]


async def test_list_videos_and_iter_videos(videogen_server: RunningServer) -> None:
    """List from Node: a page with its next token, the next page, every page through iterVideos, and a
    filter; the same ids, newest first, as the server returns."""
    created = []
    for i in range(5):
        response = await videogen_server.stub.Generate(
            video_service_pb2.GenerateRequest(model="gen4.5", prompt=f"clip {i}", seconds=5)
        )
        created.append(response.video.id)
    newest = created[::-1]
    script = (
        "const { VideoClient } = require(process.argv[1]);"
        "const c = new VideoClient(process.argv[2]);"
        "(async () => {"
        " const first = await c.listVideos({ pageSize: 2 });"
        " const second = await c.listVideos({ pageSize: 2, pageToken: first.nextPageToken });"
        " const all = []; for await (const v of c.iterVideos({ pageSize: 2 })) all.push(v.id);"
        " const none = await c.listVideos({ filter: 'model = \"veo3.1\"' });"
        " let bad = null; try { await c.listVideos({ filter: 'status = NOPE' }); }"
        " catch (e) { bad = e.fieldViolations.map((v) => v.field); }"
        " console.log(JSON.stringify({ first: first.videos.map((v) => v.id), token: first.nextPageToken,"
        "  second: second.videos.map((v) => v.id), all, none: none.videos.length,"
        "  noneToken: none.nextPageToken, status: first.videos[0].status, bad }));"
        "})().then(() => c.close(), (e) => { console.error(e); process.exitCode = 1; c.close(); });"
    )
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        "-e",
        script,
        str(NODE_DIR / "src" / "client.js"),
        videogen_server.address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    got = json.loads(out)
    assert got["first"] == newest[:2] and got["token"]
    assert got["second"] == newest[2:4]
    assert got["all"] == newest
    assert got["none"] == 0 and got["noneToken"] == ""
    assert got["status"].startswith("VIDEO_STATUS_")
    assert got["bad"] == ["filter"]


async def test_upload(videogen_server: RunningServer, tmp_path: Path) -> None:
    """Upload from Node (issue 12): a client stream read from the file; the simulator holds the same bytes,
    and a mislabelled file is refused with the field named, before any Runway call."""
    import hashlib

    from videogen_server.simulator.media import OutputMedia

    data = OutputMedia("node", 0, 3_000_000).read(0, 3_000_000)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(data)
    code, events, stderr = await run_example("--target", videogen_server.address, "--upload", str(clip))
    assert code == 0, (events, stderr)
    (uploaded,) = events
    assert uploaded["event"] == "uploaded" and uploaded["uri"].startswith("runway://")
    assert uploaded["size_bytes"] == len(data) and uploaded["content_type"] == "video/mp4"
    assert uploaded["sha256"] == hashlib.sha256(data).hexdigest()
    stored = videogen_server.simulator.uploads.resolve(uploaded["uri"])
    assert stored is not None and stored.sha256 == uploaded["sha256"]
    assert f"uploaded {len(data)} of {len(data)} bytes" in stderr

    fake = tmp_path / "photo.mp4"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    code, events, stderr = await run_example("--target", videogen_server.address, "--upload", str(fake))
    assert code == 3, (events, stderr)
    assert [v["field"] for v in events[0]["fieldViolations"]] == ["filename"]
    assert videogen_server.simulator.request_counts[("POST", "/v1/uploads")] == 1
