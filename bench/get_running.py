"""Get of a RUNNING video with 64 concurrent callers: upstream GETs are bounded by the freshness window
(a Get reuses a poll younger than 1 s, and concurrent polls of one task are coalesced), not by callers.

No watcher is attached, but every unfinished video is followed (issue 11): its poller asks Runway every
poll interval (5 s here) unless a poll is younger than the freshness window, which with 64 callers a Get's
always is; so the GETs counted here are the Gets' own (before that skip: 9-10 in 8 s, one more per interval).
"""

from __future__ import annotations

import asyncio
import time

from videogen.v1 import video_pb2, video_service_pb2

from bench.common import SERVICE, generate, raw_unary, report, stack, wait_status

CALLERS = 64
CHANNELS = 4
SECONDS = 8.0
FRESHNESS = 1.0  # the server's default freshness window (Config.freshness)


async def main() -> None:
    async with stack(pending_seconds=0.05, running_seconds=600, poll_interval=5.0) as s:
        vid = await generate(s, "get running bench")
        await wait_status(s, vid, video_pb2.VIDEO_STATUS_IN_PROGRESS)
        request = video_service_pb2.GetRequest(id=vid).SerializeToString()
        calls = [raw_unary(s.channel(c), SERVICE + "Get") for c in range(CHANNELS)]
        key = "GET /v1/tasks/{id}"
        await asyncio.sleep(FRESHNESS * 1.5)
        before = await s.sim_requests(key)
        done = 0
        t0 = time.monotonic()
        stop_at = t0 + SECONDS

        async def caller(i: int) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                await calls[i % CHANNELS](request, timeout=10)
                done += 1

        await asyncio.gather(*(caller(i) for i in range(CALLERS)))
        elapsed = time.monotonic() - t0
        gets = await s.sim_requests(key) - before
        bound = elapsed / FRESHNESS + 1
        report(
            "Get RUNNING, 64 callers: upstream GETs",
            f"{gets} Runway GETs in {elapsed:.1f}s for {done} Gets ({done / elapsed:.0f}/s; "
            f"{gets / elapsed:.2f} GETs/s)",
            f"<= window/freshness + 1 = {bound:.0f}",
            gets <= bound,
        )


if __name__ == "__main__":
    asyncio.run(main())
