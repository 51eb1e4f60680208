"""Per-caller shares of the stream and watcher caps (issue 8, item 7): one caller cannot take every slot.

The real server on loopback against the simulator, with caller keys. Each caller gets at most
VIDEOGEN_MAX_STREAMS_PER_CALLER / VIDEOGEN_MAX_WATCHERS_PER_CALLER (default: half of the global cap); past
its share a call is RESOURCE_EXHAUSTED naming the per-caller variable, while the global cap, when it is
what was hit, is still reported as VIDEOGEN_MAX_STREAMS / VIDEOGEN_MAX_WATCHERS."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc
from conftest import FAST_SIMULATOR, RunningServer, start_server, stop_server
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rpc_helpers import wait_terminal
from videogen.v1 import video_service_pb2 as pb

MIB = 1024 * 1024
KEYS = {
    "alice": "alice-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef",
    "carol": "carol-key-0123456789abcdef",
}

Call = Any  # grpc.aio.UnaryStreamCall


def auth(name: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {KEYS[name]}"),)


async def refusal(call: Call) -> tuple[grpc.StatusCode, str, list[str]]:
    """The status code, ErrorInfo reason and QuotaFailure subjects of a stream that must fail."""
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as err:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
        assert status is not None
        reason, subjects = "", []
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                quota = error_details_pb2.QuotaFailure()
                detail.Unpack(quota)
                subjects = [v.subject for v in quota.violations]
        return err.code(), reason, subjects
    raise AssertionError("expected RESOURCE_EXHAUSTED")


async def settled(check: Any) -> None:
    """Wait (bounded) for the server to notice that streams the client cancelled have ended."""
    async with asyncio.timeout(10):
        while not check():  # noqa: ASYNC110 (the server exposes counters, not events)
            await asyncio.sleep(0.01)


async def generate(server: RunningServer, caller: str, prompt: str) -> str:
    request = pb.GenerateRequest(model="gen4.5", prompt=prompt)
    return (await server.stub.Generate(request, metadata=auth(caller))).video.id


async def test_one_caller_cannot_take_every_stream(tmp_path):
    # Outputs big enough that an unread stream is held by flow control, not finished into buffers.
    sim = dataclasses.replace(FAST_SIMULATOR, output_size=64 * MIB)
    server = await start_server(str(tmp_path), sim_config=sim, api_keys=KEYS, max_streams=4)  # 2 each
    held: list[Call] = []
    try:
        assert server.app.limits is not None
        streams = server.app.limits.streams
        videos = {name: await generate(server, name, f"{name}'s video") for name in KEYS}
        for name, video_id in videos.items():
            await wait_terminal(server.stub, video_id, metadata=auth(name))

        def stream(name: str) -> Call:
            return server.stub.StreamContent(
                pb.StreamContentRequest(id=videos[name]), metadata=auth(name), timeout=30
            )

        for _ in range(2):
            held.append(stream("alice"))
            assert (await held[-1].read()).total_size == 64 * MIB
        # Alice has her share: her next stream is refused, naming the per-caller variable...
        code, reason, subjects = await refusal(stream("alice"))
        assert (code, reason, subjects) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "CONCURRENCY_LIMIT_EXCEEDED",
            ["VIDEOGEN_MAX_STREAMS_PER_CALLER"],
        )
        assert streams.in_use == 2  # a refusal holds nothing
        # ...while Bob still gets his.
        for _ in range(2):
            held.append(stream("bob"))
            assert (await held[-1].read()).total_size == 64 * MIB
        assert streams.in_use == 4
        # Now the server is full: Carol, with nothing open, is refused on the global cap.
        code, _, subjects = await refusal(stream("carol"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and subjects == ["VIDEOGEN_MAX_STREAMS"]

        # Ending streams gives the slots back, and a caller with nothing open leaves no entry behind.
        for call in held:
            call.cancel()
        await settled(lambda: streams.in_use == 0)
        assert streams.callers == 0
        again = stream("alice")
        assert (await again.read()).total_size == 64 * MIB
        held.append(again)
    finally:
        for call in held:
            call.cancel()
        await stop_server(server)


async def test_one_caller_cannot_take_every_watcher_slot(tmp_path):
    server = await start_server(str(tmp_path), api_keys=KEYS, max_watchers=5, max_watchers_per_caller=2)
    watches: list[Call] = []
    try:
        assert server.app.limits is not None
        watchers = server.app.limits.watchers
        server.simulator.config.running_seconds = 60.0  # stays running while we watch
        videos = {name: await generate(server, name, f"{name} watched") for name in KEYS}

        def watch(name: str) -> Call:
            return server.stub.WatchStatus(
                pb.WatchStatusRequest(id=videos[name]), metadata=auth(name), timeout=30
            )

        for _ in range(2):
            watches.append(watch("alice"))
            assert (await watches[-1].read()).video.id == videos["alice"]
        code, reason, subjects = await refusal(watch("alice"))
        assert (code, reason, subjects) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "CONCURRENCY_LIMIT_EXCEEDED",
            ["VIDEOGEN_MAX_WATCHERS_PER_CALLER"],
        )
        for name in ("bob", "bob", "carol"):
            watches.append(watch(name))
            assert (await watches[-1].read()).video.id == videos[name]
        assert watchers.in_use == 5
        code, _, subjects = await refusal(watch("carol"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and subjects == ["VIDEOGEN_MAX_WATCHERS"]

        # One of Alice's watches ends: she may open one again; the entries drop to nothing at the end.
        watches[0].cancel()
        await settled(lambda: watchers.in_use == 4)
        watches.append(watch("alice"))
        assert (await watches[-1].read()).video.id == videos["alice"]
        for call in watches:
            call.cancel()
        await settled(lambda: watchers.in_use == 0)
        assert watchers.callers == 0
    finally:
        for call in watches:
            call.cancel()
        await stop_server(server)
