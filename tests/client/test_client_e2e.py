"""The Python client and the CLI end to end, against the real server (the ``videogen_server`` fixture from
tests/conftest.py: a grpc.aio server on loopback in front of the Runway simulator with fast timings).

The fixture's server runs on the test's event loop, so blocking code (the sync client, the CLI) runs in a
thread with ``asyncio.to_thread``.
"""

# Small file checks on tmp_path inside async tests are fine.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from videogen.v1 import video_pb2
from videogen_client import (
    AsyncVideoClient,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    VideoClient,
    VideogenError,
)
from videogen_client import download as download_module
from videogen_client.cli import main
from videogen_client.download import PartialDownload

WAIT = 60.0  # generous: the simulator completes tasks in about a second


async def _completed(client: AsyncVideoClient) -> video_pb2.Video:
    video = await client.generate("gen4.5", "a cat", seconds=5, timeout=WAIT)
    video = await client.wait(video.id, timeout=WAIT)
    assert video.status == video_pb2.VIDEO_STATUS_COMPLETED, video
    return video


async def test_generate_wait_download(videogen_server: Any, tmp_path: Path) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        video = await client.generate("gen4.5", "a cat", seconds=5, timeout=WAIT)
        assert video.id and video.model == "gen4.5" and video.prompt == "a cat"
        assert video.mode == video_pb2.GENERATION_MODE_TEXT_TO_VIDEO
        assert video.request_id  # the client generated one
        updates: list[video_pb2.Video] = []
        done = await client.wait(video.id, timeout=WAIT, on_update=updates.append)
        assert done.status == video_pb2.VIDEO_STATUS_COMPLETED and done.progress == 100
        assert updates and updates[-1] == done
        assert len(done.videos) >= 1

        progress: list[tuple[int, int | None]] = []
        target = tmp_path / "cat.mp4"
        size = await client.download(
            done.id, target, on_progress=lambda n, total: progress.append((n, total)), timeout=WAIT
        )
        expected = videogen_server.simulator.output_bytes(done.upstream_task_id, 0)
        assert size == len(expected)
        assert target.read_bytes() == expected
        assert not Path(str(target) + ".part").exists()
        assert progress[-1] == (len(expected), len(expected))

        after = await client.get(done.id)
        assert after.status == video_pb2.VIDEO_STATUS_COMPLETED and after.id == done.id


async def test_download_resumes_part_file(videogen_server: Any, tmp_path: Path) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        video = await _completed(client)
        expected = videogen_server.simulator.output_bytes(video.upstream_task_id, 0)
        target = tmp_path / "resumed.mp4"
        Path(str(target) + ".part").write_bytes(expected[:1000])
        progress: list[int] = []
        size = await client.download(video.id, target, on_progress=lambda n, _t: progress.append(n))
        assert size == len(expected)
        assert target.read_bytes() == expected
        assert not Path(str(target) + ".part").exists()
        assert progress[0] >= 1000  # started from the .part's size, not from 0


