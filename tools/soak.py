"""Soak: mixed load against the real server (a child process) and the Runway simulator with upstream faults.

`make soak` runs it for 10 minutes; `--minutes 2` for a short run. It reports the server's RSS and open file
descriptors at the start and the end, what every operation returned, and the errors by code and reason. An
error the fault plan does not explain (anything but UNAVAILABLE, DEADLINE_EXCEEDED and the expected
FAILED_PRECONDITIONs), a corrupt download or a short download that ended OK fails the run (exit 1).
Everything is on loopback; every loop is bounded by the run's end time and every RPC by a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from videogen.v1 import video_pb2, video_service_pb2_grpc
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator import RunwaySimulator, SimulatorConfig

TERMINAL = {video_pb2.VIDEO_STATUS_COMPLETED, video_pb2.VIDEO_STATUS_FAILED, video_pb2.VIDEO_STATUS_CANCELLED}
# Each entry is one fault the injector may queue (the simulator's POST /_sim/faults body).
FAULT_PLAN: list[dict[str, Any]] = [
    {"route": "get_task", "kind": "status", "status": 503, "count": 3},
    {"route": "get_task", "kind": "status", "status": 502, "count": 2},
    {"route": "get_task", "kind": "status", "status": 429, "retry_after": 0.5, "count": 2},
    {"route": "get_task", "kind": "status", "status": 429, "count": 2},
    {"route": "get_task", "kind": "reset", "count": 2},
    {"route": "get_task", "kind": "malformed_json", "count": 2},
    {"route": "get_task", "kind": "slow", "delay": 1.5},
    {"route": "output", "kind": "cut_body", "cut_after": 300_000},
    {"route": "output", "kind": "expired_url"},
    {"route": "output", "kind": "status", "status": 503, "count": 2},
    {"route": "output", "kind": "reset"},
    {"route": "create", "kind": "status", "status": 429, "count": 1},
    {"route": "create", "kind": "status", "status": 503},
    {"route": "create", "kind": "reset_after_create"},
    {"route": "delete", "kind": "status", "status": 503, "count": 2},
]
# Errors the plan explains: (code, reason) pairs; reason "*" matches any.
EXPLAINED = {
    ("UNAVAILABLE", "*"),
    ("DEADLINE_EXCEEDED", "*"),
    ("FAILED_PRECONDITION", "VIDEO_ALREADY_FINISHED"),  # Cancel raced the end of the task
    ("FAILED_PRECONDITION", "VIDEO_NOT_COMPLETED"),  # StreamContent of a video that failed/was cancelled
    ("FAILED_PRECONDITION", "VIDEO_CREATING"),
    ("FAILED_PRECONDITION", "VIDEO_OUTPUT_GONE"),  # a Cancel raced the end: Runway deleted the output
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


@dataclass
class Tally:
    ok: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (op, code, reason)
    problems: list[str] = field(default_factory=list)  # corrupt or short downloads
    faults_injected: Counter[str] = field(default_factory=Counter)

    def error(self, op: str, err: grpc.aio.AioRpcError) -> None:
        self.errors[(op, err.code().name, reason_of(err))] += 1

    def unexplained(self) -> int:
        bad = sum(
            n
            for (_, code, reason), n in self.errors.items()
            if (code, "*") not in EXPLAINED and (code, reason) not in EXPLAINED
        )
        return bad + len(self.problems)


class Load:
    def __init__(
        self, stub: video_service_pb2_grpc.VideoServiceAsyncStub, sim: RunwaySimulator, end: float
    ) -> None:
        self.stub = stub
        self.sim = sim
        self.end = end
        self.tally = Tally()
        self.videos: list[str] = []
        self.completed: dict[str, str] = {}  # video id -> upstream task id
        self.rng = random.Random(7)

    async def worker(self) -> None:
        ops = [self.generate] * 3 + [self.get] * 3 + [self.watch] * 2 + [self.stream] * 2 + [self.cancel]
        while time.monotonic() < self.end:
            op = self.rng.choice(ops) if self.videos else self.generate
            try:
                await op()
            except grpc.aio.AioRpcError as err:
                self.tally.error(op.__name__, err)

    async def generate(self) -> None:
        rid = f"soak-{self.rng.randrange(1 << 40)}" if self.rng.random() < 0.5 else ""
        req = pb.GenerateRequest(model="gen4.5", prompt="a soak test", seconds=5, request_id=rid)
        if self.rng.random() < 0.05:
            req.prompt = "a soak test [sim:fail=SAFETY.INPUT.TEXT]"
        video = (await self.stub.Generate(req, timeout=20)).video
        self.videos.append(video.id)
        del self.videos[:-500]  # bounded
        self.tally.ok["generate"] += 1

    async def get(self) -> None:
        video = (await self.stub.Get(pb.GetRequest(id=self.rng.choice(self.videos)), timeout=10)).video
        if video.status == video_pb2.VIDEO_STATUS_COMPLETED:
            self.completed[video.id] = video.upstream_task_id
        self.tally.ok["get"] += 1

    async def watch(self) -> None:
        last = None
        async for update in self.stub.WatchStatus(
            pb.WatchStatusRequest(id=self.rng.choice(self.videos[-20:])), timeout=30
        ):
            last = update.video
        if last is None or last.status not in TERMINAL:
            self.tally.problems.append("WatchStatus ended OK before a terminal state")
            return
        if last.status == video_pb2.VIDEO_STATUS_COMPLETED:
            self.completed[last.id] = last.upstream_task_id
        self.tally.ok["watch"] += 1

    async def stream(self) -> None:
        if not self.completed:
            return
        video_id = self.rng.choice(list(self.completed))
        offset = self.rng.choice([0, 0, 12345])
        data = bytearray()
        async for msg in self.stub.StreamContent(
            pb.StreamContentRequest(id=video_id, offset=offset), timeout=30
        ):
            data += msg.data
        try:
            expected = self.sim.output_bytes(self.completed[video_id])[offset:]
        except KeyError:
            return  # deleted at the simulator since
        if bytes(data) != expected:
            what = "short" if expected.startswith(bytes(data)) else "corrupt"
            self.tally.problems.append(f"{what} download ended OK ({len(data)} of {len(expected)} bytes)")
            return
        self.tally.ok["stream"] += 1

    async def cancel(self) -> None:
        await self.stub.Cancel(pb.CancelRequest(id=self.rng.choice(self.videos[-10:])), timeout=10)
        self.tally.ok["cancel"] += 1

    async def inject_faults(self, base_url: str, every: float) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
            while time.monotonic() < self.end:
                fault = self.rng.choice(FAULT_PLAN)
                response = await http.post("/_sim/faults", json=fault)
                response.raise_for_status()
                self.tally.faults_injected[f"{fault['route']}:{fault['kind']}:{fault.get('status', '')}"] += 1
                await asyncio.sleep(every)


async def wait_serving(address: str, proc: subprocess.Popen[bytes]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):  # 30 s at most
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("server did not become SERVING")


async def soak(minutes: float, concurrency: int, fault_every: float) -> int:
    sim = RunwaySimulator(
        api_key="key_soak_" + os.urandom(8).hex(),
        config=SimulatorConfig(
            pending_seconds=0.2, running_seconds=1.5, max_concurrency=None, output_size=1024 * 1024
        ),
    )
    base_url = await sim.start(host="127.0.0.1", port=0)
    port = free_port()
    address = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="videogen-soak-") as tmp:
        env = {
            **os.environ,
            "VIDEOGEN_LISTEN": address,
            "VIDEOGEN_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "VIDEOGEN_DATA_DIR": str(Path(tmp) / "data"),
            "RUNWAYML_API_SECRET": sim.api_key,
            "RUNWAYML_BASE_URL": base_url,
            "VIDEOGEN_POLL_INTERVAL": "0.5",
            "VIDEOGEN_SHUTDOWN_GRACE": "2",
            "VIDEOGEN_LOG_LEVEL": "WARNING",
        }
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            proc = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "videogen_server"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            await wait_serving(address, proc)
            async with grpc.aio.insecure_channel(address) as channel:
                stub: video_service_pb2_grpc.VideoServiceAsyncStub = video_service_pb2_grpc.VideoServiceStub(
                    channel
                )
                # A short warm-up so "start" measures a running service, not an idle one.
                warm = Load(stub, sim, time.monotonic() + 10)
                await asyncio.gather(*(warm.worker() for _ in range(concurrency)))
                start_rss, start_fds = rss_kib(proc.pid), open_fds(proc.pid)
                started = time.monotonic()
                load = Load(stub, sim, started + minutes * 60)
                samples: list[tuple[float, int, int]] = []

                async def sample() -> None:
                    while time.monotonic() < load.end:
                        await asyncio.sleep(min(30.0, max(1.0, load.end - time.monotonic())))
                        samples.append((time.monotonic() - started, rss_kib(proc.pid), open_fds(proc.pid)))

                await asyncio.gather(
                    sample(),
                    load.inject_faults(base_url, fault_every),
                    *(load.worker() for _ in range(concurrency)),
                )
                await asyncio.sleep(3)  # let pollers and streams settle
                sim.faults.clear()
                end_rss, end_fds = rss_kib(proc.pid), open_fds(proc.pid)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            await sim.stop()
        log_text = log_path.read_text(errors="replace")

    tally = load.tally
    print(f"soak: {minutes:g} min, {concurrency} workers, a fault every {fault_every:g}s")
    print(f"server RSS  start {start_rss / 1024:.1f} MiB  end {end_rss / 1024:.1f} MiB")
    print(f"server fds  start {start_fds}  end {end_fds}")
    for t, rss, fds in samples:
        print(f"  t={t:6.0f}s  rss {rss / 1024:6.1f} MiB  fds {fds}")
    print("ok by operation: " + ", ".join(f"{op} {n}" for op, n in sorted(tally.ok.items())))
    print(f"faults injected: {sum(tally.faults_injected.values())}")
    for name, n in sorted(tally.faults_injected.items()):
        print(f"  {name:40s} {n}")
    print("errors by code:")
    for (op, code, reason), n in sorted(tally.errors.items()):
        explained = (code, "*") in EXPLAINED or (code, reason) in EXPLAINED
        print(f"  {op:9s} {code:20s} {reason:28s} {n:6d}{'' if explained else '  UNEXPLAINED'}")
    for problem in sorted(set(tally.problems)):
        print(f"  PROBLEM: {problem}")
    tracebacks = log_text.count("Traceback")
    print(f"server log: {tracebacks} tracebacks, exit code {proc.returncode}")
    bad = tally.unexplained() + tracebacks
    print("result: " + ("OK" if bad == 0 else f"{bad} unexplained errors"))
    return 0 if bad == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the measured run")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent client workers")
    parser.add_argument("--fault-every", type=float, default=0.5, help="seconds between injected faults")
    args = parser.parse_args()
    if args.minutes <= 0 or args.concurrency < 1 or args.fault_every <= 0:
        parser.error("--minutes and --fault-every must be positive, --concurrency at least 1")
    raise SystemExit(asyncio.run(soak(args.minutes, args.concurrency, args.fault_every)))


if __name__ == "__main__":
    main()
