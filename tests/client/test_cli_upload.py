"""`videogen upload FILE` and `videogen generate --input-file/--video-file`, as a child process against
the real server (issue 12): the URI alone on stdout, progress on stderr, the uploaded bytes as Runway's
input."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from client.cli_process import run_cli
from conftest import RunningServer
from videogen_client.cli import EXIT_LOCAL_ERROR, EXIT_OK, EXIT_RPC_ERROR
from videogen_server.simulator.media import OutputMedia

PNG = b"\x89PNG\r\n\x1a\n" + bytes(5000)


async def write(path: Path, data: bytes) -> Path:
    await asyncio.to_thread(path.write_bytes, data)
    return path


async def test_upload_prints_the_uri_and_progress(videogen_server: RunningServer, tmp_path: Path) -> None:
    mp4 = OutputMedia("cli", 0, 2_000_000).read(0, 2_000_000)
    clip = await write(tmp_path / "clip.mp4", mp4)
    result = await run_cli("--target", videogen_server.address, "upload", str(clip))
    assert result.code == EXIT_OK, result.err
    uri = result.out.strip()
    assert uri.startswith("runway://") and "\n" not in uri
    assert "uploaded 2000000 of 2000000 bytes (100%)" in result.err
    assert f"sha256 {hashlib.sha256(mp4).hexdigest()}" in result.err
    assert videogen_server.simulator.uploads.resolve(uri).sha256 == hashlib.sha256(mp4).hexdigest()  # type: ignore[union-attr]

    as_json = await run_cli("--target", videogen_server.address, "--json", "upload", str(clip))
    data = json.loads(as_json.out)
    assert data["content_type"] == "video/mp4" and data["size_bytes"] == len(mp4)


async def test_upload_of_a_mislabelled_file_fails_with_the_field(
    videogen_server: RunningServer, tmp_path: Path
) -> None:
    fake = await write(tmp_path / "photo.mp4", PNG)
    result = await run_cli("--target", videogen_server.address, "upload", str(fake))
    assert result.code == EXIT_RPC_ERROR and "filename" in result.err and "image/png" in result.err
    assert videogen_server.simulator.request_counts[("POST", "/v1/uploads")] == 0


async def test_generate_with_local_files(videogen_server: RunningServer, tmp_path: Path) -> None:
    sim = videogen_server.simulator
    image = await write(tmp_path / "cat.png", PNG)
    result = await run_cli(
        "--target", videogen_server.address, "--json", "generate", "--model", "gen4_turbo",
        "--prompt", "a cat", "--input-file", str(image),
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    task = json.loads(result.out.splitlines()[-1])["upstream_task_id"]
    assert sim.task_inputs(task)["promptImage"]["sha256"] == hashlib.sha256(PNG).hexdigest()

    mp4 = OutputMedia("cli2", 0, 100_000).read(0, 100_000)
    clip = await write(tmp_path / "in.mp4", mp4)
    result = await run_cli(
        "--target", videogen_server.address, "--json", "generate", "--model", "aleph2",
        "--prompt", "snow", "--video-file", str(clip),
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    task = json.loads(result.out.splitlines()[-1])["upstream_task_id"]
    assert sim.task_inputs(task)["videoUri"]["sha256"] == hashlib.sha256(mp4).hexdigest()


async def test_a_missing_file_is_a_local_error_before_any_call(
    videogen_server: RunningServer, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.mp4"
    for argv in (
        ("upload", str(missing)),
        ("generate", "--model", "aleph2", "--prompt", "snow", "--video-file", str(missing)),
    ):
        result = await run_cli("--target", videogen_server.address, *argv)
        assert result.code == EXIT_LOCAL_ERROR, (argv, result.err)
        assert str(missing) in result.err and "No such file" in result.err, result.err
        assert "UNKNOWN" not in result.err
    sim = videogen_server.simulator
    assert sim.request_counts[("POST", "/v1/uploads")] == 0
    assert sim.request_counts[("POST", "/v1/video_to_video")] == 0
