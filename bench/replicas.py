"""Issue 10's benchmarks: replicas sharing one Redis (a real `redis-server`, append-only file fsynced on
every write, fresh for each case), one standalone simulator, real server processes.

- watch 1 task x 1000 over 3 replicas: upstream GETs per poll interval (target: 1, the task count, not one
  per replica), and how long a change takes to reach every watcher on every replica. A change is dated by
  the record's `update_time`, which the replica that polled stamps right after Runway answered (the poll
  that saw it); it is received when the last of the 1,000 watchers has it (client clock, same machine).
  The task is RUNNING with its progress rising 1 point per 0.6 s, so every 1 s poll is a change.
- watch 100 tasks x 10 over 3 replicas: GETs per interval = 100.
- Get of a COMPLETED video on the Redis store, 64 callers, against the same replica's Health/Check
  (bench/get_completed.py's measurement on a server with VIDEOGEN_STORE=redis://...).
- Generate on the Redis store, and on SQLite, against a direct POST to the simulator
  (bench/generate_latency.py's measurement): added p50 and p99.
- 50 concurrent Generates with one request_id spread over 3 replicas: POSTs and distinct ids returned.

The fleet is tests/fleet_harness.py (the same one the fault suite uses): bench/ runs from a checkout, like
tests/, and takes its Redis fixture from there rather than keeping a copy.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from videogen.v1 import video_pb2, video_service_pb2

from bench import generate_latency, get_completed
from bench.common import ROOT, SERVICE, note, percentile, raw_unary_stream, report, stack

sys.path.insert(0, str(ROOT / "tests"))
from fleet_harness import TASK_GET, TASK_POST, Fleet, FleetSettings, open_fleet
from redis_server import RedisServer

WATCHERS = 1000
REPLICAS = 3
CHANNELS_PER_REPLICA = 4
POLL_INTERVAL = 1.0
LEASE_TTL = 3.0
WINDOW = 10.0
RUNNING_SECONDS = 60.0  # progress +1 point per 0.6 s: every 1 s poll is a change
LATENCY_TARGET = 0.25
GENERATE_TARGET_MS = 2.5
SAME_KEY_CALLS = 50


@asynccontextmanager
async def redis_server() -> AsyncIterator[RedisServer]:
    """A fresh redis-server for one case: nothing left unfinished by an earlier case gets polled."""
    directory = Path(tempfile.mkdtemp(prefix="videogen-bench-redis-"))
    server = RedisServer(directory)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def fleet(settings: FleetSettings) -> AsyncIterator[Fleet]:
    async with redis_server() as redis:
        workdir = Path(tempfile.mkdtemp(prefix="videogen-bench-fleet-"))
        async with open_fleet(workdir, redis, settings) as f:
            yield f


def _channels(f: Fleet) -> list[grpc.aio.Channel]:
    """CHANNELS_PER_REPLICA channels to each replica, replica by replica in turn."""
    return [
        grpc.aio.insecure_channel(r.running.address, options=[("grpc.channel_id", c)])
        for c in range(CHANNELS_PER_REPLICA)
        for r in f.replicas
    ]


async def _generate(channel: grpc.aio.Channel, prompt: str, request_id: str = "") -> str:
    call = channel.unary_unary(
        SERVICE + "Generate",
        request_serializer=video_service_pb2.GenerateRequest.SerializeToString,
        response_deserializer=video_service_pb2.GenerateResponse.FromString,
    )
    req = video_service_pb2.GenerateRequest(model="gen4.5", prompt=prompt, seconds=5, request_id=request_id)
    return str((await call(req, timeout=30)).video.id)


async def _wait_running(channel: grpc.aio.Channel, video_id: str, limit: float = 60.0) -> None:
    call = channel.unary_unary(
        SERVICE + "Get",
        request_serializer=video_service_pb2.GetRequest.SerializeToString,
        response_deserializer=video_service_pb2.GetResponse.FromString,
    )
    until = time.monotonic() + limit
    while (await call(video_service_pb2.GetRequest(id=video_id))).video.status != (
        video_pb2.VIDEO_STATUS_IN_PROGRESS
    ):
        if time.monotonic() > until:
            raise TimeoutError(f"video {video_id} did not start")
        await asyncio.sleep(0.1)


async def _watch(
    channel: grpc.aio.Channel, video_id: str, received: list[tuple[str, bytes, float]], first: asyncio.Event
) -> None:
    """One watcher; messages kept raw with their time of receipt, parsed after the measurement."""
    stream = raw_unary_stream(channel, SERVICE + "WatchStatus")(
        video_service_pb2.WatchStatusRequest(id=video_id).SerializeToString()
    )
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


async def watch_case(name: str, tasks: int) -> None:
    settings = FleetSettings(
        replicas=REPLICAS,
        poll_interval=POLL_INTERVAL,
        lease_ttl=LEASE_TTL,
        running_seconds=RUNNING_SECONDS,
        log_level="WARNING",
    )
    async with fleet(settings) as f:
        channels = _channels(f)
        try:
            # Each task is made on a replica in turn (its creator), and watched on all three.
            ids = [
                await _generate(channels[i % len(channels)], f"replica watch {name} {i}")
                for i in range(tasks)
            ]
            for i, vid in enumerate(ids):
                await _wait_running(channels[i % len(channels)], vid)
            received: list[tuple[str, bytes, float]] = []
            firsts = [asyncio.Event() for _ in range(WATCHERS)]
            streams = [
                asyncio.create_task(_watch(channels[i % len(channels)], ids[i % tasks], received, firsts[i]))
                for i in range(WATCHERS)
            ]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in firsts)), 60)
            await asyncio.sleep(2 * POLL_INTERVAL)
            gets_before = await f.sim.count(TASK_GET)
            t0 = time.time()
            await asyncio.sleep(WINDOW)
            gets = await f.sim.count(TASK_GET) - gets_before
            t1 = time.time()
            for t in streams:
                t.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
        finally:
            for channel in channels:
                await channel.close()

    per_interval = gets / ((t1 - t0) / POLL_INTERVAL)
    most = tasks * ((t1 - t0) / (0.8 * POLL_INTERVAL) + 1)
    report(
        f"replicas: watch {name} over {REPLICAS} replicas: upstream GETs per poll interval",
        f"{per_interval:.1f} for {tasks} task(s) ({gets} GETs in {t1 - t0:.1f}s; {per_interval / tasks:.2f}x "
        f"tasks; one poller per replica would be {REPLICAS}x)",
        f"= tasks ({tasks}; at most {most:.0f} GETs in the window with ±20% jitter)",
        gets <= most,
    )

    by_change: dict[tuple[str, float], list[float]] = defaultdict(list)
    for vid, raw, at in received:
        stamp = _stamp(raw)
        if t0 <= stamp <= t1 - 1.0:
            by_change[(vid, stamp)].append(at)
    watchers_of = WATCHERS // tasks
    complete = {k: v for k, v in by_change.items() if len(v) >= watchers_of}
    lags = [max(v) - stamp for (_, stamp), v in complete.items()]
    worst = max(lags) if lags else float("inf")
    if lags:
        figure = (
            f"worst {worst * 1000:.0f} ms, p50 {percentile(lags, 50) * 1000:.0f} ms over {len(complete)} "
            f"changes that reached all {watchers_of} watchers of their task ({len(by_change)} changes seen)"
        )
    else:
        # Replicas polling on their own stamp changes that only their own watchers see.
        figure = f"none of {len(by_change)} changes reached all {watchers_of} watchers of their task"
    if complete and len(complete) != len(by_change):
        figure += f"; {len(by_change) - len(complete)} did not"
    if tasks == 1:
        report(
            f"replicas: watch {name}: poll -> last watcher on any replica",
            figure,
            f"<= {LATENCY_TARGET * 1000:.0f} ms, every change to every watcher",
            bool(lags) and worst <= LATENCY_TARGET and len(complete) == len(by_change),
        )
    else:
        note(f"poll -> last watcher of the task: {figure}")


async def same_request_id() -> None:
    settings = FleetSettings(
        replicas=REPLICAS, poll_interval=POLL_INTERVAL, lease_ttl=LEASE_TTL, log_level="WARNING"
    )
    async with fleet(settings) as f:
        channels = _channels(f)
        try:
            posts_before = await f.sim.count(TASK_POST)
            results = await asyncio.gather(
                *(
                    _generate(channels[i % len(channels)], "one request, fifty sends", request_id="same-key")
                    for i in range(SAME_KEY_CALLS)
                ),
                return_exceptions=True,
            )
            posts = await f.sim.count(TASK_POST) - posts_before
        finally:
            for channel in channels:
                await channel.close()
    ids = {r for r in results if isinstance(r, str)}
    failures = [r for r in results if not isinstance(r, str)]
    codes = sorted({r.code().name for r in failures if isinstance(r, grpc.aio.AioRpcError)})
    report(
        f"replicas: {SAME_KEY_CALLS} concurrent Generates, one request_id, {REPLICAS} replicas",
        f"{posts} POST(s); {len(ids)} distinct id(s) for {SAME_KEY_CALLS - len(failures)} answers"
        + (f"; {len(failures)} failed ({', '.join(codes) or 'other errors'})" if failures else ""),
        f"exactly 1 POST; one id for all {SAME_KEY_CALLS}",
        posts == 1 and len(ids) == 1 and not failures,
    )


async def redis_get_completed() -> None:
    async with redis_server() as redis:
        env = {"VIDEOGEN_STORE": redis.url}
        async with stack(pending_seconds=0.05, running_seconds=0.2, server_env=env) as s:
            await get_completed.compare(s, "replicas: Get COMPLETED on the Redis store")


async def generate_on_each_store() -> None:
    async with redis_server() as redis:
        env = {"VIDEOGEN_STORE": redis.url}
        async with stack(pending_seconds=0.05, running_seconds=0.2, poll_interval=5.0, server_env=env) as s:
            direct, server = await generate_latency.measure(s)
        generate_latency.report_added(
            "replicas: Generate on the Redis store vs direct POST: added latency at p50",
            direct,
            server,
            GENERATE_TARGET_MS,
        )
    async with stack(pending_seconds=0.05, running_seconds=0.2, poll_interval=5.0) as s:
        direct, server = await generate_latency.measure(s)
    generate_latency.report_added(
        "replicas: Generate on the SQLite store vs direct POST: added latency at p50",
        direct,
        server,
        GENERATE_TARGET_MS,
    )


async def main() -> None:
    if shutil.which("redis-server") is None:
        report("replicas", "redis-server is not installed (apt-get install redis-server)", "runs", False)
        return
    await watch_case("1 task x 1000", 1)
    await watch_case("100 tasks x 10", 100)
    await redis_get_completed()
    await generate_on_each_store()
    await same_request_id()


if __name__ == "__main__":
    asyncio.run(main())
