"""`make run-replicas`: N replicas of the service on one local Redis, until Ctrl-C.

Starts, in order: a `redis-server` (Debian's package) with the append-only file fsynced on every write,
its data under `<data dir>/redis/`, on 127.0.0.1:`--redis-port`; one standalone Runway simulator on
127.0.0.1:`--sim-port` (unless RUNWAYML_API_SECRET is set: then every replica calls real Runway); then N
replicas (`python -m videogen_server`) on 127.0.0.1:`--port`, `--port`+1, ... with /metrics on
`--metrics-port`, +1, ..., all with VIDEOGEN_STORE=redis://127.0.0.1:<redis port>/0. One simulator for
all of them: a per-replica built-in one would not know the tasks another replica created.

Prints how to reach them, then waits. SIGINT or SIGTERM (Ctrl-C) stops the replicas (SIGTERM: their
graceful shutdown), then the simulator, then Redis, and exits 0. A child that dies on its own stops
everything too (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

STOP_TIMEOUT_S = 20.0  # per child, after SIGTERM; then SIGKILL
START_TIMEOUT_S = 30.0


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tools/run_replicas.py", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--replicas", type=int, default=env_int("N", 3), help="how many (default $N or 3)")
    p.add_argument("--port", type=int, default=env_int("PORT", 50051), help="first gRPC port (default 50051)")
    p.add_argument(
        "--metrics-port", type=int, default=env_int("METRICS_PORT", 9464), help="first /metrics port"
    )
    p.add_argument(
        "--redis-port", type=int, default=env_int("REDIS_PORT", 6379), help="default $REDIS_PORT or 6379"
    )
    p.add_argument("--sim-port", type=int, default=env_int("SIM_PORT", 8089), help="the simulator's port")
    p.add_argument("--data-dir", type=Path, default=Path(".videogen"), help="Redis data in <dir>/redis/")
    args = p.parse_args(argv)
    if args.replicas < 1:
        p.error("--replicas must be at least 1")
    return args


class Child:
    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc

    async def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            print(
                f"run-replicas: {self.name} did not stop within {STOP_TIMEOUT_S:g}s: killed", file=sys.stderr
            )
            self.proc.kill()
            await self.proc.wait()


async def spawn(name: str, *argv: str, env: dict[str, str] | None = None) -> Child:
    # A session of its own: the terminal's Ctrl-C reaches this script only, which stops the children in order.
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
    )
    return Child(name, proc)


class Interrupted(Exception):
    pass


async def wait_port(child: Child, port: int, stop: asyncio.Event, *, ping: bool = False) -> None:
    """Until 127.0.0.1:`port` accepts a connection (and, `ping`, answers a Redis PING with PONG)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + START_TIMEOUT_S
    while True:
        if stop.is_set():
            raise Interrupted
        if child.proc.returncode is not None:
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}) while starting")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                if not ping:
                    return
                writer.write(b"PING\r\n")
                if (await asyncio.wait_for(reader.readline(), 1)).startswith(b"+PONG"):
                    return
            finally:
                writer.close()
        except (OSError, TimeoutError):
            pass
        if loop.time() > end:
            raise RuntimeError(f"{child.name} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S:g}s")
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> int:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("run-replicas: redis-server not found: apt-get install redis-server (Debian)", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children: list[Child] = []  # in start order; stopped in reverse
    try:
        redis_dir = (args.data_dir / "redis").resolve()
        redis_dir.mkdir(parents=True, exist_ok=True)
        redis = await spawn(
            "redis-server",
            redis_server,
            "--port", str(args.redis_port),
            "--bind", "127.0.0.1",
            "--dir", str(redis_dir),
            "--appendonly", "yes",
            "--appendfsync", "always",  # "returned" means "on disk" (README, "Redis store")
            "--save", "",
            "--daemonize", "no",
        )  # fmt: skip
        children.append(redis)
        await wait_port(redis, args.redis_port, stop, ping=True)
        store = f"redis://127.0.0.1:{args.redis_port}/0"

        env = dict(os.environ, VIDEOGEN_STORE=store)
        if os.environ.get("RUNWAYML_API_SECRET"):
            upstream = "Runway (RUNWAYML_API_SECRET)"
        else:
            sim = await spawn(
                "simulator",
                sys.executable, "-m", "videogen_server.simulator",
                "--host", "127.0.0.1", "--port", str(args.sim_port), "--api-key", "key_sim",
            )  # fmt: skip
            children.append(sim)
            await wait_port(sim, args.sim_port, stop)
            env.update(RUNWAYML_API_SECRET="key_sim", RUNWAYML_BASE_URL=f"http://127.0.0.1:{args.sim_port}")
            upstream = f"one Runway simulator at http://127.0.0.1:{args.sim_port}"

        ports = [args.port + i for i in range(args.replicas)]
        replicas = []
        for i, port in enumerate(ports):
            replica_env = dict(
                env,
                VIDEOGEN_LISTEN=f"127.0.0.1:{port}",
                VIDEOGEN_METRICS_LISTEN=f"127.0.0.1:{args.metrics_port + i}",
                VIDEOGEN_DATA_DIR=str((args.data_dir / f"replica-{i + 1}").resolve()),
            )
            child = await spawn(f"replica {i + 1}", sys.executable, "-m", "videogen_server", env=replica_env)
            children.append(child)
            replicas.append(child)
        for child, port in zip(replicas, ports, strict=True):
            await wait_port(child, port, stop)

        target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)
        lines = [
            f"run-replicas: {args.replicas} replicas on {store} (AOF on, data in {redis_dir})",
            f"  upstream: {upstream}",
            *(
                f"  replica {i + 1}: 127.0.0.1:{p}  metrics http://127.0.0.1:{args.metrics_port + i}/metrics"
                for i, p in enumerate(ports)
            ),
            f'  all of them (round_robin): .venv/bin/videogen --target "{target}" models',
            "  Ctrl-C stops everything",
        ]
        print("\n".join(lines), flush=True)

        waits = [asyncio.create_task(c.proc.wait()) for c in children]
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopping, *waits], return_when=asyncio.FIRST_COMPLETED)
        for task in (stopping, *waits):
            task.cancel()
        if stopping in done:
            return 0
        dead = next(c for c in children if c.proc.returncode is not None)
        print(
            f"run-replicas: {dead.name} exited ({dead.proc.returncode}): stopping everything", file=sys.stderr
        )
        return 1
    except Interrupted:
        return 0
    except RuntimeError as exc:
        print(f"run-replicas: {exc}", file=sys.stderr)
        return 1
    finally:
        # The replicas first (together: each gets its own graceful shutdown), then the simulator, then Redis.
        head = [c for c in children if c.name.startswith("replica")]
        await asyncio.gather(*(c.stop() for c in head))
        for child in reversed([c for c in children if c not in head]):
            await child.stop()
        print("run-replicas: stopped", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
