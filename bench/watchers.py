"""1,000 WatchStatus streams on one running task, then 1,000 spread over 100 tasks.

- Upstream GETs per poll interval, read from the simulator's request counter over a window, against the
  number of tasks (the target) and the number of watchers (what it would be without shared pollers).
- Server memory per open watcher: server RSS with the 1,000 streams open minus RSS before, / 1,000.
- Fan-out: every poll of a RUNNING task sees new progress, so every poll is a change. For each change
  (task, update_time) the time from the poll (the record's update_time, stamped by the server right after
  Runway answered) to its receipt by the last of that task's watchers, and the spread first..last receipt.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import grpc
from videogen.v1 import video_pb2, video_service_pb2

from bench.common import (
    SERVICE,
    Stack,
    generate,
    note,
    percentile,
    raw_unary_stream,
    report,
    rss_bytes,
    stack,
    wait_status,
)

WATCHERS = 1000
CHANNELS = 10
POLL_INTERVAL = 1.0
WINDOW = 10.0  # seconds of steady state measured
# Progress (0-100) rises 1 point per RUNNING_SECONDS/100: at 1 point per 0.6 s every 1 s poll is a change.
RUNNING_SECONDS = 60.0


async def _watch(
    s: Stack,
    channel: int,
    video_id: str,
    received: list[tuple[str, bytes, float]],
    first: asyncio.Event,
) -> None:
    """One watcher. Messages are kept raw with their time of receipt and parsed after the measurement, so
    the client spends as little as it can per message (it shares the 2 cores with the server)."""
    call = raw_unary_stream(s.channel(channel), SERVICE + "WatchStatus")
    stream = call(video_service_pb2.WatchStatusRequest(id=video_id).SerializeToString())
    try:
        async for message in stream:
            received.append((video_id, message, time.time()))
            first.set()
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise


def _stamp(raw: bytes) -> float:
    stamp = video_service_pb2.WatchStatusResponse.FromString(raw).video.update_time
    return float(stamp.seconds + stamp.nanos / 1e9)


async def _case(s: Stack, name: str, tasks: int) -> None:
    ids = [await generate(s, f"watch bench {name} {i}") for i in range(tasks)]
    for vid in ids:
        await wait_status(s, vid, video_pb2.VIDEO_STATUS_IN_PROGRESS)
    pid = s.server.pid

    # Warm the code paths (and gRPC's per-channel state) with a few streams, then take the baseline.
    warm: list[tuple[str, bytes, float]] = []
    warm_tasks = [asyncio.create_task(_watch(s, c, ids[0], warm, asyncio.Event())) for c in range(CHANNELS)]
    await asyncio.sleep(1.0)
    for t in warm_tasks:
        t.cancel()
    await asyncio.gather(*warm_tasks, return_exceptions=True)
    await asyncio.sleep(1.0)
    rss_before = rss_bytes(pid)

    received: list[tuple[str, bytes, float]] = []
    firsts = [asyncio.Event() for _ in range(WATCHERS)]
    streams = [
        asyncio.create_task(_watch(s, i % CHANNELS, ids[i % tasks], received, firsts[i]))
        for i in range(WATCHERS)
    ]
    await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 60)
    await asyncio.sleep(2 * POLL_INTERVAL)  # pollers settle into their rhythm
    rss_open = rss_bytes(pid)

    key = "GET /v1/tasks/{id}"
    gets_before = await s.sim_requests(key)
    t0 = time.time()
    await asyncio.sleep(WINDOW)
    gets = await s.sim_requests(key) - gets_before
    t1 = time.time()
    rss_after = rss_bytes(pid)
    for t in streams:
        t.cancel()
    await asyncio.gather(*streams, return_exceptions=True)

    # -- upstream GETs per poll interval
    intervals = (t1 - t0) / POLL_INTERVAL
    per_interval = gets / intervals
    # Jitter is ±20%: the most a poller can do in the window is window / (0.8 interval) + 1 polls.
    most = tasks * ((t1 - t0) / (0.8 * POLL_INTERVAL) + 1)
    report(
        f"watch {name}: upstream GETs per poll interval",
        f"{per_interval:.1f} for {tasks} task(s) and {WATCHERS} watchers "
        f"({gets} GETs in {t1 - t0:.1f}s; {per_interval / tasks:.2f}x tasks, "
        f"{per_interval / WATCHERS:.4f}x watchers)",
        f"= tasks ({tasks}; at most {most:.0f} GETs in the window with ±20% jitter)",
        gets <= most,
    )

    # -- memory per watcher
    per_watcher = (max(rss_open, rss_after) - rss_before) / WATCHERS
    report(
        f"watch {name}: server memory per open watcher",
        f"{per_watcher / 1024:.1f} KiB (RSS {rss_before / 2**20:.1f} -> {rss_open / 2**20:.1f} MiB open, "
        f"{rss_after / 2**20:.1f} MiB after {WINDOW:.0f}s)",
        "<= 50 KiB",
        per_watcher <= 50 * 1024,
    )

    # -- fan-out latency of each change seen in the window
    by_change: dict[tuple[str, float], list[float]] = defaultdict(list)
    for vid, raw, at in received:
        stamp = _stamp(raw)
        if t0 <= stamp <= t1 - 1.0:
            by_change[(vid, stamp)].append(at)
    watchers_of = WATCHERS // tasks
    complete = {k: v for k, v in by_change.items() if len(v) >= watchers_of}
    lags = [max(v) - stamp for (_, stamp), v in complete.items()]
    spreads = [max(v) - min(v) for v in complete.values()]
    worst = max(lags) if lags else float("inf")
    report(
        f"watch {name}: poll -> last of the task's watchers",
        f"worst {worst * 1000:.0f} ms, p50 {percentile(lags, 50) * 1000:.0f} ms, "
        f"p95 {percentile(lags, 95) * 1000:.0f} ms over {len(complete)} changes "
        f"(first..last receipt spread: p50 {percentile(spreads, 50) * 1000:.0f} ms, "
        f"worst {max(spreads, default=0) * 1000:.0f} ms)",
        "<= 250 ms",
        bool(lags) and worst <= 0.25 and len(complete) == len(by_change),
    )
    if len(complete) != len(by_change):
        note(f"{len(by_change) - len(complete)} changes did not reach every watcher of their task")


async def main() -> None:
    async with stack(pending_seconds=0.05, running_seconds=RUNNING_SECONDS, poll_interval=POLL_INTERVAL) as s:
        await _case(s, "1 task x 1000", 1)
    async with stack(pending_seconds=0.05, running_seconds=RUNNING_SECONDS, poll_interval=POLL_INTERVAL) as s:
        await _case(s, "100 tasks x 10", 100)


if __name__ == "__main__":
    asyncio.run(main())
