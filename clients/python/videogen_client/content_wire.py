"""StreamContent responses read without copying their data.

``StreamContentResponse.FromString`` copies a message's bytes into protobuf's memory, and every read of its
``data`` field copies them out again: for 256 KiB messages that was about a third of what grpc itself
spends receiving them (docs/benchmarks.md, issue 11). The message has four scalar fields, so it is read
here straight from the received bytes, ``data`` as a ``memoryview`` into them (a download writes it to the
file as is; ``stream_content`` makes the one ``bytes`` copy it hands out). Anything this reader does not
expect (a field it does not know, another wire type) is left to protobuf: the result is then the
``StreamContentResponse`` itself, which has the same four attributes.
"""

from __future__ import annotations

from typing import Any

from videogen.v1 import video_service_pb2

STREAM_CONTENT = "/videogen.v1.VideoService/StreamContent"


class ContentMessage:
    """One StreamContentResponse: ``data`` is a view into the received message."""

    __slots__ = ("content_type", "data", "offset", "total_size")

    def __init__(self, data: memoryview, offset: int, content_type: str, total_size: int) -> None:
        self.data = data
        self.offset = offset
        self.content_type = content_type
        self.total_size = total_size


class _Unexpected(Exception):
    pass


def _varint(view: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(view) or shift > 63:
            raise _Unexpected
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode_content(raw: bytes) -> ContentMessage | video_service_pb2.StreamContentResponse:
    """The response deserializer for StreamContent."""
    view = memoryview(raw)
    data = view[0:0]
    offset = total_size = 0
    content_type = ""
    at = 0
    try:
        while at < len(view):
            key, at = _varint(view, at)
            field, wire_type = key >> 3, key & 7
            if wire_type == 2 and field in (1, 3):
                size, at = _varint(view, at)
                if at + size > len(view):
                    raise _Unexpected
                if field == 1:
                    data = view[at : at + size]
                else:
                    content_type = str(view[at : at + size], "utf-8")
                at += size
            elif wire_type == 0 and field in (2, 4):
                value, at = _varint(view, at)
                if field == 2:
                    offset = _int64(value)
                else:
                    total_size = _int64(value)
            else:
                raise _Unexpected
    except (_Unexpected, UnicodeDecodeError):
        return video_service_pb2.StreamContentResponse.FromString(raw)
    return ContentMessage(data, offset, content_type, total_size)


def content_stream(channel: Any) -> Any:
    """StreamContent on `channel` (sync or asyncio) with `decode_content` as its response deserializer, to
    stand in for the generated stub's attribute (typed as the stub's: the messages have its attributes)."""
    return channel.unary_stream(
        STREAM_CONTENT,
        request_serializer=video_service_pb2.StreamContentRequest.SerializeToString,
        response_deserializer=decode_content,
    )
