"""StreamContent of a 256 MiB output against a direct httpx download of the same output URL.

- Direct: this process downloads the signed output URL from the simulator with httpx (aiter_bytes, as a
  plain client would); its CPU is this process's CPU time (time.process_time) over the download, with
  nothing else running in it.
- Relayed: this process streams the same bytes through the server's StreamContent; the server's CPU is
  read from /proc/<pid>/stat (utime + stime, every thread) and its RSS is sampled every 10 ms.
- The direct download only counts bytes; the relayed one is hashed (client side) against the simulator's
  bytes.
The two are run alternately, twice each; the best of each is compared (the noise on a shared machine only
ever adds time).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import httpx
from videogen.v1 import video_pb2, video_service_pb2
from videogen_server.simulator.media import OutputMedia

from bench.common import (
    MIB,
    SERVICE,
    RssPeak,
    Stack,
    cpu_seconds,
    generate,
    note,
    report,
    stack,
    wait_status,
)

SIZE = 256 * MIB
ROUNDS = 2


def expected_sha256(task_id: str, size: int) -> str:
    media = OutputMedia(task_id, 0, size)
    digest = hashlib.sha256()
    for chunk in media.iter_range(0, size, 4 * MIB):
        digest.update(chunk)
    return digest.hexdigest()


async def direct(url: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, bytes) of a plain httpx download that only counts the
    bytes (no hashing: that would bill the direct client for work the server does not do)."""
    received = 0
    async with httpx.AsyncClient(timeout=60) as http:
        cpu0, t0 = time.process_time(), time.monotonic()
        async with http.stream("GET", url) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                received += len(chunk)
        return time.monotonic() - t0, time.process_time() - cpu0, received


async def relayed(s: Stack, video_id: str) -> tuple[float, float, float, int, str, int]:
    """(wall, server CPU, client CPU, server RSS growth peak, sha256, bytes) of one StreamContent."""
    call = s.channel().unary_stream(
        SERVICE + "StreamContent",
        request_serializer=video_service_pb2.StreamContentRequest.SerializeToString,
        response_deserializer=video_service_pb2.StreamContentResponse.FromString,
    )
    digest = hashlib.sha256()
    received = 0
    pid = s.server.pid
    async with RssPeak(pid) as rss:
        cpu0, own0, t0 = cpu_seconds(pid), time.process_time(), time.monotonic()
        async for message in call(video_service_pb2.StreamContentRequest(id=video_id), timeout=300):
            digest.update(message.data)
            received += len(message.data)
        wall = time.monotonic() - t0
        cpu, own = cpu_seconds(pid) - cpu0, time.process_time() - own0
    return wall, cpu, own, rss.peak - rss.start, digest.hexdigest(), received


async def main() -> None:
    chunk = os.environ.get("BENCH_CHUNK_SIZE")
    env = {"VIDEOGEN_CHUNK_SIZE": chunk} if chunk else None
    async with stack(pending_seconds=0.05, running_seconds=0.2, output_size=SIZE, server_env=env) as s:
        vid = await generate(s, "stream bench")
        video = await wait_status(s, vid, video_pb2.VIDEO_STATUS_COMPLETED)
        task = await s.upstream_task(video.upstream_task_id)
        url = task["output"][0]
        want = expected_sha256(video.upstream_task_id, SIZE)
        # A first small read warms the server's connection pool and code paths.
        warm = s.channel().unary_stream(
            SERVICE + "StreamContent",
            request_serializer=video_service_pb2.StreamContentRequest.SerializeToString,
            response_deserializer=video_service_pb2.StreamContentResponse.FromString,
        )
        async for _ in warm(video_service_pb2.StreamContentRequest(id=vid, limit=MIB)):
            pass
        directs, relays = [], []
        exact = True
        for _ in range(ROUNDS):
            d = await direct(url)
            exact &= d[2] == SIZE
            directs.append(d)
            r = await relayed(s, vid)
            exact &= r[4] == want and r[5] == SIZE
            relays.append(r)
        d_wall = min(d[0] for d in directs)
        d_cpu = min(d[1] for d in directs)
        r_wall = min(r[0] for r in relays)
        r_cpu = min(r[1] for r in relays)
        growth = max(r[3] for r in relays)
        ratio = r_cpu / d_cpu
        report(
            "StreamContent 256 MiB: server CPU per byte vs direct httpx client",
            f"{ratio:.2f}x (server {r_cpu / (SIZE / MIB) * 1000:.2f} ms/MiB, "
            f"direct client {d_cpu / (SIZE / MIB) * 1000:.2f} ms/MiB)",
            "<= 1.2x",
            ratio <= 1.2,
        )
        report(
            "StreamContent 256 MiB: server memory growth",
            f"{growth / MIB:.1f} MiB peak RSS growth",
            "<= 32 MiB",
            growth <= 32 * MIB,
        )
        report(
            "StreamContent 256 MiB: wall time vs direct (reported)",
            f"{r_wall / d_wall:.2f}x ({SIZE / MIB / r_wall:.0f} MiB/s relayed vs "
            f"{SIZE / MIB / d_wall:.0f} MiB/s direct)",
            "report; bytes exact",
            exact,
        )
        note(
            f"gRPC client CPU for the relayed download: {min(r[2] for r in relays) / (SIZE / MIB) * 1000:.2f}"
            " ms/MiB (this process; not part of the target)"
        )


if __name__ == "__main__":
    asyncio.run(main())
