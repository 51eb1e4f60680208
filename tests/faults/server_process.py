"""The real service as a child process (`python -m videogen_server`), pointed at a simulator that runs in the
test process, so tests can SIGKILL or SIGTERM it and start it again on the same data directory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from videogen.v1 import video_service_pb2_grpc
from videogen_server.simulator import RunwaySimulator

SERVICE = "videogen.v1.VideoService"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """One run of the server. `log` collects its stderr (read after it exits)."""

    proc: subprocess.Popen[bytes]
    address: str
    log_path: Path
    channel: grpc.aio.Channel = field(init=False)
    stub: video_service_pb2_grpc.VideoServiceAsyncStub = field(init=False)
    health: health_pb2_grpc.HealthStub = field(init=False)

    def __post_init__(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = video_service_pb2_grpc.VideoServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def wait_serving(self, limit: float = 30.0) -> None:
        """Until health answers SERVING (bounded: the process must come up within `limit` seconds)."""
        async with asyncio.timeout(limit):
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited early ({self.proc.returncode}): {self.output()}")
                try:
                    reply = await self.health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)

    async def wait_exit(self, limit: float = 30.0) -> int:
        async with asyncio.timeout(limit):
            while self.proc.poll() is None:  # noqa: ASYNC110 - a child process, no event to wait on
                await asyncio.sleep(0.05)
        return self.proc.returncode

    async def close(self) -> None:
        await self.channel.close()
        self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def start_process(
    data_dir: Path,
    simulator: RunwaySimulator,
    *,
    poll_interval: float = 0.1,
    grace: float = 1.0,
    extra_env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start the server on a free loopback port against `simulator` (already started) and wait for SERVING."""
    port = free_port()
    env = {
        **os.environ,
        "VIDEOGEN_LISTEN": f"127.0.0.1:{port}",
        "VIDEOGEN_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "VIDEOGEN_DATA_DIR": str(data_dir),
        "RUNWAYML_API_SECRET": simulator.api_key,
        "RUNWAYML_BASE_URL": simulator.base_url,
        "VIDEOGEN_POLL_INTERVAL": str(poll_interval),
        "VIDEOGEN_SHUTDOWN_GRACE": str(grace),
        "VIDEOGEN_LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "videogen_server"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, f"127.0.0.1:{port}", log_path)
    try:
        await server.wait_serving()
    except BaseException:
        await server.close()
        raise
    return server


async def run_to_exit(env: dict[str, str], *, limit: float = 30.0) -> tuple[int, str]:
    """Run `python -m videogen_server` with `env` over this process's environment (without a Runway key: the
    built-in simulator) until it exits by itself; its exit code and its output (stdout and stderr)."""
    full = {k: v for k, v in os.environ.items() if k != "RUNWAYML_API_SECRET"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "videogen_server",
        env={**full, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"the server did not exit within {limit:g}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")
