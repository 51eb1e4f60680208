"""Caller-controlled text never forges or floods a log line (issue 8, item 6).

Before authentication, the raw `id` of a request used to be bound into the logging context and appended
unescaped to the text log's `[rid=… video=…]` tags: a newline in it wrote a forged access line, and a
megabyte id wrote a megabyte line. Through a real server (caller auth on) writing to a real log handler.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from conftest import start_server, stop_server
from rpc_helpers import expect_error, expect_stream_error
from videogen.v1 import video_service_pb2 as pb
from videogen_server.observability import logs

MIB = 1024 * 1024
CALLER_KEY = "caller-key-0123456789abcdef"
AUTH = (("authorization", f"Bearer {CALLER_KEY}"),)
FORGED = (
    "x]\n2026-12-01 13:40:00,000 INFO videogen_server.access: "
    "/videogen.v1.VideoService/Cancel OK 1.0ms [rid=forged"
)
FORGED_START = "2026-12-01 13:40:00,000"
# A record's first line starts with the time; any other line that does is a forgery.
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@contextmanager
def captured(fmt: str) -> Iterator[io.StringIO]:
    """The root logger's records, formatted as the server formats them, at INFO."""
    stream = io.StringIO()
    handler = logs.make_handler(fmt, stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_newline_in_the_id_forges_no_log_line(tmp_path):
    with captured("text") as stream:
        server = await start_server(str(tmp_path / "data"), api_keys={"alice": CALLER_KEY})
        try:
            stub = server.stub
            for metadata in (AUTH, ()):  # with and without credentials
                await expect_error(stub.Cancel(pb.CancelRequest(id=FORGED), metadata=metadata))
                await expect_error(stub.Get(pb.GetRequest(id=FORGED), metadata=metadata))
                await expect_stream_error(
                    stub.WatchStatus(pb.WatchStatusRequest(id=FORGED), metadata=metadata)
                )
        finally:
            await stop_server(server)
    lines = stream.getvalue().splitlines()
    access = [line for line in lines if "videogen_server.access:" in line]
    assert len(access) == 6, access  # one line per call, whatever the id held
    assert not [line for line in lines if line.startswith(FORGED_START)]
    assert not [line for line in lines if "/Cancel OK" in line]
    # The only lines that start a record are the records' own (no continuation line pretends to be one).
    assert all(_RECORD_START.match(line) or line.startswith((" ", "\t")) for line in lines), lines


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_huge_ids_add_a_bounded_amount_to_the_log(tmp_path, fmt):
    with captured(fmt) as stream:
        server = await start_server(str(tmp_path / "data"), api_keys={"alice": CALLER_KEY})
        try:
            stub = server.stub
            before = len(stream.getvalue())
            for size, metadata in ((7 * MIB, AUTH), (7 * MIB, ()), (1 * MIB, ())):
                err = await expect_error(
                    stub.Get(pb.GetRequest(id="a" * size), metadata=metadata, timeout=30)
                )
                assert err.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED)
            grown = len(stream.getvalue()) - before
        finally:
            await stop_server(server)
    assert grown < 8 * 1024, f"{fmt} log grew by {grown} bytes for 3 refused calls"


def test_no_message_argument_or_context_value_breaks_a_text_line():
    """The formatter is the mechanism: whatever a caller-controlled value holds, one record stays one line
    (tracebacks aside, whose lines are indented) and every value is bounded."""
    stream = io.StringIO()
    handler = logs.make_handler("text", stream)
    log = logging.getLogger("videogen_server.test_injection")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        with logs.rpc_context("/videogen.v1.VideoService/Get", "rid-1"):
            logs.bind_video(FORGED)  # not a UUID: never bound
            logs.bind_task("t\r\n2026-12-01 13:40:00,000 INFO forged task")
            log.info("model %s", "m\n2026-12-01 13:40:00,000 INFO videogen_server.access: forged\x1b[31m")
            log.info("huge %s", "b" * MIB, extra={"fields": {"note\nx": "v\n2026-12-01 13:40:00,000 INFO f"}})
            try:
                raise ValueError("bad\n2026-12-01 13:40:00,000 INFO videogen_server.access: forged")
            except ValueError:
                log.exception("failed")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = stream.getvalue()
    lines = text.splitlines()
    assert sum(1 for line in lines if _RECORD_START.match(line)) == 3, lines
    assert not [line for line in lines if line.startswith(FORGED_START)]
    assert all(_RECORD_START.match(line) or line.startswith((" ", "\t")) for line in lines), lines
    assert "video=" not in text and "\x1b" not in text
    assert len(text) < 16 * 1024  # the 1 MiB argument was cut
