"""What every benchmark shares: the simulator and the server as separate processes (so their CPU time and
RSS can be read from /proc/<pid>), raw gRPC calls, and the one summary line each benchmark prints.

Processes: the Runway simulator (`python -m videogen_server.simulator`) and the real server
(`python -m videogen_server`, pointed at the simulator as if it were Runway) each run on their own; the
benchmark itself is the client. Nothing is faked: the server is the one `make run` starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from videogen.v1 import video_pb2, video_service_pb2

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SIM_KEY = "key_bench_" + uuid.uuid4().hex
MIB = 1024 * 1024
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")

SERVICE = "/videogen.v1.VideoService/"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"

# Every result line goes here too; run.py writes them out for docs/benchmarks.md.
RESULTS: list[str] = []


# -- /proc readings ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15 of stat)


def rss_bytes(pid: int) -> int:
    """Resident set size (/proc/<pid>/statm)."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


class RssPeak:
    """Samples a process's RSS every `interval` seconds in the background; `.peak` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self._pid = pid
        self._interval = interval
        self.start = rss_bytes(pid)
        self.peak = self.start
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssPeak:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, rss_bytes(self._pid))

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self._pid))
            await asyncio.sleep(self._interval)


# -- processes -----------------------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process whose log goes to a file; `started` waits for a line announcing its address."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    async def wait_for(self, pattern: str, limit: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        until = time.monotonic() + limit
        while time.monotonic() < until:
            text = self.log_path.read_text(errors="replace")
            m = regex.search(text)
            if m is not None:
                return m
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited ({self.popen.returncode}):\n{text[-3000:]}")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no {pattern!r} in {self.log_path}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _spawn(args: Sequence[str], env: dict[str, str], log_dir: Path, name: str) -> Proc:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
    popen = subprocess.Popen(
        [PYTHON, *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
    )
    log.close()
    return Proc(popen, log_path)


@dataclass
class Stack:
    """One simulator process and one server process in front of it."""

    sim: Proc
    server: Proc
    sim_url: str
    address: str
    workdir: Path
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=60.0))
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def channel(self, index: int = 0) -> grpc.aio.Channel:
        """A channel of its own (distinct `grpc.channel_id`: gRPC would otherwise share one connection)."""
        while len(self.channels) <= index:
            self.channels.append(
                grpc.aio.insecure_channel(
                    self.address,
                    options=[
                        ("grpc.channel_id", len(self.channels)),
                        ("grpc.max_receive_message_length", 8 * MIB),
                    ],
                )
            )
        return self.channels[index]

    async def sim_requests(self, key: str) -> int:
        """How many requests the simulator has seen for `key` (e.g. "GET /v1/tasks/{id}")."""
        response = await self.http.get(f"{self.sim_url}/_sim/stats")
        counts: dict[str, int] = response.json()["requests"]
        return counts.get(key, 0)

    async def upstream_task(self, task_id: str) -> dict[str, Any]:
        """The task as Runway (the simulator) describes it, read directly with the API key."""
        response = await self.http.get(
            f"{self.sim_url}/v1/tasks/{task_id}",
            headers={"Authorization": f"Bearer {SIM_KEY}", "X-Runway-Version": "2024-11-06"},
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()
        await self.http.aclose()
        self.server.stop()
        self.sim.stop()


@contextlib.asynccontextmanager
async def stack(
    *,
    pending_seconds: float = 0.05,
    running_seconds: float = 0.2,
    output_size: int = 2 * MIB,
    poll_interval: float = 5.0,
    server_env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="videogen-bench-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sim = _spawn(
        [
            "-m",
            "videogen_server.simulator",
            "--port",
            "0",
            "--api-key",
            SIM_KEY,
            "--pending-seconds",
            str(pending_seconds),
            "--running-seconds",
            str(running_seconds),
            "--output-size",
            str(output_size),
            "--max-concurrency",
            "0",
        ],
        env,
        workdir,
        "simulator",
    )
    server: Proc | None = None
    try:
        sim_url = (await sim.wait_for(r"listening on (http://[\d.]+:\d+)")).group(1)
        grpc_port = _free_port()
        server_vars = {
            "RUNWAYML_API_SECRET": SIM_KEY,
            "RUNWAYML_BASE_URL": sim_url,
            "VIDEOGEN_LISTEN": f"127.0.0.1:{grpc_port}",
            # Metrics stay on, as in production, on a port of their own.
            "VIDEOGEN_METRICS_LISTEN": "127.0.0.1:0",
            "VIDEOGEN_DATA_DIR": str(workdir / "data"),
            "VIDEOGEN_POLL_INTERVAL": str(poll_interval),
            "VIDEOGEN_LOG_LEVEL": "WARNING",
            **(server_env or {}),
        }
        # The listening line is logged at INFO; WARNING keeps per-request lines out of the measurement.
        # BENCH_CPROFILE=1: the server runs under cProfile (its event-loop thread), written on exit.
        profile = (
            ["-m", "cProfile", "-o", str(workdir / "server.cprofile")]
            if os.environ.get("BENCH_CPROFILE")
            else []
        )
        server = _spawn([*profile, "-m", "videogen_server"], {**env, **server_vars}, workdir, "server")
        await _server_port(server, grpc_port)
        s = Stack(sim, server, sim_url, f"127.0.0.1:{grpc_port}", workdir)
        await _wait_serving(s)
    except BaseException:
        if server is not None:
            server.stop()
        sim.stop()
        raise
    profiler = _profile(server.pid, workdir)
    try:
        yield s
    finally:
        await s.close()
        if os.environ.get("BENCH_CPROFILE"):
            print(f"  (cProfile of the server: {workdir / 'server.cprofile'})", flush=True)
        if profiler is not None:
            profiler.wait(30)
            print(f"  (py-spy profile of the server: {workdir / 'server.pyspy'})", flush=True)


def _profile(pid: int, workdir: Path) -> subprocess.Popen[bytes] | None:
    """BENCH_PYSPY=1: record the server with py-spy (collapsed stacks) until it exits. For finding what
    costs; not used by `make bench` (py-spy is not a dependency: `pip install py-spy` to use it)."""
    if not os.environ.get("BENCH_PYSPY"):
        return None
    spy = Path(PYTHON).with_name("py-spy")
    extra = os.environ.get("BENCH_PYSPY_ARGS", "--gil").split()
    out = str(workdir / "server.pyspy")
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "raw",
            *extra,
            "--nonblocking",
            "--output",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _server_port(server: Proc, port: int) -> None:
    """Waits until the server process listens on `port` (read from its sockets in /proc)."""
    until = time.monotonic() + 30
    while time.monotonic() < until:
        if port in _listening_ports(server.pid):
            return
        if server.popen.poll() is not None:
            raise RuntimeError("server exited:\n" + server.log_path.read_text(errors="replace")[-3000:])
        await asyncio.sleep(0.05)
    raise TimeoutError("server did not listen")


def _listening_ports(pid: int) -> list[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):  # gRPC may listen on an IPv4-mapped v6 socket
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                    ports.append(int(parts[1].split(":")[1], 16))
    return ports


async def _wait_serving(s: Stack) -> None:
    call = raw_unary(s.channel(), HEALTH_CHECK)
    until = time.monotonic() + 30
    while True:
        try:
            await call(b"", timeout=2)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > until:
                raise
            await asyncio.sleep(0.1)


# -- calls ---------------------------------------------------------------------------------------------


def raw_unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A unary call on pre-serialized bytes: the client spends nothing on protobuf."""
    return channel.unary_unary(method)


