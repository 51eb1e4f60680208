"""The floors: minimal programs doing only the transport work a StreamContent needs, each run as its own
process so its CPU time is its own (read from /proc by the bench, or by the program itself around the
transfer, which leaves out interpreter start-up and imports).

`python -m bench.floor_procs <mode> ...`:
- `grpc-server SIZE PATH`: a bare grpc.aio server with one server-streaming method per source, on bytes
  (no protobuf: the messages are the payload): `/floor.Floor/Memory` slices one in-memory buffer,
  `/floor.Floor/File` reads the file at PATH, each in messages of the size the request names (8 ASCII
  digits of the request body). Prints `listening on PORT`.
- `grpc-client TARGET METHOD REQUEST_HEX`: a bare grpc.aio client receiving one stream as bytes (no
  deserializer), counting them. Prints one JSON line: {"cpu": seconds, "wall": seconds, "bytes": n}.
- `httpx URL`: a plain httpx download (`aiter_bytes`, counting bytes), same JSON line.
- `videogen-client TARGET VIDEO_ID DIR sync|async download|stream`: the Python client's `download` of output
  0 to a file in DIR, or its `stream_content`; same JSON line plus the bytes' SHA-256.
- `write-file DIR SIZE CHUNK`: writes SIZE bytes to a new file in DIR in CHUNK-byte writes and fsyncs it
  (what a download adds to receiving: the kernel's page-cache copy); same JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
MAX_MESSAGE = 8 * MIB


def _report(cpu0: float, wall0: float, received: int, **extra: Any) -> None:
    """Prints the JSON line; callables in `extra` are called after the measured window closes."""
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    values = {k: (v() if callable(v) else v) for k, v in extra.items()}
    print(json.dumps({"cpu": cpu, "wall": wall, "bytes": received, **values}), flush=True)


async def grpc_server(size: int, path: str) -> None:
    import grpc

    payload = os.urandom(size)
    await asyncio.to_thread(Path(path).write_bytes, payload)  # the file source: the same bytes, page-cached

    async def memory(request: bytes, context: Any) -> AsyncIterator[bytes]:
        chunk = int(request)
        for start in range(0, size, chunk):
            yield payload[start : start + chunk]

    async def from_file(request: bytes, context: Any) -> AsyncIterator[bytes]:
        # Read on the loop: a page-cache read of one message is tens of microseconds, and this is the
        # floor (what the least a server can do costs), not a pattern for the service.
        chunk = int(request)
        with open(path, "rb", buffering=0) as f:  # noqa: ASYNC230 - the floor, see above
            while data := f.read(chunk):
                yield data

    handler = grpc.method_handlers_generic_handler(
        "floor.Floor",
        {
            "Memory": grpc.unary_stream_rpc_method_handler(memory),
            "File": grpc.unary_stream_rpc_method_handler(from_file),
        },
    )
    server = grpc.aio.server(options=[("grpc.max_send_message_length", MAX_MESSAGE)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on {port}", flush=True)
    await server.wait_for_termination()


async def grpc_client(target: str, method: str, request: bytes) -> None:
    import grpc

    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", MAX_MESSAGE)]
    ) as channel:
        await channel.channel_ready()
        call: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(method)  # bytes
        received = messages = 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        async for message in call(request, timeout=600):
            received += len(message)
            messages += 1
        _report(cpu0, wall0, received, messages=messages)


async def httpx_get(url: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=600) as http:
        received = 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        async with http.stream("GET", url) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                received += len(chunk)
        _report(cpu0, wall0, received)


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def videogen_client(target: str, video_id: str, directory: str, flavour: str, what: str) -> None:
    """`what` = "download" (to a file; its SHA-256 is computed after the measured window) or "stream"
    (`stream_content`, hashing the bytes as they come, the hashing's own cost measured apart and taken
    out: what is left is the client's receiving)."""
    import hashlib

    path = os.path.join(directory, f"{video_id}-{flavour}.mp4")
    digest = hashlib.sha256()
    hashing = 0.0

    def consume(data: bytes) -> None:
        nonlocal hashing
        h0 = time.process_time()
        digest.update(data)
        hashing += time.process_time() - h0

    if flavour == "sync":
        from videogen_client import VideoClient

        with VideoClient(target) as client:
            client.get(video_id)  # connect before measuring
            cpu0, wall0 = time.process_time(), time.monotonic()
            if what == "download":
                size = client.download(video_id, path, resume=False, timeout=600)
            else:
                size = 0
                for data in client.stream_content(video_id, timeout=600):
                    size += len(data)
                    consume(data)
            cpu, wall = time.process_time() - cpu0 - hashing, time.monotonic() - wall0
    else:
        from videogen_client import AsyncVideoClient

        async def run() -> tuple[int, float, float]:
            async with AsyncVideoClient(target) as client:
                await client.get(video_id)
                cpu0, wall0 = time.process_time(), time.monotonic()
                if what == "download":
                    size = await client.download(video_id, path, resume=False, timeout=600)
                else:
                    size = 0
                    async for data in client.stream_content(video_id, timeout=600):
                        size += len(data)
                        consume(data)
                return size, time.process_time() - cpu0 - hashing, time.monotonic() - wall0

        size, cpu, wall = asyncio.run(run())
    sha256 = _sha256(path) if what == "download" else digest.hexdigest()
    if what == "download":
        os.unlink(path)
    print(json.dumps({"cpu": cpu, "wall": wall, "bytes": size, "sha256": sha256}), flush=True)


def write_file(directory: str, size: int, chunk: int) -> None:
    """The file-write floor: `size` bytes written to a new file in `chunk`-byte writes, then fsync."""
    payload = os.urandom(chunk)
    path = os.path.join(directory, "write-floor.bin")
    cpu0, wall0 = time.process_time(), time.monotonic()
    with open(path, "wb", buffering=0) as f:
        for _ in range(size // chunk):
            f.write(payload)
        os.fsync(f.fileno())
    _report(cpu0, wall0, size)
    os.unlink(path)


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "grpc-server":
        asyncio.run(grpc_server(int(args[0]), args[1]))
    elif mode == "grpc-client":
        asyncio.run(grpc_client(args[0], args[1], bytes.fromhex(args[2])))
    elif mode == "httpx":
        asyncio.run(httpx_get(args[0]))
    elif mode == "videogen-client":
        videogen_client(*args)
    elif mode == "write-file":
        write_file(args[0], int(args[1]), int(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
