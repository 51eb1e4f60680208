"""StreamContent of a 256 MiB output not yet archived (the relay), and the Python client receiving it, against
floors measured in the same run (bench/floors.py).

- Relay: a bare grpc.aio client process (bench/floor_procs.py, bytes, no deserializer) streams the whole
  output through the server's StreamContent; the server's CPU is read from /proc/<pid>/stat (utime + stime,
  every thread) around the stream, its RSS sampled every 10 ms. The target compares it with the sum of the
  two floors the relay is made of: a plain httpx download of the same output URL from the simulator (its own
  process) and a bare grpc.aio server sending the same bytes from memory in messages of the server's chunk
  size.
- Python client: `videogen_client`'s `stream_content` and `download` (to a file), sync `VideoClient` and
  `AsyncVideoClient`, each in a process of its own, against the bare grpc.aio client floor at the same
  message size; the SHA-256 of what arrived is compared with the simulator's bytes (stream_content hashes
  as it goes and takes the hashing's CPU out; download hashes the file after the measured window). A
  download also writes the file, so its target is against the bare client floor plus the file-write floor
  (the same write alone, from the same idle state: floors.SETTLE); its ratio to the client floor alone is
  shown too.
Every figure is the median of ROUNDS; relay rounds alternate with the httpx download of the same bytes.
`BENCH_CHUNK_SIZE=N` runs the server with VIDEOGEN_CHUNK_SIZE=N.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile

import grpc
from videogen.v1 import video_pb2, video_service_pb2
from videogen_server.config import Config
from videogen_server.simulator.media import OutputMedia

from bench import floors
from bench.common import (
    MIB,
    SERVICE,
    RssPeak,
    Stack,
    cpu_seconds,
    generate,
    median,
    note,
    report,
    stack,
    wait_status,
)
from bench.floors import SIZE, ms_per_mib, run_json

ROUNDS = 3
RELAY_TARGET = 1.15
CLIENT_TARGET = 1.5


def expected_sha256(task_id: str, size: int) -> str:
    media = OutputMedia(task_id, 0, size)
    digest = hashlib.sha256()
    for chunk in media.iter_range(0, size, 4 * MIB):
        digest.update(chunk)
    return digest.hexdigest()


def chunk_size() -> int:
    raw = os.environ.get("BENCH_CHUNK_SIZE")
    return int(raw) if raw else Config().chunk_size


async def server_stream(s: Stack, video_id: str) -> tuple[float, float, float, int, int]:
    """(server CPU s, client CPU s, wall s, server RSS growth, messages received) of one whole StreamContent
    read by a bare grpc.aio client process."""
    request = video_service_pb2.StreamContentRequest(id=video_id).SerializeToString()
    pid = s.server.pid
    async with RssPeak(pid) as rss:
        cpu0 = cpu_seconds(pid)
        got = await run_json("grpc-client", s.address, SERVICE + "StreamContent", request.hex())
        cpu = cpu_seconds(pid) - cpu0
    if got["bytes"] < SIZE:  # protobuf framing adds a few bytes per message
        raise RuntimeError(f"StreamContent delivered {got['bytes']} bytes, fewer than {SIZE}")
    return cpu, got["cpu"], got["wall"], rss.peak - rss.start, int(got["messages"])


async def client_receive(s: Stack, video_id: str, flavour: str, what: str, want: str) -> float:
    """CPU seconds of videogen_client's `download` (to a file) or `stream_content` in a process of its own;
    checks the bytes' SHA-256."""
    if what == "download":
        await asyncio.sleep(floors.SETTLE)  # written from the same state as the write floor's rounds
    with tempfile.TemporaryDirectory(prefix="videogen-bench-dl-") as d:
        got = await run_json("videogen-client", s.address, video_id, d, flavour, what)
    if got["bytes"] != SIZE or got["sha256"] != want:
        raise RuntimeError(f"videogen_client ({flavour} {what}) is not byte-exact")
    cpu: float = got["cpu"]
    return cpu


