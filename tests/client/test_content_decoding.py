"""The client's StreamContent reader agrees with protobuf on every message, hands out `data` without a
copy, and leaves whatever it does not expect to protobuf."""

from __future__ import annotations

import random

import pytest
from google.protobuf.message import DecodeError
from videogen.v1 import video_service_pb2 as pb
from videogen_client.content_wire import ContentMessage, decode_content


def fields(m: object) -> tuple[bytes, int, str, int]:
    return (bytes(m.data), m.offset, m.content_type, m.total_size)  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(200))
def test_agrees_with_protobuf(seed: int) -> None:
    rnd = random.Random(seed)
    message = pb.StreamContentResponse(
        data=rnd.randbytes(rnd.choice([0, 1, 127, 128, 300, 70_000])),
        offset=rnd.choice([0, 1, 127, 128, 2**31, 2**62, -1, -(2**63)]),
        content_type=rnd.choice(["", "video/mp4", "vidéo/мп4"]),
        total_size=rnd.choice([0, 5, 2**40, -7]),
    )
    raw = message.SerializeToString()
    got = decode_content(raw)
    assert isinstance(got, ContentMessage)
    assert fields(got) == fields(pb.StreamContentResponse.FromString(raw))


def test_data_is_a_view_into_the_received_bytes() -> None:
    raw = pb.StreamContentResponse(data=b"x" * 1000, offset=5).SerializeToString()
    got = decode_content(raw)
    assert isinstance(got.data, memoryview) and got.data.obj is raw


def test_fields_in_any_order_and_repeated_ones_as_protobuf_reads_them() -> None:
    first = pb.StreamContentResponse(offset=9, data=b"old").SerializeToString()
    second = pb.StreamContentResponse(data=b"new", content_type="video/mp4").SerializeToString()
    raw = second + first  # concatenated messages merge; the last value of a field wins
    assert fields(decode_content(raw)) == fields(pb.StreamContentResponse.FromString(raw))


def test_an_unknown_field_is_left_to_protobuf() -> None:
    raw = pb.StreamContentResponse(data=b"abc", offset=3).SerializeToString() + b"\x28\x01"  # field 5 = 1
    got = decode_content(raw)
    assert isinstance(got, pb.StreamContentResponse)
    assert (got.data, got.offset) == (b"abc", 3)


@pytest.mark.parametrize("raw", [b"\x0a\x05ab", b"\x10", b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"])
def test_a_malformed_message_fails_as_protobuf_fails(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_content(raw)
