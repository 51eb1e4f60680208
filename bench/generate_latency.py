"""Generate through the server against a direct POST of the same Runway body to the simulator.

Calls alternate (direct, Generate, direct, ...) one at a time, so both see the same machine state; the
added latency is p50(Generate) - p50(direct) (and the same at p99). Generate does more than forward: it
validates against the catalog, records the idempotency key before the POST and the task after it.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from videogen.v1 import video_service_pb2
from videogen_server.domain.generation import GenerateSpec
from videogen_server.providers.runway.mapping import build_upstream_request

from bench.common import SERVICE, SIM_KEY, Stack, percentile, report, stack

CALLS = 400
WARMUP = 20


async def measure(s: Stack, calls: int = CALLS) -> tuple[list[float], list[float]]:
    """(direct POST ms, Generate ms) for `calls` alternating pairs against the server of `s`."""
    prompt = "a paper boat on a rainy street"
    upstream = build_upstream_request(GenerateSpec(model="gen4.5", prompt=prompt, seconds=5))
    headers = {
        "Authorization": f"Bearer {SIM_KEY}",
        "X-Runway-Version": "2024-11-06",
        "Content-Type": "application/json",
    }
    call = s.channel().unary_unary(
        SERVICE + "Generate",
        request_serializer=video_service_pb2.GenerateRequest.SerializeToString,
        response_deserializer=video_service_pb2.GenerateResponse.FromString,
    )
    request = video_service_pb2.GenerateRequest(model="gen4.5", prompt=prompt, seconds=5)
    direct_ms: list[float] = []
    server_ms: list[float] = []
    async with httpx.AsyncClient(base_url=s.sim_url, timeout=30) as http:
        for i in range(WARMUP + calls):
            t0 = time.perf_counter()
            response = await http.post(upstream.path, json=upstream.body, headers=headers)
            t1 = time.perf_counter()
            response.raise_for_status()
            await call(request, timeout=30)
            t2 = time.perf_counter()
            if i >= WARMUP:
                direct_ms.append((t1 - t0) * 1000)
                server_ms.append((t2 - t1) * 1000)
    return direct_ms, server_ms


def report_added(name: str, direct_ms: list[float], server_ms: list[float], target_ms: float) -> None:
    d50, s50 = percentile(direct_ms, 50), percentile(server_ms, 50)
    d99, s99 = percentile(direct_ms, 99), percentile(server_ms, 99)
    report(
        name,
        f"{s50 - d50:.2f} ms (Generate p50 {s50:.2f} ms, direct p50 {d50:.2f} ms; "
        f"p99 {s99:.2f} vs {d99:.2f} ms, added {s99 - d99:.2f} ms; {len(server_ms)} calls each)",
        f"<= {target_ms:g} ms at p50; p99 reported",
        s50 - d50 <= target_ms,
    )


async def main() -> None:
    async with stack(pending_seconds=0.05, running_seconds=0.2, poll_interval=5.0) as s:
        direct_ms, server_ms = await measure(s)
    report_added("Generate vs direct POST: added latency at p50", direct_ms, server_ms, 2.0)


if __name__ == "__main__":
    asyncio.run(main())
