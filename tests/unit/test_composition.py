"""The composition root and the configuration around it: production loads neither the simulator nor
OpenTelemetry, every default is defined once, and a refused caller gets the status it always got."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from videogen_server import errors
from videogen_server.api.status import DOMAIN, to_status
from videogen_server.config import DEFAULT_METRICS_LISTEN, Config, LogSettings


def test_the_server_entry_point_imports_neither_the_simulator_nor_opentelemetry() -> None:
    # A fresh interpreter: the test session itself has imported both long ago.
    probe = (
        "import sys, videogen_server.main\n"
        "print(sorted(m for m in sys.modules if 'simulator' in m or m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_environment_defaults_are_the_config_defaults() -> None:
    # from_env derives its fallbacks from the fields; only /metrics differs (off for a Config made in code).
    assert Config.from_env({}) == dataclasses.replace(Config(), metrics_listen=DEFAULT_METRICS_LISTEN)
    assert LogSettings.from_env({}) == LogSettings()


def test_unauthenticated_maps_to_the_status_callers_always_got() -> None:
    # What the interceptor built by hand before errors.Unauthenticated was raised.
    expected = status_pb2.Status(
        code=code_pb2.UNAUTHENTICATED,
        message="send a valid key as 'authorization: Bearer <key>' metadata",
    )
    info = error_details_pb2.ErrorInfo(reason="MISSING_OR_INVALID_CREDENTIALS", domain=DOMAIN)
    expected.details.add().Pack(info)
    status = to_status(errors.Unauthenticated("send a valid key as 'authorization: Bearer <key>' metadata"))
    assert status == rpc_status.to_status(expected)
