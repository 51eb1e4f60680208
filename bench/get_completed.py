"""Get of a COMPLETED video with 64 concurrent callers, against the same server's grpc.health.v1.Health/Check.

Both phases use the same client: pre-serialized requests on raw byte calls (the client spends nothing on
protobuf), 64 callers spread over 4 channels. The phases alternate (Health, Get, Health, Get) so drift in
a noisy machine hits both. Also reported: the server's CPU time per call, read from /proc/<pid>/stat, and
the simulator's GET count across the Get phases (no upstream call is the target).
"""

from __future__ import annotations

import asyncio
import time

from videogen.v1 import video_pb2, video_service_pb2

from bench.common import (
    HEALTH_CHECK,
    SERVICE,
    Stack,
    cpu_seconds,
    generate,
    note,
    raw_unary,
    report,
    stack,
    wait_status,
)

CALLERS = 64
CHANNELS = 4
PHASE = 4.0  # seconds per phase


async def load(s: Stack, method: str, request: bytes, seconds: float) -> tuple[float, float]:
    """(calls per second, server CPU seconds per call) with CALLERS callers for `seconds`."""
    calls = [raw_unary(s.channel(c), method) for c in range(CHANNELS)]
    for call in calls:  # warm-up
        await call(request, timeout=10)
    done = 0
    stop_at = 0.0

    async def caller(i: int) -> None:
        nonlocal done
        call = calls[i % CHANNELS]
        while time.monotonic() < stop_at:
            await call(request, timeout=10)
            done += 1

    cpu0 = cpu_seconds(s.server.pid)
    t0 = time.monotonic()
    stop_at = t0 + seconds
    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(s.server.pid) - cpu0
    return done / elapsed, cpu / max(done, 1)


async def compare(s: Stack, name: str = "Get COMPLETED") -> None:
    """Get of a COMPLETED video against Health/Check on the server of `s`; reports as `name`."""
    vid = await generate(s, "get bench")
    await wait_status(s, vid, video_pb2.VIDEO_STATUS_COMPLETED)
    get = video_service_pb2.GetRequest(id=vid).SerializeToString()
    health = b""  # HealthCheckRequest{service: ""}: the server as a whole
    key = "GET /v1/tasks/{id}"
    health_rates, get_rates, health_cpu, get_cpu = [], [], [], []
    upstream = 0
    get_calls = 0
    for _ in range(2):
        rate, cpu = await load(s, HEALTH_CHECK, health, PHASE)
        health_rates.append(rate)
        health_cpu.append(cpu)
        before = await s.sim_requests(key)
        rate, cpu = await load(s, SERVICE + "Get", get, PHASE)
        upstream += await s.sim_requests(key) - before
        get_rates.append(rate)
        get_cpu.append(cpu)
        get_calls += int(rate * PHASE)
    h, g = sum(health_rates) / 2, sum(get_rates) / 2
    report(
        f"{name}, 64 callers, vs Health/Check",
        f"{g / h:.2f}x ({g:.0f} Get/s vs {h:.0f} Check/s)",
        ">= 0.70x",
        g / h >= 0.7,
    )
    report(
        f"{name}: upstream calls",
        f"{upstream} Runway GETs for ~{get_calls} Gets",
        "0 (no upstream call per Get)",
        upstream == 0,
    )
    note(
        f"server CPU per call: Get {sum(get_cpu) / 2 * 1e6:.0f} us, "
        f"Health/Check {sum(health_cpu) / 2 * 1e6:.0f} us "
        f"({sum(get_cpu) / sum(health_cpu):.2f}x)"
    )


async def main() -> None:
    async with stack(pending_seconds=0.05, running_seconds=0.2) as s:
        await compare(s)


if __name__ == "__main__":
    asyncio.run(main())
