"""OutputStream.iter_chunks: the body is cut into exact chunks whatever sizes the reads come in, pieces of
exactly one chunk pass through without a copy, and the HTTP/1.1 body read size is raised for the relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from httpcore._async.http11 import AsyncHTTP11Connection
from videogen_server import errors
from videogen_server.providers.runway.downloads import BODY_READ_SIZE, OutputDownloads, raise_body_read_size

OUT = "https://cdn.example/out/0.mp4?sig=abc"
BODY = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable


class Pieces(httpx.AsyncByteStream):
    """A response body that arrives in the given pieces (as socket reads would)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            yield p
            await asyncio.sleep(0)


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for n in sizes:
        out.append(data[at : at + n])
        at += n
    if at < len(data):
        out.append(data[at:])
    return out


def serving(response: httpx.Response) -> OutputDownloads:
    return OutputDownloads(http=httpx.AsyncClient(transport=httpx.MockTransport(lambda _: response)))


async def chunks_of(
    pieces: list[bytes], chunk: int, *, start: int = 0, end: int | None = None
) -> list[bytes]:
    status = 200
    response = httpx.Response(status, headers={"content-length": str(len(BODY))}, stream=Pieces(pieces))
    downloads = serving(response)
    try:
        async with downloads.open_output(OUT, start=start, end=end) as out:
            return [c async for c in out.iter_chunks(chunk)]
    finally:
        await downloads.aclose()


@pytest.mark.parametrize(
    "sizes",
    [
        [100, 300, 50, 1000, 7, 2000],  # irregular, smaller and larger than a chunk
        [256] * 40,  # aligned
        [1] * 300,  # tiny reads
        [10_240],  # one read
    ],
)
async def test_chunks_are_exact_whatever_the_reads(sizes: list[int]) -> None:
    got = await chunks_of(split(BODY, sizes), 256)
    assert b"".join(got) == BODY
    assert [len(c) for c in got] == [256] * 40


async def test_a_read_of_exactly_one_chunk_is_passed_on_without_a_copy() -> None:
    pieces = split(BODY, [512] * 20)
    got = await chunks_of(pieces, 512)
    assert all(c is p for c, p in zip(got, pieces, strict=True))


async def test_skip_and_limit_across_irregular_reads() -> None:
    # The server ignores the Range (200 from byte 0): the first 300 bytes are dropped, 5,000 are kept.
    got = await chunks_of(split(BODY, [100, 150, 77, 1024, 3]), 256, start=300, end=5300)
    assert b"".join(got) == BODY[300:5300]
    assert [len(c) for c in got[:-1]] == [256] * (len(got) - 1) and 0 < len(got[-1]) <= 256


async def test_a_short_body_is_still_unavailable_after_its_bytes() -> None:
    response = httpx.Response(
        200, headers={"content-length": "1000"}, stream=Pieces([b"a" * 300, b"b" * 100])
    )
    downloads = serving(response)
    got = b""
    with pytest.raises(errors.UpstreamUnavailable, match="cut short"):
        async with downloads.open_output(OUT) as out:
            async for c in out.iter_chunks(256):
                got += c
    await downloads.aclose()
    assert got == b"a" * 300 + b"b" * 100


def test_body_read_size_is_raised_never_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AsyncHTTP11Connection, "READ_NUM_BYTES", 64 * 1024)
    OutputDownloads()  # building the downloads raises it
    assert AsyncHTTP11Connection.READ_NUM_BYTES == BODY_READ_SIZE
    monkeypatch.setattr(AsyncHTTP11Connection, "READ_NUM_BYTES", 4 * BODY_READ_SIZE)
    raise_body_read_size()
    assert AsyncHTTP11Connection.READ_NUM_BYTES == 4 * BODY_READ_SIZE
