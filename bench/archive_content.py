"""Issue 11's archive rows, against floors measured in the same run (bench/floors.py):

- StreamContent of a 256 MiB archived video (local-dir archive): the server's CPU per byte (from /proc,
  the whole stream read by a bare grpc.aio client process) against a direct httpx download of the same
  bytes from the simulator (own process) and the bare grpc.aio server sending the same size from a local
  file; the simulator's request counts before and after the streams say how many reached "Runway".
- 100 videos completing at once with nobody watching: 100 Generates, then no call at all until they must
  have ended; then every one must become archived (Get shows its sha256) while the server's RSS is sampled
  and the simulator's sockets are watched for output downloads in flight (a connection of the simulator's
  port with bytes queued to send, sampled every 10 ms: a lower bound on the copies running at once,
  compared with the configured bound, VIDEOGEN_ARCHIVE_CONCURRENCY).

Both need the archiver (issue 11): until the server knows VIDEOGEN_ARCHIVE and the API has
VideoOutput.sha256, each reports SKIPPED with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from videogen.v1 import video_pb2
from videogen_server.config import Config

from bench import floors
from bench.common import (
    MIB,
    RssPeak,
    Stack,
    generate,
    get_video,
    median,
    report,
    skipped,
    stack,
    wait_status,
)
from bench.floors import ms_per_mib
from bench.stream_content import chunk_size, expected_sha256, server_stream

SIZE = floors.SIZE
ROUNDS = 3
VS_HTTPX = 0.6
VS_FILE_FLOOR = 1.5
BURST = 100
BURST_SIZE = 8 * MIB
QUEUED = 16 * 1024  # bytes queued on a simulator socket that only an output download leaves there


def archive_missing() -> str | None:
    """Why the archive rows cannot run yet (None: they can)."""
    if "archive" not in {f.name for f in dataclasses.fields(Config)}:
        return "the server has no VIDEOGEN_ARCHIVE setting yet (issue 11's archiver not merged)"
    if importlib.util.find_spec("videogen_server.archive") is None:
        return "no videogen_server.archive package yet (issue 11's archive adapter not merged)"
    if "sha256" not in video_pb2.VideoOutput.DESCRIPTOR.fields_by_name:
        return "VideoOutput has no sha256 yet: nothing says an output is archived"
    return None


async def total_requests(s: Stack) -> int:
    """Every request the simulator has answered so far (API and output downloads)."""
    response = await s.http.get(f"{s.sim_url}/_sim/stats")
    return sum(response.json()["requests"].values())


async def wait_archived(s: Stack, video_id: str, limit: float) -> video_pb2.Video:
    until = time.monotonic() + limit
    while True:
        video = await get_video(s, video_id)
        if video.videos and all(getattr(o, "sha256", "") for o in video.videos):
            return video
        if time.monotonic() > until:
            raise TimeoutError(f"video {video_id} not archived after {limit:.0f}s")
        await asyncio.sleep(0.2)


def archive_env(workdir: Path) -> dict[str, str]:
    return {"VIDEOGEN_ARCHIVE": (workdir / "archive").as_uri(), "VIDEOGEN_CHUNK_SIZE": str(chunk_size())}


async def archived_stream() -> None:
    name = "StreamContent 256 MiB archived (local-dir archive)"
    reason = archive_missing()
    if reason is not None:
        skipped(name, reason)
        return
    chunk = chunk_size()
    grpc_floor = await floors.grpc_floors()
    # Against the cheapest floor measured (1 MiB messages): an archived read's messages grow from
    # VIDEOGEN_CHUNK_SIZE to 1 MiB for a fast reader (services/message_sizes.py), so the floor of the
    # bare server sending its largest messages is the one to beat.
    floor_chunk = min(grpc_floor.server_file, key=lambda c: grpc_floor.server_file[c])
    file_floor = grpc_floor.server_file[floor_chunk]
    async with _archive_stack(SIZE) as s:
        vid = await generate(s, "archive bench")
        video = await wait_status(s, vid, video_pb2.VIDEO_STATUS_COMPLETED)
        archived = await wait_archived(s, vid, limit=300)
        want = expected_sha256(video.upstream_task_id, SIZE)
        exact = getattr(archived.videos[0], "sha256", "") == want and archived.videos[0].size_bytes == SIZE
        url = (await s.upstream_task(video.upstream_task_id))["output"][0]
        directs = [await floors.httpx_floor(url, rounds=1) for _ in range(ROUNDS)]
        before = await total_requests(s)
        streams = [await server_stream(s, vid) for _ in range(ROUNDS)]
        upstream = await total_requests(s) - before  # /_sim/stats reads are not counted
    direct = median(directs)
    server = ms_per_mib(median([r[0] for r in streams]))
    messages = median([r[4] for r in streams])
    sizes = f"{messages:.0f} messages, {SIZE / messages / 1024:.0f} KiB on average, from {chunk // 1024} KiB"
    report(
        f"{name}: server CPU per byte vs direct httpx download",
        f"{server / direct:.2f}x (server {server:.2f} ms/MiB, httpx {direct:.2f} ms/MiB; {sizes})",
        f"<= {VS_HTTPX}x",
        server / direct <= VS_HTTPX,
    )
    report(
        f"{name}: server CPU per byte vs bare grpc.aio server from a local file",
        f"{server / file_floor:.2f}x ({server:.2f} vs {file_floor:.2f} ms/MiB, the bare server in "
        f"{floor_chunk // 1024} KiB messages)",
        f"<= {VS_FILE_FLOOR}x",
        server / file_floor <= VS_FILE_FLOOR,
    )
    report(
        f"{name}: upstream requests during {ROUNDS} streams",
        f"{upstream} (archived copy SHA-256 {'matches' if exact else 'DIFFERS FROM'} the simulator's bytes)",
        "0",
        upstream == 0 and exact,
    )


async def burst() -> None:
    name = f"{BURST} videos completing at once, nobody watching"
    reason = archive_missing()
    if reason is not None:
        skipped(name, reason)
        return
    bound = int(getattr(Config.from_env(), "archive_concurrency", 0) or 0)
    running = 3.0
    async with _archive_stack(BURST_SIZE, running_seconds=running, poll_interval=1.0) as s:
        sim_port = int(s.sim_url.rsplit(":", 1)[1])
        async with RssPeak(s.server.pid, interval=0.05) as rss, _InFlight(sim_port) as inflight:
            t0 = time.monotonic()
            ids = await asyncio.gather(*(generate(s, f"burst {i}", channel=i % 4) for i in range(BURST)))
            # Nobody watches: no Get until every task must have ended upstream (running time + 2 polls).
            await asyncio.sleep(running + 2.5)
            videos = await asyncio.gather(*(wait_archived(s, v, limit=600) for v in ids))
            elapsed = time.monotonic() - t0
        archived = sum(1 for v in videos if v.videos and all(getattr(o, "sha256", "") for o in v.videos))
    report(
        f"{name}: archived",
        f"{archived}/{BURST} archived in {elapsed:.1f}s ({BURST_SIZE // MIB} MiB each)",
        f"{BURST}/{BURST}",
        archived == BURST,
    )
    report(
        f"{name}: output copies in flight at once",
        f"peak {inflight.peak} seen (simulator connections with > 16 KiB queued, sampled every 10 ms; "
        f"a lower bound), configured bound {bound or 'unknown'}",
        "<= VIDEOGEN_ARCHIVE_CONCURRENCY",
        bound > 0 and inflight.peak <= bound,
    )
    growth = rss.peak - rss.start
    report(
        f"{name}: server memory growth (reported)",
        f"{growth / MIB:.1f} MiB peak RSS growth (RSS {rss.start / MIB:.1f} -> {rss.peak / MIB:.1f} MiB)",
        "report; bounded",
        True,
    )


@contextlib.asynccontextmanager
async def _archive_stack(
    size: int, *, running_seconds: float = 0.2, poll_interval: float = 5.0
) -> AsyncIterator[Stack]:
    """A stack whose server archives to a directory of its own, removed afterwards (up to 800 MiB)."""
    base = Path(tempfile.mkdtemp(prefix="videogen-bench-archive-"))
    try:
        async with stack(
            pending_seconds=0.05,
            running_seconds=running_seconds,
            output_size=size,
            poll_interval=poll_interval,
            server_env=archive_env(base),
        ) as s:
            yield s
    finally:
        shutil.rmtree(base, ignore_errors=True)


class _InFlight:
    """Peak number of the simulator's connections with more than QUEUED bytes waiting to be sent
    (/proc/net/tcp tx_queue), sampled every 10 ms: output downloads in flight."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _InFlight:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _count(self) -> int:
        busy = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    local_port = int(parts[1].split(":")[1], 16)
                    tx_queue = int(parts[4].split(":")[0], 16)
                    # ESTABLISHED, and more queued than any API answer (a task's JSON is < 2 KiB).
                    if local_port == self._port and parts[3] == "01" and tx_queue > QUEUED:
                        busy += 1
        return busy

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._count())
            await asyncio.sleep(0.01)


async def main() -> None:
    await archived_stream()
    await burst()


if __name__ == "__main__":
    asyncio.run(main())
