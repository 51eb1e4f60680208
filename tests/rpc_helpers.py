"""Helpers for reading gRPC errors and waiting on videos in the integration tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from videogen.v1 import video_pb2, video_service_pb2, video_service_pb2_grpc


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)
    retry_delay: float | None = None
    resource_name: str = ""
    error_infos: int = 0


def details_of(err: grpc.aio.AioRpcError) -> ErrorDetails:
    out = ErrorDetails(err.code(), err.details() or "")
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None:
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out.reason, out.metadata = info.reason, dict(info.metadata)
            out.error_infos += 1
            assert info.domain == "videogen"
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.violations = {v.field: v.description for v in bad.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            out.retry_delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            res = error_details_pb2.ResourceInfo()
            detail.Unpack(res)
            out.resource_name = res.resource_name
    return out


async def expect_error(coro: object) -> ErrorDetails:
    try:
        await coro  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        return details_of(err)
    raise AssertionError("expected an RPC error")


async def expect_stream_error(call: object) -> ErrorDetails:
    try:
        async for _ in call:  # type: ignore[attr-defined]
            pass
    except grpc.aio.AioRpcError as err:
        return details_of(err)
    raise AssertionError("expected an RPC error")


TERMINAL = {
    video_pb2.VIDEO_STATUS_COMPLETED,
    video_pb2.VIDEO_STATUS_FAILED,
    video_pb2.VIDEO_STATUS_CANCELLED,
}


async def wait_terminal(
    stub: video_service_pb2_grpc.VideoServiceStub,
    video_id: str,
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    limit: float = 20.0,
) -> video_pb2.Video:
    async with asyncio.timeout(limit):
        last = None
        async for update in stub.WatchStatus(
            video_service_pb2.WatchStatusRequest(id=video_id), metadata=metadata
        ):
            last = update.video
        assert last is not None and last.status in TERMINAL
        return last


async def read_content(
    stub: video_service_pb2_grpc.VideoServiceStub,
    video_id: str,
    *,
    offset: int = 0,
    limit: int = 0,
    index: int = 0,
    metadata: tuple[tuple[str, str], ...] = (),
) -> tuple[bytes, list[video_service_pb2.StreamContentResponse]]:
    messages = []
    async for msg in stub.StreamContent(
        video_service_pb2.StreamContentRequest(id=video_id, offset=offset, limit=limit, index=index),
        metadata=metadata,
    ):
        messages.append(msg)
    return b"".join(m.data for m in messages), messages
