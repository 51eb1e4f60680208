"""A fleet of real processes for the replica tests and benchmarks: one real `redis-server` (the caller's
`RedisServer`, append-only file fsynced on every write), ONE standalone Runway simulator process
(`python -m videogen_server.simulator`) that every replica calls, and N server processes
(`python -m videogen_server`) with VIDEOGEN_STORE on that Redis. One simulator for all replicas, as
`make run-replicas` does: a per-replica built-in one would not know the tasks another replica created.

Replicas can be stopped (SIGKILL: a crash; SIGTERM: a graceful shutdown) and started again on their data
directory. Upstream traffic is read from the simulator's `/_sim/stats` request counters; `GetSampler`
samples the task-GET counter in the background, which gives the times of upstream polls to within the
sampling period (the simulator keeps counts, not timestamps).

Used by tests/faults/test_replica_faults.py and by bench/replicas.py (which puts tests/ on its path: the
benchmarks run from a checkout, like the tests; neither is shipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from faults.server_process import ServerProcess, free_port
from redis_server import RedisServer

TASK_GET = "GET /v1/tasks/{id}"
TASK_POST = "POST /v1/text_to_video"
# The lease key of a video (issue 10: "a key with a short expiry, renewed by its holder"), under the Redis
# store's default prefix; its value is the holder's instance.
LEASE_KEY = "videogen:lease:{id}"
MIB = 1024 * 1024


@dataclass(frozen=True)
class FleetSettings:
    replicas: int = 3
    poll_interval: float = 0.5
    lease_ttl: float = 2.0
    # The simulator: every task is PENDING for `pending_seconds`, then RUNNING for `running_seconds` with its
    # progress rising, then SUCCEEDED. No concurrency cap (every task runs at once).
    pending_seconds: float = 0.05
    running_seconds: float = 600.0
    output_size: int = MIB
    api_keys: str = ""
    shutdown_grace: float = 2.0
    log_level: str = "INFO"
    extra_env: dict[str, str] = field(default_factory=dict)


class Simulator:
    """The standalone simulator process and its admin routes."""

    def __init__(self, workdir: Path, settings: FleetSettings) -> None:
        self.api_key = "key_fleet_" + uuid.uuid4().hex
        self.log_path = workdir / "simulator.log"
        self._args = [
            sys.executable,
            "-m",
            "videogen_server.simulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-key",
            self.api_key,
            "--pending-seconds",
            str(settings.pending_seconds),
            "--running-seconds",
            str(settings.running_seconds),
            "--output-size",
            str(settings.output_size),
            "--max-concurrency",
            "0",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.http = httpx.AsyncClient(timeout=30.0)

    async def start(self, limit: float = 30.0) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.to_thread(
                subprocess.Popen,
                self._args,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        pattern = re.compile(r"listening on (http://[\d.]+:\d+)")
        async with asyncio.timeout(limit):
            while True:
                m = pattern.search(self.log_path.read_text(errors="replace"))
                if m is not None:
                    self.url = m.group(1)
                    return
                if self.proc.poll() is not None:
                    raise AssertionError(f"simulator exited: {self.log_path.read_text(errors='replace')}")
                await asyncio.sleep(0.05)

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get(f"{self.url}/_sim/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def count(self, key: str) -> int:
        """How many requests the simulator has answered for `key` ("GET /v1/tasks/{id}", ...)."""
        counts: dict[str, int] = (await self.stats())["requests"]
        return counts.get(key, 0)

    async def gets(self) -> int:
        return await self.count(TASK_GET)

    async def posts(self) -> int:
        return await self.count(TASK_POST)

    async def add_faults(self, faults: Sequence[dict[str, Any]]) -> None:
        (await self.http.post(f"{self.url}/_sim/faults", json=list(faults))).raise_for_status()

    async def task(self, task_id: str) -> dict[str, Any]:
        """The task as Runway (the simulator) describes it (one more GET in the counters)."""
        response = await self.http.get(
            f"{self.url}/v1/tasks/{task_id}",
            headers={"Authorization": f"Bearer {self.api_key}", "X-Runway-Version": "2024-11-06"},
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def stop(self) -> None:
        await self.http.aclose()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)


class GetSampler:
    """Samples a simulator counter every `period` seconds: `(monotonic time, count)` pairs. A request
    counted between two samples is dated at the later one (so every time is late by at most `period`)."""

    def __init__(self, sim: Simulator, key: str = TASK_GET, period: float = 0.05) -> None:
        self.sim = sim
        self.key = key
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> GetSampler:
        self.samples.append((time.monotonic(), await self.sim.count(self.key)))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            self.samples.append((time.monotonic(), await self.sim.count(self.key)))

    def request_times(self, start: float = float("-inf"), end: float = float("inf")) -> list[float]:
        """One time per request counted, within [start, end]."""
        out: list[float] = []
        for (_, before), (at, after) in zip(self.samples, self.samples[1:], strict=False):
            if start <= at <= end:
                out.extend([at] * (after - before))
        return out

    def count_between(self, start: float, end: float) -> int:
        return len(self.request_times(start, end))

    def first_after(self, moment: float) -> float | None:
        times = self.request_times(moment)
        return times[0] if times else None

    def largest_gap(self, start: float, end: float) -> float:
        """The longest stretch in [start, end] without a request (start and end count as bounds)."""
        times = [start, *self.request_times(start, end), end]
        return max(b - a for a, b in itertools.pairwise(times))


@dataclass
class Replica:
    index: int
    env: dict[str, str]
    data_dir: Path
    process: ServerProcess | None = None

    @property
    def running(self) -> ServerProcess:
        assert self.process is not None, f"replica {self.index} is not running"
        return self.process

    @property
    def stub(self) -> Any:
        return self.running.stub


class Fleet:
    """N replicas on one Redis and one simulator. Use `open_fleet`."""

    def __init__(self, workdir: Path, redis: RedisServer, settings: FleetSettings) -> None:
        self.workdir = workdir
        self.redis = redis
        self.settings = settings
        self.sim = Simulator(workdir, settings)
        self.replicas: list[Replica] = []

    def _env(self, index: int) -> dict[str, str]:
        s = self.settings
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "VIDEOGEN_STORE": self.redis.url,
            "VIDEOGEN_LISTEN": f"127.0.0.1:{free_port()}",
            "VIDEOGEN_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "VIDEOGEN_DATA_DIR": str(self.workdir / f"replica-{index}"),
            "RUNWAYML_API_SECRET": self.sim.api_key,
            "RUNWAYML_BASE_URL": self.sim.url,
            "VIDEOGEN_POLL_INTERVAL": str(s.poll_interval),
            "VIDEOGEN_LEASE_TTL": str(s.lease_ttl),
            "VIDEOGEN_SHUTDOWN_GRACE": str(s.shutdown_grace),
            "VIDEOGEN_LOG_LEVEL": s.log_level,
            **s.extra_env,
        }
        if s.api_keys:
            env["VIDEOGEN_API_KEYS"] = s.api_keys
        return env

    async def start(self) -> None:
        await self.sim.start()
        self.replicas = [
            Replica(i, self._env(i), self.workdir / f"replica-{i}") for i in range(self.settings.replicas)
        ]
        # Started together: each takes a second or two to import and come up.
        await asyncio.gather(*(self.start_replica(i) for i in range(len(self.replicas))))

    async def start_replica(self, index: int, limit: float = 60.0) -> ServerProcess:
        """Start replica `index` (again: same address, same data directory) and wait for SERVING."""
        replica = self.replicas[index]
        assert replica.process is None or replica.process.proc.poll() is not None
        await asyncio.to_thread(replica.data_dir.mkdir, parents=True, exist_ok=True)
        log_path = self.workdir / f"replica-{index}.log"
        with log_path.open("ab") as log:
            proc = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "videogen_server"],
                env=replica.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if replica.process is not None:
            await replica.process.channel.close()
        replica.process = ServerProcess(proc, replica.env["VIDEOGEN_LISTEN"], log_path)
        await replica.process.wait_serving(limit)
        return replica.process

    def kill(self, index: int) -> None:
        """SIGKILL replica `index`: no shutdown code runs, its leases are simply left to expire."""
        self.replicas[index].running.kill()

    def terminate(self, index: int) -> None:
        """SIGTERM replica `index`: its graceful shutdown (which hands its leases on)."""
        proc = self.replicas[index].running.proc
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)

    async def lease_holder(self, video_id: str) -> int | None:
        """The index of the replica whose instance holds `video_id`'s lease in Redis, when the lease exists
        and a replica's log names that instance; None otherwise."""
        client = aioredis.Redis.from_url(self.redis.url)
        try:
            value = await client.get(LEASE_KEY.format(id=video_id))
        finally:
            await client.aclose()
        if not value:
            return None
        instance = value.decode(errors="replace")
        for replica in self.replicas:
            if replica.process is not None and instance in replica.process.output():
                return replica.index
        return None

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.process is not None:
                await replica.process.close()
        await self.sim.stop()

    def logs(self) -> str:
        """The end of every replica's log without the access lines, for an assertion message."""
        parts = []
        for replica in self.replicas:
            if replica.process is not None:
                lines = [
                    line
                    for line in replica.process.output().splitlines()
                    if "videogen_server.access" not in line
                ]
                parts.append(f"--- replica {replica.index}\n" + "\n".join(lines[-30:]))
        return "\n".join(parts)


@contextlib.asynccontextmanager
async def open_fleet(
    workdir: Path, redis: RedisServer, settings: FleetSettings | None = None
) -> AsyncIterator[Fleet]:
    """A started fleet on `redis` (already started); everything it started is stopped on exit."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    fleet = Fleet(workdir, redis, settings or FleetSettings())
    try:
        await fleet.start()
        yield fleet
    finally:
        await fleet.close()
