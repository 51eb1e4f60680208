"""A real `redis-server` process for the tests (never a mock): on a free loopback port, its data in a
directory of its own, with the durability the service needs (append-only file, fsync on every write; no RDB
snapshots). Tests may stop it (SIGKILL: a crash) and start it again on the same directory.

Without `redis-server` the tests that need it are skipped, except in CI (`CI` set), where they fail:
`.ci/run` installs it (Debian's redis-server package)."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REDIS_SERVER = "redis-server"


def require_redis_server() -> str:
    """The path of redis-server; the test is skipped without it (failed in CI)."""
    path = shutil.which(REDIS_SERVER)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                "redis-server is not installed: .ci/run must install it (apt-get install redis-server)"
            )
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server on 127.0.0.1:`port` with its data in `directory`."""

    def __init__(self, directory: Path, port: int | None = None, *, appendonly: bool = True) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, limit: float = 10.0) -> None:
        binary = require_redis_server()
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + limit
        while not self.ping():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited ({self.proc.returncode}): {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not answer within {limit}s: {self.log()}")
            time.sleep(0.02)

    def ping(self) -> bool:
        """True when the server answers PING with PONG (and has loaded its data)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: a crash; what Redis acknowledged must be in its append-only file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(
                signal.SIGCONT
            )  # a test that stopped it (SIGSTOP) may have failed meanwhile
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


_shared: RedisServer | None = None


def shared_redis() -> RedisServer:
    """One redis-server for the whole test run, started on first use, stopped when the run ends. Stores on
    it keep apart by key prefix (`unique_prefix`)."""
    global _shared
    if _shared is None or _shared.proc is None or _shared.proc.poll() is not None:
        server = RedisServer(Path(tempfile.mkdtemp(prefix="videogen-redis-")))
        server.start()
        atexit.register(_stop_and_remove, server)
        _shared = server
    return _shared


def _stop_and_remove(server: RedisServer) -> None:
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"
