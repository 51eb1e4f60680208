"""The keys never appear in logs, error messages or metrics.

The server runs as a real process (`python -m videogen_server`) at DEBUG level against a simulator started
here with a distinctive Runway key, with a distinctive caller key. The test drives a Generate, a watch, a
download, calls with a wrong caller key, Runway 401s on create and on read, then SIGTERM, and greps all of
the process's output, every error the callers saw and a /metrics scrape for the keys and for the signed
output URL token (`_jwt=`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import sys

import grpc
import httpx
import pytest
from conftest import FAST_SIMULATOR
from rpc_helpers import expect_error, read_content, wait_terminal
from videogen.v1 import video_pb2, video_service_pb2_grpc
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator import Fault, RunwaySimulator

RUNWAY_KEY = "key_RUNWAYSECRET_" + "9f8e7d6c5b4a3928" * 4
CALLER_KEY = "CALLERSECRET-4b1d0c7a2e9f"
WRONG_KEY = "WRONGCALLERSECRET-77aa31"  # somebody's key for something else: not to be logged either
SECRETS = (RUNWAY_KEY, CALLER_KEY, WRONG_KEY, "_jwt=")


class ServerProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output: list[str] = []
        self.port = asyncio.get_running_loop().create_future()
        self.metrics_port = asyncio.get_running_loop().create_future()
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [asyncio.create_task(self._read(s)) for s in (proc.stdout, proc.stderr)]

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace")
            self.output.append(line)
            if (m := re.search(r"listening on [^ ]*?:(\d+)", line)) and not self.port.done():
                self.port.set_result(int(m.group(1)))
            if (
                m := re.search(r"metrics on http://[^ ]*?:(\d+)/metrics", line)
            ) and not self.metrics_port.done():
                self.metrics_port.set_result(int(m.group(1)))

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.proc.wait()
            await asyncio.gather(*self._readers)
        return code


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_keys_never_reach_logs_errors_or_metrics(tmp_path, log_format):
    sim = RunwaySimulator(api_key=RUNWAY_KEY, config=dataclasses.replace(FAST_SIMULATOR))
    base_url = await sim.start(host="127.0.0.1", port=0)
    env = {
        **os.environ,
        "RUNWAYML_API_SECRET": RUNWAY_KEY,
        "RUNWAYML_BASE_URL": base_url,
        "VIDEOGEN_API_KEYS": f"alice:{CALLER_KEY}",
        "VIDEOGEN_LOG_LEVEL": "DEBUG",
        "VIDEOGEN_LOG_FORMAT": log_format,
        "VIDEOGEN_LISTEN": "127.0.0.1:0",
        "VIDEOGEN_METRICS_LISTEN": "127.0.0.1:0",
        "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
        "VIDEOGEN_POLL_INTERVAL": "0.1",
        "VIDEOGEN_SHUTDOWN_GRACE": "1",
        "PYTHONASYNCIODEBUG": "1",  # asyncio's own debug logging too
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videogen_server", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    server = ServerProcess(proc)
    seen_by_callers: list[str] = []
    try:
        async with asyncio.timeout(60):
            port = await server.port
        address = f"127.0.0.1:{port}"
        auth = (("authorization", f"Bearer {CALLER_KEY}"),)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = video_service_pb2_grpc.VideoServiceStub(channel)
            video = (
                await stub.Generate(
                    pb.GenerateRequest(model="gen4.5", prompt="a secret-free boat"), metadata=auth
                )
            ).video
            done = await wait_terminal(stub, video.id, metadata=auth)
            assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
            data, _ = await read_content(stub, video.id, metadata=auth)
            assert data == sim.output_bytes(done.upstream_task_id)

            # Wrong caller keys: refused, and the key the caller sent is not written down anywhere.
            for metadata in ((("authorization", f"Bearer {WRONG_KEY}"),), (("authorization", WRONG_KEY),)):
                err = await expect_error(stub.Get(pb.GetRequest(id=video.id), metadata=metadata))
                assert err.code == grpc.StatusCode.UNAUTHENTICATED
                seen_by_callers.append(repr(err))

            # Runway says our key is bad (401), on create and on a task read.
            sim.faults.add(Fault(route="create", kind="status", status=401, message="Invalid API key"))
            err = await expect_error(
                stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="p"), metadata=auth)
            )
            assert err.code == grpc.StatusCode.INTERNAL
            seen_by_callers.append(repr(err))
            sim.config.running_seconds = 30.0
            running = (
                await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="q"), metadata=auth)
            ).video
            sim.faults.add(Fault(route="get_task", kind="status", status=401, count=50))
            with contextlib.suppress(grpc.aio.AioRpcError):
                got = await stub.Get(pb.GetRequest(id=running.id), metadata=auth)
                seen_by_callers.append(repr(got))
            sim.faults.clear()

            # A download whose output URL "expired" makes the server re-read the task (a fresh signed URL).
            sim.faults.add(Fault(route="output", kind="expired_url"))
            again, _ = await read_content(stub, video.id, metadata=auth)
            assert again == data

        assert server.metrics_port.done(), "no /metrics line in the log"
        if server.metrics_port.done():
            async with httpx.AsyncClient() as http:
                scrape = await http.get(f"http://127.0.0.1:{server.metrics_port.result()}/metrics")
            assert scrape.status_code == 200
            seen_by_callers.append(scrape.text)
    finally:
        code = await server.stop()
        await sim.stop()

    output = "".join(server.output)
    assert code == 0, output[-3000:]
    assert "listening on" in output and "stopped" in output
    # The capture really holds the request-level and debug logs the secrets could have leaked into.
    assert video.id in output and running.id in output
    assert re.search(r"debug", output, re.IGNORECASE)
    print(f"{len(server.output)} lines of {log_format} output checked")
    assert "401" in output or "authenticate" in output.lower()  # the bad Runway key was logged loudly...
    for secret in SECRETS:  # ... without the key itself
        assert secret not in output, f"{secret!r} found in the server's output"
        for text in seen_by_callers:
            assert secret not in text, f"{secret!r} found in what a caller saw"
