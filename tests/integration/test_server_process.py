"""The server as a process (`python -m videogen_server`) where a new user meets it first (issue 13): a port
another process already holds, and a tracing endpoint where nothing listens."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from faults.server_process import free_port, run_to_exit, start_process
from rpc_helpers import expect_error
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator import RunwaySimulator

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")


@contextmanager
def held_port() -> Iterator[str]:
    """A loopback address another process's listening socket holds (as a second server would find it)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def not_info(output: str) -> list[str]:
    """The lines of a run's output that are not INFO log lines: errors, warnings, tracebacks, grpc's own."""
    return [line for line in output.splitlines() if " INFO " not in line]


@pytest.mark.parametrize("variable", ["VIDEOGEN_LISTEN", "VIDEOGEN_METRICS_LISTEN"])
async def test_a_taken_port_is_one_configuration_error_line_and_exit_2(tmp_path: Path, variable: str):
    with held_port() as taken:
        env = {
            "VIDEOGEN_LISTEN": "127.0.0.1:0",
            "VIDEOGEN_METRICS_LISTEN": "127.0.0.1:0",
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
            "VIDEOGEN_LOG_LEVEL": "INFO",
            variable: taken,
        }
        code, output = await run_to_exit(env)
    assert code == 2, output
    # One line says what and where; nothing else but INFO lines: no traceback, no grpc log line, no
    # "Task was destroyed" or unclosed-resource warning from what had started before (the simulator).
    (line,) = not_info(output)
    assert f"configuration error: {variable}={taken}" in line, output
    assert "Traceback" not in output


async def test_sigterm_with_a_dead_otlp_endpoint_exits_within_the_grace_period(tmp_path: Path):
    grace = 1.0
    dead = free_port()  # nothing listens there
    secret_header = "authorization=Bearer otlp-header-secret-0123456789"
    sim = RunwaySimulator(api_key="key_otlp_dead_endpoint")
    await sim.start()
    server = await start_process(
        tmp_path / "data",
        sim,
        grace=grace,
        extra_env={
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://otel-user:otel-pass-0123456789@127.0.0.1:{dead}",
            "OTEL_EXPORTER_OTLP_HEADERS": secret_header,
        },
    )
    try:
        await expect_error(server.stub.Get(pb.GetRequest(id="nope")))  # a span to export
        started = time.monotonic()
        server.terminate()
        code = await server.wait_exit(limit=30)
        took = time.monotonic() - started
    finally:
        await server.close()
        await sim.stop()
    output = server.output()
    # Unbounded, the exporter's retries (1 s, 2 s, 4 s, with jitter) held the exit for 6 to 9.5 s.
    assert code == 0, output
    assert took < grace + 4, f"exit took {took:.1f}s\n{output}"
    # The start-up log says where spans go, without the credentials in the URL or the headers.
    assert f"spans to otlp (http://127.0.0.1:{dead}/v1/traces)" in output, output
    assert "otel-pass" not in output and "otel-user" not in output
    assert "otlp-header-secret" not in output
