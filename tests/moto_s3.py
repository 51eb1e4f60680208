"""A real S3-protocol HTTP server for the archive's s3:// tests: moto's `ThreadedMotoServer`, on a free
loopback port, in a child process of its own.

A child process, not a thread of the test process: the tests measure the client's memory (moto keeps what it
is sent in memory, and would be counted), and "the S3 server stopped" is then a real dead port (SIGKILL),
not a shutdown the client could be told about. No S3 service is reachable here: moto's S3 is what the s3://
path is tested against (README: "S3 itself is untested here").
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# The child prints its port once listening (port 0: the kernel picks a free one, no race), then serves until
# killed or until its stdin closes (the test process died).
_CHILD = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""

ACCESS_KEY = "AKIAVIDEOGENTEST0000"
SECRET_KEY = "videogen-moto-secret-not-for-logs"
REGION = "us-east-1"


class MotoS3:
    """One moto S3 server; `env()` is the AWS_* environment that points a client at it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # until the child prints its port (or dies: b"")
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"moto's S3 server did not start: {line!r}")
        self.port = int(line)

    def create_bucket(self, bucket: str) -> None:
        """A plain S3 CreateBucket (PUT /bucket; moto does not check signatures by default)."""
        request = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.status

    def multipart_uploads(self, bucket: str) -> bytes:
        """ListMultipartUploads' XML: an aborted upload is no longer in it."""
        with urllib.request.urlopen(f"{self.endpoint}/{bucket}?uploads", timeout=10) as response:
            body: bytes = response.read()
            return body

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def aws_env(values: dict[str, str]) -> Iterator[None]:
    """Set the AWS_* variables obstore reads when an S3 store is built (`ObjectStoreArchive.open`)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT"):
            patch.delenv(name, raising=False)
        for name, value in values.items():
            patch.setenv(name, value)
        yield


def require_moto() -> None:
    try:
        import moto.server  # noqa: F401
    except ImportError:  # pragma: no cover - moto[server] is in the dev extra
        if os.environ.get("CI"):
            pytest.fail("moto[server] is not installed (make install)")
        pytest.skip("moto[server] is not installed (make install)")
