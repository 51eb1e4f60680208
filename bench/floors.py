"""Floors measured in the same run as the service: the least a program spends per MiB on each part of
a StreamContent's transport work, with the minimal programs of bench/floor_procs.py run as separate processes.

- server floor: a bare grpc.aio server sending 256 MiB as bytes messages, from memory or from a local file
  (its CPU read from /proc/<pid>/stat around each stream);
- client floor: a bare grpc.aio client receiving those messages as bytes (its own process CPU time);
- httpx floor: a plain httpx download of an output URL from the simulator (its own process CPU time);
- write floor: writing 256 MiB to a new local file and fsyncing it (its own process CPU time), each round
  after SETTLE seconds without writing, like a download (see SETTLE).

Each figure is the median of ROUNDS transfers. The gRPC floors do not depend on the service, so they are
measured once per `make bench` run (cached here) and shared by every benchmark that compares with them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import MIB, PYTHON, ROOT, Proc, _spawn, cpu_seconds, median

SIZE = 256 * MIB
ROUNDS = 3
CHUNKS = (256 * 1024, MIB)
# Seconds of quiet before each file-writing round (the write floor and every download). On these VMs
# writing 256 MiB into the page cache costs ~0.07 s of system time right after 256 MiB were freed, and
# ~0.35-0.45 s once the freed memory has been idle for a few seconds (the virtio balloon's free page
# reporting hands it back to the host, which must back it again on the next touch; perf puts the time in
# the kernel's copy into the page cache). The same 256 MiB write from the same buffer, in one process:
# 0.42 s, then 0.07 s; after 3 s idle 0.38 s, then 0.07 s; after 8 s 0.33 s (issue 11). Without a pause,
# a round costs one or the other by chance, and the floor and a download differed by that chance alone.
SETTLE = 3.0


@dataclass(frozen=True)
class GrpcFloors:
    """ms of CPU per MiB, by message size."""

    server_memory: dict[int, float]
    server_file: dict[int, float]
    client: dict[int, float]


_cached: GrpcFloors | None = None
_write_cached: dict[int, float] = {}


def ms_per_mib(cpu_seconds_: float, size: int = SIZE) -> float:
    return cpu_seconds_ * 1000 / (size / MIB)


def _chunk_label(chunk: int) -> str:
    return f"{chunk // 1024} KiB" if chunk < MIB else f"{chunk // MIB} MiB"


async def run_json(*args: str) -> dict[str, Any]:
    """Runs `python -m bench.floor_procs ARGS` to completion; its last stdout line is its JSON report."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "bench.floor_procs",
        *args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"floor_procs {args[0]} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def grpc_floors() -> GrpcFloors:
    global _cached
    if _cached is not None:
        return _cached
    workdir = Path(tempfile.mkdtemp(prefix="videogen-floors-"))
    payload = workdir / "payload.bin"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server: Proc = _spawn(
        ["-m", "bench.floor_procs", "grpc-server", str(SIZE), str(payload)], env, workdir, "floor"
    )
    try:
        port = (await server.wait_for(r"listening on (\d+)", limit=60)).group(1)
        target = f"127.0.0.1:{port}"
        srv: dict[str, dict[int, list[float]]] = {"Memory": {}, "File": {}}
        cli: dict[int, list[float]] = {}
        for _ in range(ROUNDS):
            for chunk in CHUNKS:
                for source in ("Memory", "File"):
                    cpu0 = cpu_seconds(server.pid)
                    got = await run_json(
                        "grpc-client", target, f"/floor.Floor/{source}", f"{chunk:08d}".encode().hex()
                    )
                    srv[source].setdefault(chunk, []).append(cpu_seconds(server.pid) - cpu0)
                    if got["bytes"] != SIZE:
                        raise RuntimeError(f"floor client got {got['bytes']} bytes, not {SIZE}")
                    if source == "Memory":
                        cli.setdefault(chunk, []).append(got["cpu"])
    finally:
        server.stop()
        payload.unlink(missing_ok=True)
    _cached = GrpcFloors(
        server_memory={c: ms_per_mib(median(v)) for c, v in srv["Memory"].items()},
        server_file={c: ms_per_mib(median(v)) for c, v in srv["File"].items()},
        client={c: ms_per_mib(median(v)) for c, v in cli.items()},
    )
    return _cached


async def httpx_floor(url: str, rounds: int = ROUNDS) -> float:
    """ms/MiB of a plain httpx download of `url` (SIZE bytes) in a process of its own; median of `rounds`."""
    cpus = []
    for _ in range(rounds):
        got = await run_json("httpx", url)
        if got["bytes"] != SIZE:
            raise RuntimeError(f"httpx floor got {got['bytes']} bytes, not {SIZE}")
        cpus.append(got["cpu"])
    return ms_per_mib(median(cpus))


def describe(f: GrpcFloors) -> str:
    parts = []
    for chunk in CHUNKS:
        parts.append(
            f"{_chunk_label(chunk)} messages: server {f.server_memory[chunk]:.2f} ms/MiB from memory, "
            f"{f.server_file[chunk]:.2f} from a file; client {f.client[chunk]:.2f}"
        )
    return "; ".join(parts)


async def write_floor(chunk: int) -> float:
    """ms/MiB of writing SIZE bytes to a new local file in `chunk`-byte writes plus an fsync, in a process
    of its own (median of ROUNDS): what saving a download costs on top of receiving it. Cached per run."""
    if chunk not in _write_cached:
        cpus = []
        with tempfile.TemporaryDirectory(prefix="videogen-write-floor-") as d:
            for _ in range(ROUNDS):
                await asyncio.sleep(SETTLE)
                cpus.append((await run_json("write-file", d, str(SIZE), str(chunk)))["cpu"])
        _write_cached[chunk] = ms_per_mib(median(cpus))
    return _write_cached[chunk]
