"""50 concurrent StreamContent downloads, each read by a slow client (10 MiB/s), of 5 videos of 48 MiB.

The videos are archived (the archive is on by default) before the reads start, so this is the archived
read path, whose message sizes follow the reader (services/message_sizes.py): 48 MiB is three times the
16 MiB a stream sends before its messages may grow, so a slow reader that got large messages would show.

The server must not buffer what the readers have not taken yet: its RSS (sampled every 10 ms) is reported
as peak growth over the idle server; each download is hashed and compared with the simulator's bytes.
The bound checked: one chunk in the relay plus gRPC's per-stream flow-control window (up to ~1 MiB in
practice here, never the file) per download, i.e. peak growth <= 50 x 2 MiB, far below 50 x 16 MiB (what
buffering whole files would cost).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

from videogen.v1 import video_pb2, video_service_pb2

from bench.archive_content import wait_archived
from bench.common import MIB, SERVICE, RssPeak, Stack, generate, note, report, stack, wait_status
from bench.stream_content import expected_sha256

DOWNLOADS = 50
VIDEOS = 5
SIZE = 48 * MIB
RATE = 10 * MIB  # bytes per second per reader
PER_DOWNLOAD_BOUND = 2 * MIB


async def slow_download(s: Stack, channel: int, video_id: str) -> tuple[str, int]:
    call = s.channel(channel).unary_stream(
        SERVICE + "StreamContent",
        request_serializer=video_service_pb2.StreamContentRequest.SerializeToString,
        response_deserializer=video_service_pb2.StreamContentResponse.FromString,
    )
    digest = hashlib.sha256()
    received = 0
    t0 = time.monotonic()
    async for message in call(video_service_pb2.StreamContentRequest(id=video_id), timeout=300):
        digest.update(message.data)
        received += len(message.data)
        ahead = received / RATE - (time.monotonic() - t0)
        if ahead > 0:
            await asyncio.sleep(ahead)  # read no faster than RATE
    return digest.hexdigest(), received


async def main() -> None:
    chunk = os.environ.get("BENCH_CHUNK_SIZE")  # as in stream_content: VIDEOGEN_CHUNK_SIZE for the server
    env = {"VIDEOGEN_CHUNK_SIZE": chunk} if chunk else None
    async with stack(pending_seconds=0.05, running_seconds=0.2, output_size=SIZE, server_env=env) as s:
        ids = [await generate(s, f"slow reader bench {i}") for i in range(VIDEOS)]
        want = {}
        for vid in ids:
            video = await wait_status(s, vid, video_pb2.VIDEO_STATUS_COMPLETED)
            want[vid] = expected_sha256(video.upstream_task_id, SIZE)
        for vid in ids:  # archived first: the reads measure the archive path
            await wait_archived(s, vid, limit=120)
        await asyncio.sleep(0.5)
        async with RssPeak(s.server.pid) as rss:
            t0 = time.monotonic()
            results = await asyncio.gather(
                *(slow_download(s, i % 10, ids[i % VIDEOS]) for i in range(DOWNLOADS))
            )
            wall = time.monotonic() - t0
        exact = sum(1 for i, (sha, n) in enumerate(results) if sha == want[ids[i % VIDEOS]] and n == SIZE)
        growth = rss.peak - rss.start
        bound = DOWNLOADS * PER_DOWNLOAD_BOUND
        report(
            "StreamContent 50 slow readers (10 MiB/s): server memory",
            f"peak RSS growth {growth / MIB:.1f} MiB ({growth / DOWNLOADS / 1024:.0f} KiB per download; "
            f"{DOWNLOADS * SIZE / MIB:.0f} MiB relayed in {wall:.1f}s)",
            f"bounded: <= {DOWNLOADS} x {PER_DOWNLOAD_BOUND // MIB} MiB = {bound // MIB} MiB",
            growth <= bound,
        )
        report(
            "StreamContent 50 slow readers: byte-exact downloads",
            f"{exact}/{DOWNLOADS} sha256 match the simulator's bytes",
            f"{DOWNLOADS}/{DOWNLOADS}",
            exact == DOWNLOADS,
        )
        note(f"server RSS: {rss.start / MIB:.1f} MiB idle, peak {rss.peak / MIB:.1f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