async def main() -> None:
    chunk = chunk_size()
    grpc_floor = await floors.grpc_floors()
    note("floors (median of 3, own processes): " + floors.describe(grpc_floor))
    # The archive off: these rows measure the relay from Runway (bench/archive_content.py measures the
    # archived read); with it on, the video would be archived before the streams start.
    env = {"VIDEOGEN_CHUNK_SIZE": str(chunk), "VIDEOGEN_ARCHIVE": "off"}
    async with stack(pending_seconds=0.05, running_seconds=0.2, output_size=SIZE, server_env=env) as s:
        vid = await generate(s, "stream bench")
        video = await wait_status(s, vid, video_pb2.VIDEO_STATUS_COMPLETED)
        task = await s.upstream_task(video.upstream_task_id)
        url = task["output"][0]
        want = expected_sha256(video.upstream_task_id, SIZE)
        # A first small read warms the server's connection pool and code paths.
        warm: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = s.channel().unary_stream(
            SERVICE + "StreamContent"
        )
        async for _ in warm(video_service_pb2.StreamContentRequest(id=vid, limit=MIB).SerializeToString()):
            pass
        directs, relays = [], []
        for _ in range(ROUNDS):
            directs.append(await floors.httpx_floor(url, rounds=1))
            relays.append(await server_stream(s, vid))
        clients: dict[tuple[str, str], list[float]] = {
            (flavour, what): [] for what in ("stream", "download") for flavour in ("async", "sync")
        }
        for _ in range(ROUNDS):
            for flavour, what in clients:
                clients[flavour, what].append(await client_receive(s, vid, flavour, what, want))
    write = await floors.write_floor(chunk)

    direct = median(directs)
    relay = ms_per_mib(median([r[0] for r in relays]))
    relay_client = ms_per_mib(median([r[1] for r in relays]))
    server_floor = grpc_floor.server_memory.get(chunk)
    client_floor = grpc_floor.client.get(chunk)
    if server_floor is None or client_floor is None:  # an unusual BENCH_CHUNK_SIZE: nearest measured size
        nearest = min(floors.CHUNKS, key=lambda c: abs(c - chunk))
        server_floor, client_floor = grpc_floor.server_memory[nearest], grpc_floor.client[nearest]
    floor = direct + server_floor
    ratio = relay / floor
    report(
        "StreamContent 256 MiB relay: server CPU per byte vs (httpx download + bare grpc.aio server floor)",
        f"{ratio:.2f}x (server {relay:.2f} ms/MiB; floor {floor:.2f} = httpx {direct:.2f} + bare server "
        f"{server_floor:.2f} from memory, {chunk // 1024} KiB messages)",
        f"<= {RELAY_TARGET}x",
        ratio <= RELAY_TARGET,
    )
    note(f"relay vs the direct httpx client alone: {relay / direct:.2f}x (the figure issue 11 starts from)")
    growth = max(r[3] for r in relays)
    report(
        "StreamContent 256 MiB relay: server memory growth",
        f"{growth / MIB:.1f} MiB peak RSS growth",
        "<= 32 MiB",
        growth <= 32 * MIB,
    )
    wall = median([r[2] for r in relays])
    note(
        f"relay wall time {wall:.2f}s ({SIZE / MIB / wall:.0f} MiB/s); "
        f"bare client receiving it {relay_client:.2f} ms/MiB"
    )
    note(f"file-write floor (256 MiB in {chunk // 1024} KiB writes + fsync, own process): {write:.2f} ms/MiB")
    for (flavour, what), cpus in clients.items():
        got = ms_per_mib(median(cpus))
        name = ("VideoClient" if flavour == "sync" else "AsyncVideoClient") + (
            ".download (to a file)" if what == "download" else ".stream_content"
        )
        if what == "download":
            floor_ = client_floor + write
            report(
                f"videogen_client {name} of 256 MiB: CPU per byte vs bare grpc.aio client + file-write floor",
                f"{got / floor_:.2f}x ({got:.2f} ms/MiB vs {client_floor:.2f} + {write:.2f}, "
                f"{chunk // 1024} KiB messages; SHA-256 exact; vs the client floor alone "
                f"{got / client_floor:.2f}x)",
                f"<= {CLIENT_TARGET}x",
                got / floor_ <= CLIENT_TARGET,
            )
            continue
        report(
            f"videogen_client {name} of 256 MiB: CPU per byte vs bare grpc.aio client floor",
            f"{got / client_floor:.2f}x ({got:.2f} ms/MiB vs {client_floor:.2f}, "
            f"{chunk // 1024} KiB messages; SHA-256 exact)",
            f"<= {CLIENT_TARGET}x",
            got / client_floor <= CLIENT_TARGET,
        )


if __name__ == "__main__":
    asyncio.run(main())
