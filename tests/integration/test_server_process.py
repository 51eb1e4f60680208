"""The server as a process (`python -m videogen_server`) where a new user meets it first (issue 13): a port
another process already holds, and a tracing endpoint where nothing listens."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from faults.server_process import run_to_exit

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
