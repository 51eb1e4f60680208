"""OutputDownloads: ranged reads of a task's output files, from the signed URLs Runway hands out (CDN hosts).

- No Runway credentials are ever sent (no Authorization, no X-Runway-Version), even if an injected client
  carries them as defaults: these URLs are signed, and on other hosts.
- Opening a download retries on 408/429/5xx and network errors within the deadline; 403/404/410 mean the
  signed URL expired (OutputExpired, for the relay to re-read the task), 416 an offset past the end.
- Downloads have a connection pool of their own, apart from the /v1 API's. A download holds its connection
  for the whole life of a StreamContent call (as long as the caller takes to read), so with one pool, streams
  held open by slow readers left no connection for creates and polls (they waited until their deadline).
- They never pass the API's circuit breaker: a CDN's health says nothing about the API's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from videogen_server import errors
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.providers.runway.transport import (
    CONNECT_TIMEOUT,
    Retry,
    Transport,
    UpstreamObserver,
    unavailable,
)

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# The `endpoint` label of metrics and spans: never the URL (it carries signed tokens).
OUTPUT_ENDPOINT = "output"
DOWNLOAD_KEEPALIVE = 20
DOWNLOAD_KEEPALIVE_EXPIRY = 5.0
# Bytes asked of the socket per read of a response body. httpcore reads HTTP/1.1 bodies 64 KiB at a time,
# and every read is a trip through httpcore, anyio and h11 in Python; asyncio's transport receives up to
# 256 KiB per recv, which anyio then splits to the asked size (copying the rest each time). At 64 KiB a
# 256 MiB relay made ~8,000 reads (docs/benchmarks.md, "Issue 11": the relay's CPU, before and after).
BODY_READ_SIZE = 256 * 1024


def raise_body_read_size(size: int = BODY_READ_SIZE) -> None:
    """Raises httpcore's HTTP/1.1 body read size to `size` (never lowers it). httpcore has no option for
    it, so this sets its class attribute: process-wide, which the API client's small JSON bodies do not
    notice. Without it (an httpcore that renamed it), downloads still work, only at a higher CPU cost."""
    try:
        from httpcore._async.http11 import AsyncHTTP11Connection
    except ImportError:  # pragma: no cover - a future httpcore
        return
    if isinstance(getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", None), int):
        AsyncHTTP11Connection.READ_NUM_BYTES = max(AsyncHTTP11Connection.READ_NUM_BYTES, size)


class OutputStream:
    """An open download of one output. `start` is the offset of the first byte iter_chunks yields."""

    def __init__(
        self,
        response: httpx.Response,
        *,
        start: int,
        total_size: int | None,
        content_type: str,
        skip: int,
        limit: int | None,
        expected: int | None,
    ) -> None:
        self._response = response
        self.start = start
        self.total_size = total_size
        self.content_type = content_type
        self._skip = skip  # bytes to drop first (the server ignored our Range and sent from 0)
        self._limit = limit  # bytes to yield at most (None: to the end)
        self._expected = expected  # body bytes the server promised (Content-Length / Content-Range)

    async def iter_chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        """The body in chunks of exactly `chunk_size` bytes (the last one may be shorter).

        The body is read as it arrives (up to BODY_READ_SIZE per read) and cut here, not by httpx's
        `aiter_bytes(chunk_size)`, which copies every byte three times (BytesIO write, getvalue, slice): a
        read of exactly one chunk is passed on as is, and pieces are joined once only when they must be."""
        received = 0
        skip = self._skip
        left = self._limit
        pending: list[bytes] = []
        pending_size = 0
        try:
            async for piece in self._response.aiter_bytes():
                received += len(piece)
                if skip:
                    if len(piece) <= skip:
                        skip -= len(piece)
                        continue
                    piece = piece[skip:]
                    skip = 0
                last = False
                if left is not None:
                    if len(piece) >= left:
                        piece, last = piece[:left], True
                    left -= len(piece)
                if not pending and len(piece) == chunk_size:
                    yield piece  # the common case once reads and chunks are the same size: no copy
                elif piece:
                    pending.append(piece)
                    pending_size += len(piece)
                    del piece
                    if pending_size >= chunk_size:
                        # Cut before yielding, so that while the caller holds a chunk (a slow reader: most
                        # of the time) this generator holds only the chunks still to come and the rest.
                        data = pending[0] if len(pending) == 1 else b"".join(pending)
                        whole = len(data) - len(data) % chunk_size
                        ready = [
                            data[at : at + chunk_size] for at in range(whole - chunk_size, -1, -chunk_size)
                        ]
                        pending = [data[whole:]] if whole < len(data) else []
                        pending_size = len(data) - whole
                        del data
                        while ready:
                            yield ready.pop()
                if last:
                    break
            if pending:
                yield b"".join(pending)
            if left is not None and left <= 0:
                return
        except httpx.TransportError as exc:
            raise errors.UpstreamUnavailable(
                f"download interrupted after {received} bytes ({type(exc).__name__})"
            ) from exc
        if (self._expected is not None and received < self._expected) or skip:
            expected = self._expected if self._expected is not None else "more"
            raise errors.UpstreamUnavailable(f"download cut short: got {received} of {expected} bytes")


class OutputDownloads:
    """`http` is built here when not given (and then closed by aclose), with one connection per allowed
    download (`max_downloads`)."""

    def __init__(
        self,
        *,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, immutable default
        http: httpx.AsyncClient | None = None,
        max_downloads: int = 256,
        timeout: float = 30.0,
        observer: UpstreamObserver | None = None,
    ) -> None:
        if max_downloads < 1:
            raise ValueError("max_downloads must be at least 1")
        raise_body_read_size()
        owned = http is None
        if http is None:
            http = self._pool(max_downloads, timeout)
        self._transport = Transport(
            http,
            retry=retry,
            timeout=timeout,
            observer=observer,
            breaker=None,
            network_error="network error on {what}",
            owned=owned,
        )

    @staticmethod
    def _pool(max_downloads: int, timeout: float) -> httpx.AsyncClient:
        # One connection per download and at most one download per StreamContent call at a time (a resume
        # opens the next one after closing the last), so `max_downloads` = the stream limit means a
        # download never waits for a connection. Few idle connections are kept, briefly: each output is
        # one long read from a CDN host, and reuse matters only for back-to-back reads of the same host.
        return httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_downloads,
                max_keepalive_connections=min(max_downloads, DOWNLOAD_KEEPALIVE),
                keepalive_expiry=DOWNLOAD_KEEPALIVE_EXPIRY,
            ),
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            follow_redirects=False,  # per request: open_output follows a CDN's redirects
        )

    @property
    def _http(self) -> httpx.AsyncClient:
        return self._transport.http

    async def aclose(self) -> None:
        await self._transport.aclose()

    @asynccontextmanager
    async def open_output(
        self, url: str, *, start: int = 0, end: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[OutputStream]:
        """Open a signed output URL for reading bytes [start, end). No Runway credentials are sent."""
        if start < 0 or (end is not None and end <= start):
            raise ValueError("need 0 <= start < end")
        what = "output download"
        headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
        if start > 0 or end is not None:
            headers["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))

        async def attempt() -> tuple[httpx.Response, OutputStream]:
            timeout = self._transport.attempt_timeout(deadline, what)
            request = self._http.build_request("GET", url, headers=headers, timeout=timeout)
            for name in ("Authorization", "X-Runway-Version"):  # even if an injected client has defaults
                request.headers.pop(name, None)
            response = await self._transport.send(
                OUTPUT_ENDPOINT, request, what=what, deadline=deadline, stream=True, follow_redirects=True
            )
            try:
                return response, self._output_stream(response, start, end, what)
            except BaseException:
                await response.aclose()
                raise

        response, stream = await self._transport.retrying(
            attempt, deadline=deadline, what=what, endpoint=OUTPUT_ENDPOINT
        )
        try:
            yield stream
        finally:
            await response.aclose()

    def _output_stream(
        self, response: httpx.Response, start: int, end: int | None, what: str
    ) -> OutputStream:
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        length_header = response.headers.get("content-length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if status == 416:
            raise errors.OutOfRange(f"offset {start} is past the end of the output")
        if status in (403, 404, 410):
            raise errors.OutputExpired(f"output URL no longer works (HTTP {status})")
        if status == 429 or status >= 500 or status == 408:
            raise Retry(unavailable(response, what))
        limit = None if end is None else end - start
        if status == 206:
            m = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
            if m is None or int(m.group(1)) != start:
                raise errors.UpstreamProtocolError("output server sent an unexpected Content-Range")
            first, last = int(m.group(1)), int(m.group(2))
            total = None if m.group(3) == "*" else int(m.group(3))
            return OutputStream(
                response,
                start=start,
                total_size=total,
                content_type=content_type,
                skip=0,
                limit=limit,
                expected=length if length is not None else last - first + 1,
            )
        if status == 200:
            if start > 0 and length is not None and start >= length:
                raise errors.OutOfRange(f"offset {start} is past the end of the output ({length} bytes)")
            if start > 0:
                # The server ignored our Range: we read from 0 and drop the first `start` bytes.
                log.info("output server ignored Range; skipping %d bytes", start)
            return OutputStream(
                response,
                start=start,
                total_size=length,
                content_type=content_type,
                skip=start,
                limit=limit,
                expected=length,
            )
        raise errors.UpstreamProtocolError(f"output server answered HTTP {status}")
