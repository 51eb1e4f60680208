"""StreamContent data messages encoded by hand are exactly what protobuf would send, and only
StreamContent's handler gets the serializer that passes them through."""

from __future__ import annotations

import random
from typing import Any

import grpc
import pytest
from videogen.v1 import video_service_pb2 as pb
from videogen_server.api.content_wire import STREAM_CONTENT, ContentWire, EncodedChunk, serialize_response


@pytest.mark.parametrize(
    ("offset", "size"),
    [(0, 0), (0, 1), (1, 0), (127, 127), (128, 128), (0, 256 * 1024), (2**40 + 3, 1024 * 1024), (2**62, 5)],
)
def test_encoding_is_protobufs(offset: int, size: int) -> None:
    data = random.Random(size).randbytes(size)
    chunk = EncodedChunk(offset, data)
    assert chunk.wire == pb.StreamContentResponse(data=data, offset=offset).SerializeToString()
    back = pb.StreamContentResponse.FromString(chunk.wire)
    assert (back.data, back.offset, chunk.size) == (data, offset, size)


def test_a_memoryview_is_encoded_like_its_bytes() -> None:
    data = bytes(range(256)) * 64
    view = memoryview(data)[100:9000]
    assert EncodedChunk(7, view).wire == EncodedChunk(7, bytes(view)).wire


def test_negative_offsets_are_refused() -> None:
    with pytest.raises(ValueError):
        EncodedChunk(-1, b"x")


def test_serializer_passes_encoded_chunks_and_serializes_messages() -> None:
    first = pb.StreamContentResponse(data=b"abc", offset=0, content_type="video/mp4", total_size=10)
    assert serialize_response(first) == first.SerializeToString()
    assert (
        serialize_response(EncodedChunk(3, b"defg"))
        == pb.StreamContentResponse(data=b"defg", offset=3).SerializeToString()
    )


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def test_only_stream_content_gets_the_serializer() -> None:
    async def behavior(request: Any, context: Any) -> Any:
        yield request

    original = grpc.unary_stream_rpc_method_handler(
        behavior,
        request_deserializer=pb.StreamContentRequest.FromString,
        response_serializer=pb.StreamContentResponse.SerializeToString,
    )

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return original

    wire = ContentWire()
    handler = await wire.intercept_service(continuation, _Details(STREAM_CONTENT))
    assert handler is not None and handler.response_serializer is serialize_response
    assert handler.unary_stream is behavior
    assert handler.request_deserializer == pb.StreamContentRequest.FromString
    other = await wire.intercept_service(continuation, _Details("/videogen.v1.VideoService/WatchStatus"))
    assert other is original