async def test_async_download_does_file_io_off_the_event_loop(
    videogen_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every file operation of the async download (open, stat/unlink at start, each chunk's write, the
    # fsync + rename in finish, close) must run on a thread other than the event loop's.
    loop_thread = threading.get_ident()
    calls: list[tuple[str, int]] = []

    def record(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, threading.get_ident()))
            return fn(*args, **kwargs)

        return wrapper

    for name in ("__init__", "start_stream", "write", "finish", "close", "discard"):
        monkeypatch.setattr(PartialDownload, name, record(name, getattr(PartialDownload, name)))
    monkeypatch.setattr(download_module, "open", record("open", open), raising=False)

    async with AsyncVideoClient(videogen_server.address) as client:
        video = await _completed(client)
        expected = videogen_server.simulator.output_bytes(video.upstream_task_id, 0)
        target = tmp_path / "off-loop.mp4"
        Path(str(target) + ".part").write_bytes(expected[:1000])  # resumed: stat at start, then append
        assert await client.download(video.id, target, timeout=WAIT) == len(expected)
        assert target.read_bytes() == expected  # byte-exact vs what the simulator serves
        assert not Path(str(target) + ".part").exists()

        # An exception mid-stream (here from the progress callback) keeps a consistent .part, which the
        # next download resumes to the exact bytes.
        def stop(done: int, _total: int | None) -> None:
            if done > 1000:
                raise KeyboardInterrupt

        target.unlink()
        with pytest.raises(KeyboardInterrupt):
            await client.download(video.id, target, on_progress=stop, timeout=WAIT)
        part = Path(str(target) + ".part")
        assert 1000 < part.stat().st_size < len(expected) or part.read_bytes() == expected
        assert expected.startswith(part.read_bytes()) and not target.exists()
        assert await client.download(video.id, target, timeout=WAIT) == len(expected)
        assert target.read_bytes() == expected

    names = {name for name, _ in calls}
    assert {"__init__", "write", "finish", "close", "open"} <= names, names
    on_loop = [name for name, thread in calls if thread == loop_thread]
    assert on_loop == [], on_loop

    # The sync client keeps plain file I/O on the calling thread.
    calls.clear()
    sync_target = tmp_path / "sync.mp4"

    def run_sync() -> tuple[int, int]:
        with VideoClient(videogen_server.address) as sync_client:
            return sync_client.download(video.id, sync_target, timeout=WAIT), threading.get_ident()

    size, sync_thread = await asyncio.to_thread(run_sync)
    assert size == len(expected) and sync_target.read_bytes() == expected
    assert calls and {thread for _, thread in calls} == {sync_thread}


async def test_download_of_complete_part_file(videogen_server: Any, tmp_path: Path) -> None:
    # A .part that already holds everything (a crash right before the rename) completes the download.
    async with AsyncVideoClient(videogen_server.address) as client:
        video = await _completed(client)
        expected = videogen_server.simulator.output_bytes(video.upstream_task_id, 0)
        target = tmp_path / "full.mp4"
        Path(str(target) + ".part").write_bytes(expected)
        assert await client.download(video.id, target) == len(expected)
        assert target.read_bytes() == expected


async def test_stream_content_range(videogen_server: Any) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        video = await _completed(client)
        expected = videogen_server.simulator.output_bytes(video.upstream_task_id, 0)
        chunks = [c async for c in client.stream_content(video.id, offset=100, limit=5000)]
        assert b"".join(chunks) == expected[100:5100]
        everything = b"".join([c async for c in client.stream_content(video.id)])
        assert everything == expected


async def test_watch_ends_after_terminal_state(videogen_server: Any) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        video = await client.generate("gen4.5", "a cat", seconds=5)
        states = [v async for v in client.watch(video.id, timeout=WAIT)]
        assert states[-1].status == video_pb2.VIDEO_STATUS_COMPLETED
        assert all(v.status != video_pb2.VIDEO_STATUS_COMPLETED for v in states[:-1])
        progress = [v.progress for v in states]
        assert progress == sorted(progress)


async def test_invalid_request_has_field_violation(videogen_server: Any) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        with pytest.raises(InvalidArgument) as exc:
            await client.generate("gen4.5", "a cat", seconds=99)
        err = exc.value
        assert isinstance(err, VideogenError)
        assert err.code_name == "INVALID_ARGUMENT" and err.reason
        assert "seconds" in [field for field, _ in err.field_violations]


async def test_unknown_id_is_not_found(videogen_server: Any) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        missing = str(uuid.uuid4())
        with pytest.raises(NotFound) as exc:
            await client.get(missing)
        assert exc.value.code_name == "NOT_FOUND"
        with pytest.raises(NotFound):
            await client.wait(missing, timeout=WAIT)
        with pytest.raises(NotFound):
            await client.cancel(missing)


async def test_download_before_completion_fails_cleanly(videogen_server: Any, tmp_path: Path) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        video = await client.generate("gen4.5", "a cat", seconds=5)
        target = tmp_path / "early.mp4"
        with pytest.raises(FailedPrecondition):
            await client.download(video.id, target)
        assert not target.exists()


async def test_cancel(videogen_server: Any, tmp_path: Path) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        video = await client.generate("gen4.5", "a cat", seconds=5)
        cancelled = await client.cancel(video.id)
        assert cancelled.status == video_pb2.VIDEO_STATUS_CANCELLED
        # wait() returns the terminal video (it does not raise for CANCELLED/FAILED).
        assert (await client.wait(video.id, timeout=WAIT)).status == video_pb2.VIDEO_STATUS_CANCELLED
        with pytest.raises(FailedPrecondition):
            await client.download(video.id, tmp_path / "never.mp4")
        assert not (tmp_path / "never.mp4").exists()


async def test_request_id_is_idempotent(videogen_server: Any) -> None:
    async with AsyncVideoClient(videogen_server.address) as client:
        rid = str(uuid.uuid4())
        first = await client.generate("gen4.5", "a cat", seconds=5, request_id=rid)
        second = await client.generate("gen4.5", "a cat", seconds=5, request_id=rid)
        assert first.id == second.id and first.request_id == rid


def _sync_flow(address: str, tmp_path: Path) -> tuple[video_pb2.Video, bytes, VideogenError]:
    with VideoClient(address) as client:
        video = client.generate("gen4.5", "a cat", seconds=5, timeout=WAIT)
        seen: list[video_pb2.Video] = []
        done = client.wait(video.id, timeout=WAIT, on_update=seen.append)
        assert seen and seen[-1] == done
        assert [v for v in client.watch(done.id)][-1].status == video_pb2.VIDEO_STATUS_COMPLETED
        target = tmp_path / "sync.mp4"
        client.download(done.id, target, timeout=WAIT)
        assert client.get(done.id).id == done.id
        try:
            client.generate("gen4.5", "a cat", seconds=99)
        except VideogenError as exc:
            return done, target.read_bytes(), exc
        raise AssertionError("seconds=99 was accepted")


async def test_sync_client(videogen_server: Any, tmp_path: Path) -> None:
    done, data, err = await asyncio.to_thread(_sync_flow, videogen_server.address, tmp_path)
    assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
    assert data == videogen_server.simulator.output_bytes(done.upstream_task_id, 0)
    assert isinstance(err, InvalidArgument) and "seconds" in [f for f, _ in err.field_violations]


async def test_sync_client_resume_and_not_found(videogen_server: Any, tmp_path: Path) -> None:
    async with AsyncVideoClient(videogen_server.address) as aclient:
        video = await _completed(aclient)
    expected = videogen_server.simulator.output_bytes(video.upstream_task_id, 0)
    target = tmp_path / "sync-resumed.mp4"
    Path(str(target) + ".part").write_bytes(expected[:1000])

    def run() -> None:
        with VideoClient(videogen_server.address) as client:
            assert client.download(video.id, target) == len(expected)
            with pytest.raises(NotFound):
                client.get(str(uuid.uuid4()))

    await asyncio.to_thread(run)
    assert target.read_bytes() == expected


async def test_cli_generate_wait_output(
    videogen_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "cli.mp4"
    argv = ["--target", videogen_server.address, "--json", "--timeout", str(WAIT), "generate", "--model",
            "gen4.5", "--prompt", "a cat", "--seconds", "5", "--wait", "--output", str(out_file)]  # fmt: skip
    code = await asyncio.to_thread(main, argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    video = lines[0]
    assert video["status"] == "VIDEO_STATUS_COMPLETED" and video["model"] == "gen4.5"
    expected = videogen_server.simulator.output_bytes(video["upstream_task_id"], 0)
    assert lines[1] == {"id": video["id"], "path": str(out_file), "bytes": len(expected)}
    assert out_file.read_bytes() == expected


async def test_cli_plain_commands(
    videogen_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", videogen_server.address]
    code = await asyncio.to_thread(
        main, [*target, "--json", "generate", "--model", "gen4.5", "--prompt", "a cat"]
    )
    assert code == 0
    video_id = json.loads(capsys.readouterr().out)["id"]

    assert await asyncio.to_thread(main, [*target, "watch", video_id]) == 0
    out = capsys.readouterr().out
    assert "COMPLETED" in out

    assert await asyncio.to_thread(main, [*target, "get", video_id]) == 0
    assert video_id in capsys.readouterr().out

    path = tmp_path / "plain.mp4"
    assert await asyncio.to_thread(main, [*target, "download", video_id, str(path)]) == 0
    assert f"to {path}" in capsys.readouterr().err
    assert path.stat().st_size > 0 and not os.path.exists(str(path) + ".part")

    # A finished video cannot be cancelled: one clear error line, exit code 3.
    assert await asyncio.to_thread(main, [*target, "cancel", video_id]) == 3
    assert capsys.readouterr().err.startswith("error: FAILED_PRECONDITION: ")


async def test_cli_errors(videogen_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    target = ["--target", videogen_server.address]
    code = await asyncio.to_thread(
        main, [*target, "generate", "--model", "gen4.5", "--prompt", "a cat", "--seconds", "99"]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert err.startswith("error: INVALID_ARGUMENT: ")
    assert "\n  - seconds: " in err

    assert await asyncio.to_thread(main, [*target, "get", str(uuid.uuid4())]) == 3
    assert capsys.readouterr().err.startswith("error: NOT_FOUND: ")


async def test_cli_generate_passes_references(
    videogen_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", videogen_server.address, "--json"]
    # Invalid URIs come back as field violations on both fields: the flags reach the server, tag split off.
    argv = [*target, "generate", "--model", "seedance2", "--prompt", "p", "--reference", "ftp://x.test/v.mp4#clip",
            "--reference-image", "ftp://x.test/a.png#hero"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 3
    fields = {v["field"] for v in json.loads(capsys.readouterr().err)["error"]["field_violations"]}
    assert {"references[0].uri", "reference_images[0].uri"} <= fields, fields

    # The tag arrives as the tag (this server's models take none, and say so), the URI without it.
    argv = [*target, "generate", "--model", "seedance2", "--prompt", "p", "--reference-image",
            "https://example.com/hero.png#hero"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 3
    violations = json.loads(capsys.readouterr().err)["error"]["field_violations"]
    assert [v["field"] for v in violations] == ["reference_images[0].tag"], violations

    # Untagged (a trailing '#' = no tag) they pass the server's checks and go to Runway, whose simulator
    # hosts no seedance2 and rejects it there: proof that the references themselves were accepted.
    argv = [*target, "generate", "--model", "seedance2", "--prompt", "p", "--reference-image",
            "https://example.com/hero.png#", "--reference-image", "https://example.com/b.png"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 3
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["reason"] == "UPSTREAM_REJECTED", error
    assert not [v for v in error["field_violations"] if "reference" in v["field"]], error