def raw_unary_stream(
    channel: grpc.aio.Channel, method: str
) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
    """A server-streaming call on bytes: messages arrive unparsed."""
    return channel.unary_stream(method)


async def generate(s: Stack, prompt: str = "a paper boat on a rainy street", channel: int = 0) -> str:
    call = s.channel(channel).unary_unary(
        SERVICE + "Generate",
        request_serializer=video_service_pb2.GenerateRequest.SerializeToString,
        response_deserializer=video_service_pb2.GenerateResponse.FromString,
    )
    response = await call(video_service_pb2.GenerateRequest(model="gen4.5", prompt=prompt, seconds=5))
    return str(response.video.id)


async def get_video(s: Stack, video_id: str) -> video_pb2.Video:
    call = s.channel().unary_unary(
        SERVICE + "Get",
        request_serializer=video_service_pb2.GetRequest.SerializeToString,
        response_deserializer=video_service_pb2.GetResponse.FromString,
    )
    response = await call(video_service_pb2.GetRequest(id=video_id))
    return response.video


async def wait_status(s: Stack, video_id: str, status: int, limit: float = 60.0) -> video_pb2.Video:
    until = time.monotonic() + limit
    while True:
        video = await get_video(s, video_id)
        if video.status == status:
            return video
        if time.monotonic() > until:
            raise TimeoutError(f"video {video_id} is {video.status}, not {status}")
        await asyncio.sleep(0.1)


# -- reporting -----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(name: str, figure: str, target: str, met: bool) -> None:
    """The one summary line per target: `BENCH <name>: <figure> | target <target> | MET/MISSED`."""
    line = f"BENCH {name}: {figure} | target {target} | {'MET' if met else 'MISSED'}"
    RESULTS.append(line)
    print(line, flush=True)


def skipped(name: str, reason: str) -> None:
    """A target that cannot be measured yet (e.g. the feature it measures has not landed), and why."""
    line = f"BENCH {name}: not run: {reason} | SKIPPED"
    RESULTS.append(line)
    print(line, flush=True)


def note(text: str) -> None:
    """Supporting figures (not a target line)."""
    line = f"  - {text}"
    RESULTS.append(line)
    print(line, flush=True)


def dump_results(path: Path) -> None:
    path.write_text(json.dumps(RESULTS, indent=1))
