"""Faults while archiving (issue 11), through the real server, the simulator's fault plan and a real archive
directory: a download cut mid-way is retried and recorded once, byte-exact; an output URL expired (403)
before the copy is replaced by a fresh one; a task Runway forgot before the copy makes the output LOST; an
archive that cannot be written leaves the output PENDING and the scan copies it later; a server killed
(SIGKILL) mid-copy redoes the copy after its restart, recorded once, byte-exact."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import signal
from pathlib import Path

import grpc
import pytest
from conftest import FAST_SIMULATOR, RunningServer, start_server, stop_server
from faults.helpers import outputs
from faults.server_process import start_process
from rpc_helpers import expect_stream_error, read_content
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.domain.video import ArchiveState, VideoRecord, archive_key
from videogen_server.simulator import RunwaySimulator
from videogen_server.simulator.faults import Fault
from videogen_server.simulator.media import OutputMedia
from videogen_server.store import open_store

OUTPUT_SIZE = 2 * 1024 * 1024 + 999
SIM = dataclasses.replace(FAST_SIMULATOR, output_size=OUTPUT_SIZE)
BOUND = 30.0


def original_bytes(task_id: str, size: int = OUTPUT_SIZE) -> bytes:
    return OutputMedia(task_id, 0, size).read(0, size)


async def generate(stub: object) -> video_pb2.Video:
    request = pb.GenerateRequest(model="gen4.5", prompt="a storm", seconds=5)
    return (await stub.Generate(request)).video  # type: ignore[attr-defined]


async def wait_archive_state(server: RunningServer, video_id: str, state: ArchiveState) -> VideoRecord:
    async with asyncio.timeout(BOUND):
        while True:
            record = await server.app.store.get(video_id)
            if record is not None and record.outputs and record.outputs[0].archive is state:
                return record
            await asyncio.sleep(0.05)


async def archiving_server(tmp_path: Path, **config: object) -> RunningServer:
    return await start_server(
        str(tmp_path / "data"),
        sim_config=SIM,
        archive=f"file://{tmp_path / 'archive'}",
        archive_scan_interval=0.3,
        **config,
    )


def archived_files(archive_dir: Path, video_id: str) -> list[str]:
    folder = archive_dir / "videos" / video_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_a_download_cut_midway_while_archiving_is_retried_and_recorded_once(tmp_path: Path) -> None:
    server = await archiving_server(tmp_path)
    try:
        # Every output download is the archiver's here (nobody streams): the first is cut half-way.
        server.simulator.faults.add(Fault(route="output", kind="cut_body", cut_after=OUTPUT_SIZE // 2))
        video = await generate(server.stub)
        record = await wait_archive_state(server, video.id, ArchiveState.ARCHIVED)
        original = original_bytes(video.upstream_task_id)
        assert record.outputs[0].sha256 == hashlib.sha256(original).hexdigest()
        assert record.outputs[0].size_bytes == OUTPUT_SIZE
        assert outputs(server.simulator) == 2  # the cut download, then one whole one: nothing more
        assert archived_files(tmp_path / "archive", video.id) == ["0.mp4"]
        assert (tmp_path / "archive" / archive_key(video.id, 0)).read_bytes() == original
        assert server.app.service.archiver is not None and server.app.service.archiver.archived == 1
    finally:
        await stop_server(server)


async def test_an_output_url_expired_before_archiving_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    server = await archiving_server(tmp_path)
    try:
        server.simulator.faults.add(Fault(route="output", kind="expired_url"))
        video = await generate(server.stub)
        record = await wait_archive_state(server, video.id, ArchiveState.ARCHIVED)
        assert record.outputs[0].sha256 == hashlib.sha256(original_bytes(video.upstream_task_id)).hexdigest()
        assert outputs(server.simulator) == 2  # the 403, then the download from the fresh URL
    finally:
        await stop_server(server)


async def test_a_task_runway_forgot_before_the_copy_is_recorded_lost(tmp_path: Path) -> None:
    server = await archiving_server(tmp_path)
    sim = server.simulator
    try:
        sim.faults.add(
            Fault(route="output", kind="cut_body", cut_after=1000, count=1000)
        )  # copies keep failing
        video = await generate(server.stub)
        async with asyncio.timeout(BOUND):
            while outputs(sim) < 3:  # noqa: ASYNC110 - a whole pass of attempts failed
                await asyncio.sleep(0.02)
        pending = await server.app.store.get(video.id)
        assert pending is not None and pending.outputs[0].archive is ArchiveState.PENDING
        # Runway deletes the task before any copy succeeded.
        sim.faults.clear()
        assert sim.output_bytes(video.upstream_task_id)  # still there until now
        assert sim.forget_task(video.upstream_task_id)

        record = await wait_archive_state(server, video.id, ArchiveState.LOST)
        assert "no longer" in record.outputs[0].lost_reason
        assert archived_files(tmp_path / "archive", video.id) == []
        error = await expect_stream_error(server.stub.StreamContent(pb.StreamContentRequest(id=video.id)))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "VIDEO_OUTPUT_GONE"
        got = (await server.stub.Get(pb.GetRequest(id=video.id))).video
        assert got.status == video_pb2.VIDEO_STATUS_COMPLETED
    finally:
        await stop_server(server)


async def test_an_archive_that_cannot_be_written_leaves_the_output_pending_and_it_is_copied_later(
    tmp_path: Path,
) -> None:
    archive_dir = tmp_path / "archive"
    server = await archiving_server(tmp_path)
    try:
        # The archive's "videos" folder cannot be created (a file is in the way): every write fails, as on a
        # full or broken disk (permissions would not do: the tests may run as root).
        blocker = archive_dir / "videos"
        blocker.write_bytes(b"in the way")
        video = await generate(server.stub)
        async with asyncio.timeout(BOUND):
            while outputs(server.simulator) < 2:  # noqa: ASYNC110 - copies tried and failed
                await asyncio.sleep(0.02)
        record = await server.app.store.get(video.id)
        assert record is not None and record.outputs[0].archive is ArchiveState.PENDING
        assert record.outputs[0].sha256 == ""
        got = (await server.stub.Get(pb.GetRequest(id=video.id))).video
        assert got.videos[0].sha256 == ""

        blocker.unlink()  # the disk is usable again: the next scan copies it
        record = await wait_archive_state(server, video.id, ArchiveState.ARCHIVED)
        original = original_bytes(video.upstream_task_id)
        assert record.outputs[0].sha256 == hashlib.sha256(original).hexdigest()
        assert (archive_dir / archive_key(video.id, 0)).read_bytes() == original
    finally:
        await stop_server(server)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
async def test_kill_9_during_a_copy_redoes_it_after_the_restart_recorded_once_byte_exact(
    tmp_path: Path,
) -> None:
    size = 16 * 1024 * 1024  # two of the archive's 8 MiB parts: the first is written before the kill
    sim = RunwaySimulator(
        api_key="key_archive_kill",
        # A slow CDN: the copy lasts about 8 s, long enough to be killed in the middle of it.
        config=dataclasses.replace(FAST_SIMULATOR, output_size=size, output_bytes_per_second=2 * 1024 * 1024),
    )
    await sim.start()
    data_dir = tmp_path / "data"
    archive_dir = tmp_path / "archive"
    env = {"VIDEOGEN_ARCHIVE": f"file://{archive_dir}", "VIDEOGEN_ARCHIVE_SCAN_INTERVAL": "0.5"}
    try:
        server = await start_process(data_dir, sim, extra_env=env)
        try:
            video = await generate(server.stub)
            async with asyncio.timeout(BOUND):
                while outputs(sim) < 1:  # noqa: ASYNC110 - the copy's download started
                    await asyncio.sleep(0.02)
            await asyncio.sleep(5.0)  # about 10 MiB of 16 have been copied
            server.kill()
        finally:
            await server.close()
        store = open_store(str(data_dir), "sqlite")
        await store.open()
        try:
            killed = await store.get(video.id)
        finally:
            await store.close()
        assert killed is not None and killed.outputs[0].archive is ArchiveState.PENDING
        assert not (archive_dir / archive_key(video.id, 0)).exists()  # no part under the key
        left = archived_files(archive_dir, video.id)  # what the killed copy left (it could not abort)

        sim.config.output_bytes_per_second = None
        served = outputs(sim)
        server = await start_process(data_dir, sim, extra_env=env)
        try:
            async with asyncio.timeout(BOUND):
                while True:
                    got = (await server.stub.Get(pb.GetRequest(id=video.id))).video
                    if got.videos and got.videos[0].sha256:
                        break
                    await asyncio.sleep(0.1)
            original = original_bytes(video.upstream_task_id, size)
            assert got.videos[0].sha256 == hashlib.sha256(original).hexdigest()
            assert got.videos[0].size_bytes == size
            assert outputs(sim) == served + 1  # redone once, after the restart
            before = sum(sim.request_counts.values())
            data, _ = await read_content(server.stub, video.id)
            assert data == original
            assert sum(sim.request_counts.values()) == before  # from the archive
        finally:
            await server.close()
        assert (archive_dir / archive_key(video.id, 0)).read_bytes() == original
        # Besides the object: at most the killed copy's temporary file (README, "Output archive").
        assert set(archived_files(archive_dir, video.id)) == {"0.mp4", *left}
        assert all(name.startswith("0.mp4#") for name in left), left
    finally:
        await sim.stop()


async def test_sigterm_during_a_copy_aborts_it_cleanly_and_leaves_it_pending(tmp_path: Path) -> None:
    size = 16 * 1024 * 1024
    sim = RunwaySimulator(
        api_key="key_archive_term",
        config=dataclasses.replace(FAST_SIMULATOR, output_size=size, output_bytes_per_second=2 * 1024 * 1024),
    )
    await sim.start()
    data_dir = tmp_path / "data"
    archive_dir = tmp_path / "archive"
    try:
        server = await start_process(data_dir, sim, extra_env={"VIDEOGEN_ARCHIVE": f"file://{archive_dir}"})
        try:
            video = await generate(server.stub)
            async with asyncio.timeout(BOUND):
                while outputs(sim) < 1:  # noqa: ASYNC110 - the copy's download started
                    await asyncio.sleep(0.02)
            async with asyncio.timeout(BOUND):
                while not archived_files(archive_dir, video.id):  # noqa: ASYNC110 - a part is on disk
                    await asyncio.sleep(0.05)
            assert archived_files(archive_dir, video.id)[0].startswith("0.mp4#")  # the temporary file
            server.terminate()
            assert await server.wait_exit() == 0
        finally:
            await server.close()
        assert "Traceback" not in server.output(), server.output()
        store = open_store(str(data_dir), "sqlite")
        await store.open()
        try:
            stopped = await store.get(video.id)
        finally:
            await store.close()
        assert stopped is not None and stopped.outputs[0].archive is ArchiveState.PENDING
        assert (
            archived_files(archive_dir, video.id) == []
        )  # the upload was aborted: not even a temporary file
    finally:
        await sim.stop()
