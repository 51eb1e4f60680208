"""Issue 11's acceptance through the real server: a video that completes with nobody watching is copied to
the archive (a real directory, `file://`), and served from there byte-exact with 0 requests to Runway
(the simulator, a real HTTP server) long after Runway's URL expired and Runway forgot the task, also after a
restart; ranged reads come from the archive too; retention deletes the copy and StreamContent then says
VIDEO_OUTPUT_EXPIRED while Get still shows the video."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC
from pathlib import Path

import grpc
from conftest import FAST_SIMULATOR, RunningServer, start_server, stop_server
from faults.server_process import run_to_exit
from moto_s3 import aws_env, moto_s3, require_moto
from rpc_helpers import expect_stream_error, read_content
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.archive import open_archive
from videogen_server.domain.clock import utcnow
from videogen_server.domain.video import ArchiveState, VideoRecord, archive_key
from videogen_server.simulator import RunwaySimulator
from videogen_server.simulator.media import OutputMedia

OUTPUT_SIZE = 3 * 1024 * 1024 + 4321  # not a multiple of the chunk size
SIM = dataclasses.replace(FAST_SIMULATOR, output_size=OUTPUT_SIZE, output_url_ttl=1.0)
BOUND = 30.0


def runway_requests(sim: RunwaySimulator) -> int:
    return sum(sim.request_counts.values())


def original_bytes(task_id: str, size: int = OUTPUT_SIZE) -> bytes:
    """What Runway served for the task (the simulator's bytes are a function of the task id)."""
    return OutputMedia(task_id, 0, size).read(0, size)


async def generate(server: RunningServer) -> video_pb2.Video:
    return (
        await server.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a lighthouse", seconds=5))
    ).video


async def wait_archive_state(server: RunningServer, video_id: str, state: ArchiveState) -> VideoRecord:
    """Until the stored record's first output is in `state` (read from the store: no RPC, nobody watches)."""
    async with asyncio.timeout(BOUND):
        while True:
            record = await server.app.store.get(video_id)
            if record is not None and record.outputs and record.outputs[0].archive is state:
                return record
            await asyncio.sleep(0.05)


async def test_an_unwatched_video_is_archived_and_served_from_the_archive_after_runway_forgot_it(
    tmp_path: Path,
) -> None:
    data_dir = str(tmp_path / "data")
    archive_dir = tmp_path / "archive"
    # No periodic scan (its first pass, at start, finds nothing): the tracker's hook alone starts the copy.
    server = await start_server(
        data_dir, sim_config=SIM, archive=f"file://{archive_dir}", archive_scan_interval=3600.0
    )
    sim = server.simulator
    try:
        video = await generate(server)
        record = await wait_archive_state(server, video.id, ArchiveState.ARCHIVED)  # nobody called Get
        original = original_bytes(video.upstream_task_id)
        assert record.outputs[0].sha256 == hashlib.sha256(original).hexdigest()
        assert record.outputs[0].size_bytes == OUTPUT_SIZE
        got = (await server.stub.Get(pb.GetRequest(id=video.id))).video
        assert got.videos[0].sha256 == record.outputs[0].sha256
        assert got.videos[0].size_bytes == OUTPUT_SIZE
        # The copy is a plain file under the configured directory.
        assert (archive_dir / archive_key(video.id, 0)).read_bytes() == original

        await asyncio.sleep(SIM.output_url_ttl + 0.2)  # Runway's URL expired
        assert sim.forget_task(video.upstream_task_id)  # and Runway forgot the task
        before = runway_requests(sim)
        for _ in range(3):  # fetched N times: 0 downloads from Runway
            data, messages = await read_content(server.stub, video.id)
            assert data == original
            assert messages[0].total_size == OUTPUT_SIZE and messages[0].content_type == "video/mp4"
        # Ranged reads come from the archive too.
        part, _ = await read_content(server.stub, video.id, offset=1_000_000, limit=300_001)
        assert part == original[1_000_000:1_300_001]
        tail, _ = await read_content(server.stub, video.id, offset=OUTPUT_SIZE - 10)
        assert tail == original[-10:]
        empty, messages = await read_content(server.stub, video.id, offset=OUTPUT_SIZE)
        assert empty == b"" and messages[0].total_size == OUTPUT_SIZE
        assert runway_requests(sim) == before
    finally:
        await stop_server(server)

    # After a restart on the same data directory (and archive): still served, still 0 requests.
    server = await start_server(data_dir, simulator=sim, archive=f"file://{archive_dir}")
    try:
        before = runway_requests(sim)
        data, _ = await read_content(server.stub, video.id)
        assert data == original
        part, _ = await read_content(server.stub, video.id, offset=5, limit=7)
        assert part == original[5:12]
        assert runway_requests(sim) == before
    finally:
        await stop_server(server)


async def test_retention_deletes_the_copy_and_streamcontent_says_expired_while_get_shows_the_video(
    tmp_path: Path,
) -> None:
    archive_dir = tmp_path / "archive"
    server = await start_server(
        str(tmp_path / "data"),
        sim_config=SIM,
        archive=f"file://{archive_dir}",
        archive_retention=2.0,
        archive_sweep_interval=0.2,
    )
    try:
        video = await generate(server)
        archived = await wait_archive_state(server, video.id, ArchiveState.ARCHIVED)
        assert (archive_dir / archive_key(video.id, 0)).exists()
        assert archived.expire_time is not None
        expired = await wait_archive_state(server, video.id, ArchiveState.EXPIRED)
        assert not (archive_dir / archive_key(video.id, 0)).exists()

        error = await expect_stream_error(server.stub.StreamContent(pb.StreamContentRequest(id=video.id)))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == "VIDEO_OUTPUT_EXPIRED"
        got = (await server.stub.Get(pb.GetRequest(id=video.id))).video
        assert got.status == video_pb2.VIDEO_STATUS_COMPLETED
        assert expired.expire_time is not None and expired.expire_time < utcnow()
        shown = got.expire_time.ToDatetime(tzinfo=UTC)  # Get still shows it, in the past
        assert abs((shown - expired.expire_time).total_seconds()) < 0.001 and shown < utcnow()
    finally:
        await stop_server(server)


async def test_an_archived_object_that_is_missing_is_relayed_from_runway_while_its_url_lives(
    tmp_path: Path,
) -> None:
    archive_dir = tmp_path / "archive"
    sim_config = dataclasses.replace(SIM, output_url_ttl=3600.0)
    server = await start_server(
        str(tmp_path / "data"), sim_config=sim_config, archive=f"file://{archive_dir}"
    )
    try:
        video = await generate(server)
        await wait_archive_state(server, video.id, ArchiveState.ARCHIVED)
        # A replica that does not see the same directory, or storage that lost the object.
        (archive_dir / archive_key(video.id, 0)).unlink()
        before = server.simulator.request_counts[("GET", "output")]
        data, _ = await read_content(server.stub, video.id)
        assert data == original_bytes(video.upstream_task_id)
        assert server.simulator.request_counts[("GET", "output")] == before + 1
    finally:
        await stop_server(server)


async def test_with_the_archive_off_nothing_is_copied_and_content_is_relayed(tmp_path: Path) -> None:
    sim_config = dataclasses.replace(SIM, output_url_ttl=3600.0)
    server = await start_server(str(tmp_path / "data"), sim_config=sim_config, archive="off")
    try:
        video = await generate(server)
        done = await _wait_completed(server, video.id)
        assert done.videos[0].sha256 == ""
        assert server.simulator.request_counts[("GET", "output")] == 0  # no copy was made
        data, _ = await read_content(server.stub, video.id)
        assert data == original_bytes(video.upstream_task_id)
        assert server.simulator.request_counts[("GET", "output")] == 1
        assert not (tmp_path / "data" / "archive").exists()
    finally:
        await stop_server(server)


async def _wait_completed(server: RunningServer, video_id: str) -> video_pb2.Video:
    async with asyncio.timeout(BOUND):
        while True:
            record = await server.app.store.get(video_id)
            if record is not None and record.status.terminal:
                return (await server.stub.Get(pb.GetRequest(id=video_id))).video
            await asyncio.sleep(0.05)


async def test_the_s3_path_end_to_end_against_motos_s3_server(tmp_path: Path) -> None:
    """The same acceptance on `s3://bucket/prefix`, against moto's S3-protocol server on a loopback port (no
    S3 service is reachable here: S3 itself is untested)."""
    require_moto()
    with moto_s3() as s3, aws_env(s3.env()):
        s3.create_bucket("videos-test")
        data_dir = str(tmp_path / "data")
        setting = "s3://videos-test/archive"
        server = await start_server(data_dir, sim_config=SIM, archive=setting)
        sim = server.simulator
        try:
            video = await generate(server)
            record = await wait_archive_state(server, video.id, ArchiveState.ARCHIVED)
            original = original_bytes(video.upstream_task_id)
            assert record.outputs[0].sha256 == hashlib.sha256(original).hexdigest()
            # The object is in the bucket under the prefix, byte-exact (read with a client of its own).
            reader = open_archive(setting, data_dir)
            assert reader is not None
            await reader.open()
            try:
                async with reader.open_read(archive_key(video.id, 0)) as out:
                    assert out.total_size == OUTPUT_SIZE
                    stored = b"".join([chunk async for chunk in out.iter_chunks(1 << 20)])
            finally:
                await reader.close()
            assert stored == original

            await asyncio.sleep(SIM.output_url_ttl + 0.2)
            assert sim.forget_task(video.upstream_task_id)
            before = runway_requests(sim)
            data, _ = await read_content(server.stub, video.id)
            assert data == original
            part, _ = await read_content(server.stub, video.id, offset=123_456, limit=1_000_000)
            assert part == original[123_456:1_123_456]
            assert runway_requests(sim) == before
        finally:
            await stop_server(server)

        server = await start_server(data_dir, simulator=sim, archive=setting)  # restarted
        try:
            before = runway_requests(sim)
            data, _ = await read_content(server.stub, video.id)
            assert data == original and runway_requests(sim) == before
        finally:
            await stop_server(server)


async def test_copies_have_download_connections_of_their_own_so_streams_never_wait_for_them(
    tmp_path: Path,
) -> None:
    """One StreamContent allowed and one copy at a time: while a slow copy holds its connection to Runway's
    CDN, a StreamContent that relays still gets a connection at once (the pool is the stream limit plus the
    archiver's concurrency, not the stream limit shared with it)."""
    slow = dataclasses.replace(SIM, output_size=2 * 1024 * 1024, output_bytes_per_second=256 * 1024)
    server = await start_server(
        str(tmp_path / "data"),
        sim_config=slow,
        archive=f"file://{tmp_path / 'archive'}",
        max_streams=1,
        archive_concurrency=1,
    )
    archiver = server.app.service.archiver
    assert archiver is not None
    try:
        video = await generate(server)
        async with asyncio.timeout(BOUND):
            while server.simulator.request_counts[("GET", "output")] < 1:  # noqa: ASYNC110 - the copy began
                await asyncio.sleep(0.01)
        stream = server.stub.StreamContent(pb.StreamContentRequest(id=video.id, limit=1000))
        first = await stream.read()  # a relay from Runway: the output is not archived yet
        assert isinstance(first, pb.StreamContentResponse) and len(first.data) > 0
        # Received while the copy still holds its own connection (it lasts ~8 s at this pace).
        assert archiver.in_flight == 1
        record = await server.app.store.get(video.id)
        assert record is not None and record.outputs[0].archive is ArchiveState.PENDING
        stream.cancel()
    finally:
        await stop_server(server)


async def test_an_archive_that_cannot_be_written_stops_start_up_in_one_line(tmp_path: Path) -> None:
    """Nobody's video is accepted that could not be kept: the start-up probe fails, exit 2, one line."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"a file where the archive's directory should be")
    code, output = await run_to_exit(
        {
            "VIDEOGEN_ARCHIVE": f"file://{blocker}/archive",
            "VIDEOGEN_LISTEN": "127.0.0.1:0",
            "VIDEOGEN_METRICS_LISTEN": "off",
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
        }
    )
    lines = output.splitlines()
    assert code == 2, output
    assert len(lines) == 1, lines
    assert (
        lines[0].split("configuration error: ", 1)[1].startswith(f"VIDEOGEN_ARCHIVE=file://{blocker}/archive")
    )


async def test_the_start_up_log_names_the_archive_and_its_retention(tmp_path: Path, caplog) -> None:
    caplog.set_level("INFO", logger="videogen_server.bootstrap")
    server = await start_server(str(tmp_path / "data"), archive_retention=7 * 86400.0)
    try:
        archive_url = f"file://{tmp_path / 'data' / 'archive'}"
        assert f"output archive: {archive_url}; retention 7d" in caplog.text
    finally:
        await stop_server(server)
