"""`make run-replicas` (tools/run_replicas.py) with N=2 on free ports: a real redis-server, one standalone
simulator and two real server processes. A video made on one address is found on the other; the Python
client with the README's target (`ipv4:a,b`) spreads its calls over both; SIGINT stops every child."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
from redis_server import require_redis_server
from videogen.v1 import video_service_pb2 as pb
from videogen.v1 import video_service_pb2_grpc
from videogen_client import VideoClient

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "run_replicas.py"
READY = "Ctrl-C stops everything"


def free_run(count: int) -> int:
    """A base port with `count` consecutive free loopback ports."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base: int = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            socks = []
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no run of free ports")


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def started_calls(metrics_port: int, method: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_server_started_total{") and f'grpc_method="{method}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_run_replicas_two_replicas_share_redis_and_stop_on_sigint(tmp_path: Path) -> None:
    require_redis_server()
    port, metrics, redis_port, sim_port = free_run(2), free_run(2), free_run(1), free_run(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNWAYML_", "VIDEOGEN_"))}
    log_path = tmp_path / "run.log"
    argv = [sys.executable, str(TOOL), "-n", "2", "--port", str(port), "--metrics-port", str(metrics)]
    argv += ["--redis-port", str(redis_port), "--sim-port", str(sim_port), "--data-dir", str(tmp_path / "d")]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while READY not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.05)
        out = log_path.read_text(errors="replace")
        target = f"ipv4:127.0.0.1:{port},127.0.0.1:{port + 1}"
        assert target in out and f"redis://127.0.0.1:{redis_port}/0" in out
        kids = children_of(proc.pid)
        assert len(kids) == 4, kids  # redis-server, the simulator, two replicas
        assert (tmp_path / "d" / "redis" / "appendonlydir").is_dir()  # AOF on, under the data dir

        # Generate on one address, Get on the other.
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as one,
            grpc.insecure_channel(f"127.0.0.1:{port + 1}") as two,
        ):
            made = video_service_pb2_grpc.VideoServiceStub(one).Generate(
                pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5), timeout=10
            )
            got = video_service_pb2_grpc.VideoServiceStub(two).Get(
                pb.GetRequest(id=made.video.id), timeout=10
            )
        assert got.video.id == made.video.id and got.video.prompt == "a boat"

        # The README's client recipe: one client, both replicas (round_robin).
        with VideoClient(target) as client:
            for _ in range(10):
                assert client.get(made.video.id, timeout=10).id == made.video.id
        per_replica = [started_calls(metrics + i, "Get") for i in range(2)]
        assert sum(per_replica) == 11 and min(per_replica) >= 2, per_replica

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log_path.read_text(errors="replace")
        assert "run-replicas: stopped" in log_path.read_text(errors="replace")
        assert not [pid for pid in kids if alive(pid)]
    finally:  # a failed test leaves nothing running (the children have sessions of their own)
        if proc.poll() is None:
            kids = kids or children_of(proc.pid)
            proc.kill()
            proc.wait()
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
