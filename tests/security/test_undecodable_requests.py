"""Requests that do not decode are INVALID_ARGUMENT, counted and logged like any call (issue 8, item 8).

grpc.aio deserializes a request before any interceptor runs; a DecodeError there used to become
`UNKNOWN: Unexpected <class 'DecodeError'>…` with an ERROR traceback, and the call never reached the
metrics. Raw bytes go through a generic channel call (no serializer), with and without credentials.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from conftest import start_server, stop_server
from google.protobuf import struct_pb2
from rpc_helpers import details_of
from videogen.v1 import video_service_pb2 as pb
from videogen_server.observability import logs

CALLER_KEY = "caller-key-0123456789abcdef"
AUTH = (("authorization", f"Bearer {CALLER_KEY}"),)
SERVICE = "videogen.v1.VideoService"
# Field 1 (`id`, a proto3 string) holding bytes that are not UTF-8.
BAD_UTF8_ID = b"\x0a\x02\xff\xfe"


def _deep_options(depth: int = 40) -> bytes:
    options = struct_pb2.Struct()
    level = options
    for _ in range(depth):
        level = level.fields["k"].struct_value
    request = pb.GenerateRequest(model="gen4.5", prompt="waves", seconds=5)
    request.provider_options.CopyFrom(options)
    return request.SerializeToString()


# (service, method, grpc_type, request bytes). Health and reflection need no key: they are covered too.
CASES = [
    (SERVICE, "Get", "unary", BAD_UTF8_ID),
    (SERVICE, "Cancel", "unary", BAD_UTF8_ID),
    (SERVICE, "Generate", "unary", _deep_options()),
    (SERVICE, "WatchStatus", "server_stream", BAD_UTF8_ID),
    (SERVICE, "StreamContent", "server_stream", BAD_UTF8_ID),
    ("grpc.health.v1.Health", "Check", "unary", BAD_UTF8_ID),
    ("grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", "bidi_stream", BAD_UTF8_ID),
]


@contextmanager
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logs.make_handler("text", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def _call_raw(
    channel: grpc.aio.Channel, path: str, kind: str, body: bytes, metadata: tuple[tuple[str, str], ...]
) -> grpc.aio.AioRpcError:
    """One call with `body` as the request's bytes (no serializer: grpc sends them as they are)."""
    try:
        if kind == "unary":
            await channel.unary_unary(path)(body, metadata=metadata, timeout=10)
        elif kind == "server_stream":
            async for _ in channel.unary_stream(path)(body, metadata=metadata, timeout=10):
                pass
        else:
            async for _ in channel.stream_stream(path)(iter([body]), metadata=metadata, timeout=10):
                pass
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError(f"{path}: expected an RPC error")


@pytest.mark.parametrize("metadata", [AUTH, ()], ids=["with-key", "without-key"])
async def test_undecodable_requests_are_invalid_argument_and_counted(tmp_path, metadata):
    with captured() as stream:
        server = await start_server(str(tmp_path / "data"), api_keys={"alice": CALLER_KEY})
        try:
            registry = server.app.metrics.registry  # type: ignore[union-attr]

            def sample(name: str, service: str, method: str, kind: str, **labels: str) -> float:
                value = registry.get_sample_value(
                    name, {"grpc_service": service, "grpc_method": method, "grpc_type": kind, **labels}
                )
                return value or 0.0

            for service, method, kind, body in CASES:
                labels = (service, method, kind)
                started = sample("grpc_server_started_total", *labels)
                handled = sample("grpc_server_handled_total", *labels, grpc_code="INVALID_ARGUMENT")
                err = await _call_raw(server.channel, f"/{service}/{method}", kind, body, metadata)
                details = details_of(err)
                assert details.code == grpc.StatusCode.INVALID_ARGUMENT, (method, details)
                assert details.reason == "MALFORMED_REQUEST" and details.error_infos == 1, (method, details)
                assert "Error" not in details.message and "Unexpected" not in details.message, details.message
                assert sample("grpc_server_started_total", *labels) == started + 1, method
                assert (
                    sample("grpc_server_handled_total", *labels, grpc_code="INVALID_ARGUMENT") == handled + 1
                ), method
            # The service still answers well-formed requests afterwards.
            video = (
                await server.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="waves"), metadata=AUTH)
            ).video
            assert video.id
        finally:
            await stop_server(server)
    text = stream.getvalue()
    assert "Traceback" not in text and " ERROR " not in text, text
    refused = [
        line for line in text.splitlines() if "videogen_server.access:" in line and "INVALID_ARGUMENT" in line
    ]
    # One access line per VideoService call (health's and reflection's are DEBUG, below the level captured).
    assert len(refused) == sum(1 for case in CASES if case[0] == SERVICE), refused
