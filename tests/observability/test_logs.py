"""Structured logs from the real server: JSON lines with the request id, video id and upstream task id of
the RPC they belong to, and never a key."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import start_server, stop_server
from rpc_helpers import expect_error, read_content, wait_terminal
from videogen.v1 import video_service_pb2 as pb
from videogen_server.config import LogSettings
from videogen_server.observability import logs

CALLER_KEY = "caller-key-0123456789abcdef"
AUTH = (("authorization", f"Bearer {CALLER_KEY}"),)


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


async def test_json_logs_carry_request_video_and_task_ids_and_no_key(tmp_path):
    with captured("json") as stream:
        server = await start_server(str(tmp_path / "data"), api_keys={"alice": CALLER_KEY})
        try:
            stub = server.stub
            request = pb.GenerateRequest(model="gen4.5", prompt="a blue door", seconds=5)
            video = (
                await stub.Generate(request, metadata=(*AUTH, ("x-request-id", "req-from-caller-1")))
            ).video
            await wait_terminal(stub, video.id, metadata=AUTH)
            await read_content(stub, video.id, metadata=AUTH)
            await expect_error(stub.Get(pb.GetRequest(id=video.id)))  # no key: UNAUTHENTICATED
            # Even a careless log line of a key is scrubbed.
            logging.getLogger("videogen_server.test").warning("careless: %s", CALLER_KEY)
            sim_key = server.simulator.api_key
        finally:
            await stop_server(server)
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)

    access = {
        line["rpc_method"].rsplit("/", 1)[1]: line
        for line in lines
        if line["logger"] == "videogen_server.access"
    }
    generate = access["Generate"]
    assert generate["request_id"] == "req-from-caller-1"  # the caller's own id is kept
    assert generate["video_id"] == video.id and generate["task_id"] == video.upstream_task_id
    assert generate["grpc_code"] == "OK" and generate["duration_ms"] > 0
    for name in ("WatchStatus", "StreamContent"):
        assert access[name]["video_id"] == video.id and access[name]["task_id"] == video.upstream_task_id
        assert len(access[name]["request_id"]) == 16  # made up for callers that send none
    assert len({line["request_id"] for line in access.values()}) == len(access)  # one per RPC
    assert access["Get"]["grpc_code"] == "UNAUTHENTICATED" and access["Get"]["video_id"] == video.id

    assert any(line["message"] == "careless: <redacted>" for line in lines)
    assert CALLER_KEY not in text and sim_key not in text


async def test_text_logs_tag_lines_with_the_rpc_context(tmp_path):
    with captured("text") as stream:
        server = await start_server(str(tmp_path / "data"))
        try:
            video = (
                await server.stub.Generate(
                    pb.GenerateRequest(model="gen4.5", prompt="tea", seconds=5),
                    metadata=(("x-request-id", "abc-123"),),
                )
            ).video
        finally:
            await stop_server(server)
    (line,) = [x for x in stream.getvalue().splitlines() if "videogen.v1.VideoService/Generate OK" in x]
    assert f"[rid=abc-123 video={video.id} task={video.upstream_task_id} grpc_code=OK duration_ms=" in line


def test_log_settings_from_the_environment():
    sink = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        assert (
            logs.configure(
                LogSettings.from_env({"VIDEOGEN_LOG_FORMAT": "json", "VIDEOGEN_LOG_LEVEL": "debug"}), sink
            )
            is None
        )
        assert root.level == logging.DEBUG
        logging.getLogger("videogen_server.x").debug("hello")
        assert json.loads(sink.getvalue())["message"] == "hello"
        problem = logs.configure(LogSettings.from_env({"VIDEOGEN_LOG_FORMAT": "xml"}), sink)
        assert problem is not None and "VIDEOGEN_LOG_FORMAT" in problem
        assert isinstance(root.handlers[0].formatter, logs.TextFormatter)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])
