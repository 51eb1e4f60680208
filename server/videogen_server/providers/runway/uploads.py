"""EphemeralUploads: a local file into Runway's ephemeral storage (runway-api.md §2.2), as a runway:// URI.

Two steps: POST /v1/uploads through the /v1 client (our key, the version header, its retries and breaker)
answers a presigned storage form; then the file goes to that form's URL as multipart/form-data:

- WITHOUT our Runway key (or version header), even if an injected client carries them as defaults: the
  URL is a storage host's, signed by the form's policy; our key must never leave for it.
- The signed fields first, then the ``file`` part: S3-style POSTs ignore fields after the file.
- With an explicit Content-Length: S3-style POSTs refuse a chunked body (411). The body is framed here
  (the framing's length is known) and the file is streamed from disk in chunks, each read in a worker
  thread: never whole in memory (up to 200 MB), never a blocking read on the event loop.

An upload is not a paid generation, so a 5xx, a 429, a network failure or a refused (expired) policy
retries the WHOLE two-step upload with a fresh form, within the retry policy and the deadline. Uploads
have a small connection pool of their own: an upload holds its connection for as long as the file takes
to send, and must not take one that an output download (one per StreamContent call) counts on.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO

import httpx

from videogen_server import errors
from videogen_server.providers.runway.api import RunwayClient
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.providers.runway.transport import (
    CONNECT_TIMEOUT,
    Retry,
    Transport,
    UpstreamObserver,
    unavailable,
)
from videogen_server.providers.runway.wire import UploadTicket

# The `endpoint` label of metrics and spans: never the URL (it carries a signed key).
STORAGE_ENDPOINT = "upload storage"
UPLOAD_CONNECTIONS = 16
READ_SIZE = 1024 * 1024  # bytes read from disk (in a worker thread) per chunk sent
_S3_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")


def _quote(value: str) -> str:
    """A name or filename inside a quoted Content-Disposition parameter, escaped as browsers do (HTML
    form submission): a quote or a line break can then never end the parameter or the header."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def multipart_framing(
    fields: Mapping[str, str], filename: str, content_type: str, boundary: str
) -> tuple[bytes, bytes]:
    """The bytes before the file (every field, then the file part's headers) and after it."""
    head = bytearray()
    for name, value in fields.items():
        head += f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
        head += value.encode() + b"\r\n"
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{_quote(filename)}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return bytes(head), f"\r\n--{boundary}--\r\n".encode()


async def _file_body(path: Path, size: int, head: bytes, tail: bytes) -> AsyncIterator[bytes]:
    """The request body: `head`, exactly `size` bytes of the file (read off the event loop), `tail`."""
    yield head
    f: IO[bytes] = await asyncio.to_thread(path.open, "rb")
    try:
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(READ_SIZE, left))
            if not chunk:
                raise ValueError(f"upload file shrank: {size - left} of {size} bytes")
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(f.close)
    yield tail


class EphemeralUploads:
    """`http` is built here when not given (and then closed by aclose)."""

    def __init__(
        self,
        *,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, immutable default
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        observer: UpstreamObserver | None = None,
    ) -> None:
        owned = http is None
        if http is None:
            http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=UPLOAD_CONNECTIONS, max_keepalive_connections=4),
                timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
                follow_redirects=False,
            )
        self._transport = Transport(
            http,
            retry=retry,
            timeout=timeout,
            observer=observer,
            breaker=None,  # a storage host's health says nothing about the API's
            network_error="network error on {what}",
            owned=owned,
        )

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def upload(
        self,
        api: RunwayClient,
        path: Path,
        *,
        filename: str,
        size: int,
        content_type: str,
        deadline: float | None = None,
    ) -> str:
        """Upload `size` bytes of `path`; returns the runway:// URI."""
        what = "upload to Runway's storage"

        async def attempt() -> str:
            ticket = await api.start_upload(filename, deadline=deadline)
            await self._post(
                ticket,
                path,
                filename=filename,
                size=size,
                content_type=content_type,
                deadline=deadline,
                what=what,
            )
            return ticket.runway_uri

        return await self._transport.retrying(
            attempt, deadline=deadline, what=what, endpoint=STORAGE_ENDPOINT
        )

    async def _post(
        self,
        ticket: UploadTicket,
        path: Path,
        *,
        filename: str,
        size: int,
        content_type: str,
        deadline: float | None,
        what: str,
    ) -> None:
        boundary = secrets.token_hex(16)
        head, tail = multipart_framing(ticket.fields, filename, content_type, boundary)
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            # Explicit: with it, httpx sends the streamed body as is instead of chunked (S3 refuses that).
            "Content-Length": str(len(head) + size + len(tail)),
            "Accept": "*/*",
        }
        timeout = self._transport.attempt_timeout(deadline, what)
        request = self._transport.http.build_request(
            "POST",
            ticket.upload_url,
            headers=headers,
            content=_file_body(path, size, head, tail),
            timeout=timeout,
        )
        for name in ("Authorization", "X-Runway-Version"):  # even if an injected client has defaults
            request.headers.pop(name, None)
        response = await self._transport.send(STORAGE_ENDPOINT, request, what=what, deadline=deadline)
        _check_storage_answer(response, what)


def _check_storage_answer(response: httpx.Response, what: str) -> None:
    """2xx (S3 answers 204): done. 408/429/5xx, and a 403 (the signed policy expired while we were
    sending): Retry, with a fresh form. 400 (the storage refused the file itself): UpstreamRejected.
    Anything else means we built the request wrong: UpstreamProtocolError."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in (408, 429) or status >= 500:
        raise Retry(unavailable(response, what))
    text = response.text[:2000] if response.content else ""
    code = m.group(1) if (m := _S3_CODE.search(text)) else ""
    message = m.group(1) if (m := _S3_MESSAGE.search(text)) else ""
    said = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 403:
        raise Retry(
            errors.UpstreamUnavailable(
                f"Runway's storage refused the upload form ({said})", http_status=status
            )
        )
    if status == 400:
        raise errors.UpstreamRejected(
            f"Runway's storage refused the file ({said})", [errors.FieldViolation("data", said)]
        )
    raise errors.UpstreamProtocolError(f"Runway's storage answered {said} to the upload")
