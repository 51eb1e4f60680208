"""StreamContent's data messages, encoded by hand: one copy of the bytes instead of two.

A `StreamContentResponse(data=..., offset=...)` copies its data in when built and again when serialized,
and reading `.data` back (the telemetry's byte count) copies it a third time: for 256 KiB messages that
was ~0.25 ms of the server's CPU per MiB sent, a third of what grpc.aio itself spends sending it
(docs/benchmarks.md, issue 11). A data message is two fields, so it is written here as its wire bytes
(field 1, length-delimited; field 2, varint; proto3 leaves out a zero offset), joined from the data in one
copy, which works from a `memoryview` as well. The StreamContent handler's response serializer passes these
through and serializes every other message as usual (`serialize_response`); ContentWire installs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from videogen.v1 import video_service_pb2

if TYPE_CHECKING:
    from videogen_server.api.rewrap import Handler

STREAM_CONTENT = "/videogen.v1.VideoService/StreamContent"
_DATA_TAG = b"\x0a"  # field 1 (data), wire type 2
_OFFSET_TAG = b"\x10"  # field 2 (offset), wire type 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class EncodedChunk:
    """One StreamContentResponse carrying only `data` and `offset`, already serialized (`wire`).
    `size` is the number of data bytes in it (what the content byte counter counts)."""

    __slots__ = ("size", "wire")

    def __init__(self, offset: int, data: bytes | memoryview) -> None:
        if offset < 0:
            raise ValueError("offset must be 0 or more")
        size = len(data)
        head = _DATA_TAG + _varint(size) if size else b""
        tail = _OFFSET_TAG + _varint(offset) if offset else b""
        self.size = size
        self.wire = b"".join((head, data, tail)) if size else tail


def serialize_response(message: EncodedChunk | video_service_pb2.StreamContentResponse) -> bytes:
    if type(message) is EncodedChunk:
        return message.wire
    return message.SerializeToString()  # type: ignore[union-attr]


class ContentWire(grpc.aio.ServerInterceptor):
    """Gives StreamContent's handler `serialize_response` as its response serializer. Installed innermost,
    so the interceptors outside it, which keep the serializer of the handler they wrap, keep this one."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method != STREAM_CONTENT or handler.unary_stream is None:
            return handler
        wrapped: Handler = grpc.unary_stream_rpc_method_handler(
            handler.unary_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=serialize_response,
        )
        return wrapped
