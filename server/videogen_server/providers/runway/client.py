"""RunwayClient: the httpx adapter for Runway's developer API (runway-api.md; design §3 errors and retries).

- Every /v1 call carries the bearer key and X-Runway-Version; output URLs (signed CDN URLs on other hosts)
  never get either.
- Reads retry on 429/5xx/network errors/malformed bodies, with backoff and jitter, within the deadline.
- A create (a PAID task) is retried only when Runway cannot have started it: 429, or the connection
  never opened. Anything ambiguous after the body may have been sent raises UpstreamOutcomeUnknown.
- The API key never appears in a log line, an exception message or a repr.
- While the API cannot be reached at all, a circuit breaker (breaker.py) fails /v1 calls at once;
  output downloads (other hosts) never go through it.
- API calls and output downloads use two separate connection pools. A download holds its connection for the
  whole life of a StreamContent call (as long as the caller takes to read), so with one pool, streams held
  open by slow readers left no connection for creates and polls (they waited until their deadline).
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol, TypeVar

import httpx

from videogen_server import errors
from videogen_server.domain.ids import is_canonical_uuid
from videogen_server.domain.task import UpstreamTask
from videogen_server.observability import logs
from videogen_server.providers.runway.breaker import CircuitBreaker
from videogen_server.providers.runway.catalog import wire_path_to_field
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.providers.runway.wire import CreatedTask, parse_created, parse_error, parse_task

logger = logging.getLogger(__name__)

API_VERSION = "2024-11-06"
CONNECT_TIMEOUT = 5.0
_T = TypeVar("_T")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# Connection never opened: Runway cannot have received the create.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The connection to Runway could not be opened: what the circuit breaker counts (a PoolTimeout is ours).
_CONNECT_FAILED = (httpx.ConnectError, httpx.ConnectTimeout)
_CREATE_PATH = re.compile(r"/v1/[a-z0-9_]+")
# The `endpoint` label of metrics and spans: a route template, never a URL with ids or signed tokens.
TASK_ENDPOINT = "/v1/tasks/{id}"
ORGANIZATION_ENDPOINT = "/v1/organization"
OUTPUT_ENDPOINT = "output"
# The API pool: creates, polls, cancels. Output downloads have a pool of their own (sized by the caller).
API_CONNECTIONS = 100
DOWNLOAD_KEEPALIVE = 20
DOWNLOAD_KEEPALIVE_EXPIRY = 5.0


class UpstreamCall:
    """How one HTTP request ended: `status` is None when no response came (network error, cancelled)."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status: int | None = None


class UpstreamObserver(Protocol):
    """Told about every HTTP request and retry (metrics and tracing; see telemetry.py)."""

    def request(self, endpoint: str, method: str, host: str) -> AbstractContextManager[UpstreamCall]: ...

    def retry(self, endpoint: str) -> None: ...

    def circuit(self, open: bool) -> None: ...


class _Retry(Exception):
    """Internal: this attempt failed in a retryable way; `error` is raised if no retry is left."""

    def __init__(self, error: errors.UpstreamUnavailable) -> None:
        super().__init__(error.message)
        self.error = error


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds (delta-seconds or HTTP-date; also retry-after-ms). None when absent/odd."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


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
        received = 0
        skip = self._skip
        left = self._limit
        try:
            async for raw in self._response.aiter_bytes(chunk_size):
                received += len(raw)
                chunk = raw
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk = chunk[skip:]
                    skip = 0
                if left is not None:
                    if len(chunk) >= left:
                        if left:
                            yield chunk[:left]
                        return
                    left -= len(chunk)
                yield chunk
        except httpx.TransportError as exc:
            raise errors.UpstreamUnavailable(
                f"download interrupted after {received} bytes ({type(exc).__name__})"
            ) from exc
        if (self._expected is not None and received < self._expected) or skip:
            expected = self._expected if self._expected is not None else "more"
            raise errors.UpstreamUnavailable(f"download cut short: got {received} of {expected} bytes")


class RunwayClient:
    """`http` is the client for /v1 API calls and `downloads` the one for output downloads; each is built
    here when not given (and then closed by aclose). An injected `http` without `downloads` serves both:
    the injector chose the transport (tests answer both kinds of request from one mock transport)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, immutable default
        http: httpx.AsyncClient | None = None,
        downloads: httpx.AsyncClient | None = None,
        max_downloads: int = 256,
        timeout: float = 30.0,
        observer: UpstreamObserver | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if max_downloads < 1:
            raise ValueError("max_downloads must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._observer = observer
        self._breaker = breaker or CircuitBreaker()
        self._key = api_key
        self._retry = retry
        self._timeout = timeout
        self._owned: list[httpx.AsyncClient] = []  # the clients built here, closed by aclose
        if http is None:
            http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=API_CONNECTIONS, max_keepalive_connections=20),
                timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
                follow_redirects=False,
            )
            self._owned.append(http)
            if downloads is None:
                downloads = self._download_client(max_downloads, timeout)
                self._owned.append(downloads)
        self._http = http
        self._downloads = downloads or http

    @staticmethod
    def _download_client(max_downloads: int, timeout: float) -> httpx.AsyncClient:
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
            follow_redirects=False,  # per request: open_output follows a CDN's redirects, API calls never
        )

    def __repr__(self) -> str:
        return f"RunwayClient(base_url={self._base_url!r}, api_key=<redacted>)"

    async def aclose(self) -> None:
        owned, self._owned = self._owned, []
        async with AsyncExitStack() as stack:  # each is closed even if closing another fails
            for client in owned:
                stack.push_async_callback(client.aclose)

    # --- plumbing ----------------------------------------------------------------------------------

    def _api_headers(self, *, post: bool = False) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._key}",
            "X-Runway-Version": API_VERSION,
            "Accept": "application/json",
        }
        if post:
            headers["Content-Type"] = "application/json"
        return headers

    def _scrub(self, text: str) -> str:
        """Upstream text goes into our messages: make sure the key can never ride along."""
        if self._key and self._key in text:
            text = text.replace(self._key, "<redacted>")
        return text[:500]

    def _attempt_timeout(self, deadline: float | None, what: str) -> httpx.Timeout:
        t = self._timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.DeadlineExceeded(f"deadline exceeded before {what}")
            t = min(t, remaining)
        return httpx.Timeout(connect=min(CONNECT_TIMEOUT, t), read=t, write=t, pool=t)

    def _create_timeout(self, deadline: float | None, what: str) -> httpx.Timeout:
        """A paid POST: the caller's deadline bounds only what happens before the request can reach Runway
        (waiting for a pooled connection, connecting). Once the body is on its way, the answer is awaited
        under the service's own timeout, whoever still listens: cut at a caller's deadline, a task Runway
        did start would be paid for and never recorded (its outcome unknown for good)."""
        before_sending = self._attempt_timeout(deadline, what)
        t = self._timeout
        return httpx.Timeout(connect=before_sending.connect, pool=before_sending.pool, read=t, write=t)

    @staticmethod
    def _past(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    async def _send(
        self, endpoint: str, request: httpx.Request, *, stream: bool = False, follow_redirects: bool = False
    ) -> httpx.Response:
        """Every request goes out here, so that the observer sees each one (named by `endpoint`).
        /v1 calls pass the circuit breaker first; output downloads (CDN hosts) do not."""
        if endpoint == OUTPUT_ENDPOINT:
            return await self._transmit(endpoint, request, stream=stream, follow_redirects=follow_redirects)
        probe = self._breaker.admit()  # UpstreamUnavailable (circuit=open): nothing is sent
        try:
            response = await self._transmit(
                endpoint, request, stream=stream, follow_redirects=follow_redirects
            )
        except _CONNECT_FAILED:
            if self._breaker.connect_failed(probe) and self._observer is not None:
                self._observer.circuit(True)
            raise
        except BaseException:
            self._breaker.released(probe)
            raise
        if self._breaker.connected(probe) and self._observer is not None:
            self._observer.circuit(False)
        return response

    async def _transmit(
        self, endpoint: str, request: httpx.Request, *, stream: bool, follow_redirects: bool
    ) -> httpx.Response:
        http = self._downloads if endpoint == OUTPUT_ENDPOINT else self._http
        if self._observer is None:
            return await http.send(request, stream=stream, follow_redirects=follow_redirects)
        with self._observer.request(endpoint, request.method, request.url.host) as call:
            response = await http.send(request, stream=stream, follow_redirects=follow_redirects)
            call.status = response.status_code
            return response

    async def _backoff(
        self,
        attempt: int,
        error: errors.UpstreamUnavailable,
        deadline: float | None,
        what: str,
        endpoint: str,
    ) -> None:
        """Sleep before the next attempt, or raise `error` (no attempt left / a long Retry-After) or
        DeadlineExceeded (the wait would pass the deadline)."""
        if attempt + 1 >= self._retry.max_attempts:
            raise error
        delay = self._retry.delay(attempt, error.retry_after)
        if delay is None:
            raise error
        if deadline is not None and time.monotonic() + delay >= deadline:
            raise errors.DeadlineExceeded(f"deadline exceeded while retrying {what}: {error.message}")
        if self._observer is not None:
            self._observer.retry(endpoint)
        await self._retry.sleep(delay)

    def _error_text(self, response: httpx.Response) -> tuple[str, list[Any]]:
        try:
            data = json.loads(response.content) if response.content else None
        except ValueError:
            return "", []
        message, issues = parse_error(data)
        return self._scrub(message), issues

    def _auth_failure(self, response: httpx.Response, what: str) -> NoReturn:
        logger.error(
            "Runway rejected the service's API key (HTTP %s on %s): check RUNWAYML_API_SECRET",
            response.status_code,
            what,
        )
        raise errors.UpstreamAuth(f"Runway rejected the service's credentials (HTTP {response.status_code})")

    def _unavailable(self, response: httpx.Response, what: str) -> errors.UpstreamUnavailable:
        status = response.status_code
        if status == 429:
            return errors.UpstreamUnavailable(
                f"Runway rate limit on {what} (HTTP 429)",
                reason="UPSTREAM_RATE_LIMITED",
                retry_after=parse_retry_after(response.headers),
                http_status=429,
            )
        return errors.UpstreamUnavailable(
            f"Runway unavailable on {what} (HTTP {status})",
            retry_after=parse_retry_after(response.headers),
            http_status=status,
        )

    async def _read(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        deadline: float | None,
        what: str,
        handle: Callable[[httpx.Response], _T],
    ) -> _T:
        """A retried idempotent call. `handle` maps a response to a value or raises (_Retry to retry)."""
        url = self._base_url + path
        attempt = 0
        while True:
            timeout = self._attempt_timeout(deadline, what)
            try:
                request = self._http.build_request(method, url, headers=self._api_headers(), timeout=timeout)
                response = await self._send(endpoint, request)
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.TimeoutException) and self._past(deadline):
                    raise errors.DeadlineExceeded(f"deadline exceeded during {what}") from exc
                error = errors.UpstreamUnavailable(f"network error talking to Runway on {what}")
                error.__cause__ = exc
            else:
                try:
                    return handle(response)
                except _Retry as retry:
                    error = retry.error
            await self._backoff(attempt, error, deadline, what, endpoint)
            attempt += 1

    def _common_read_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status in (401, 403):
            self._auth_failure(response, what)
        if status == 429 or status >= 500 or status == 408:
            raise _Retry(self._unavailable(response, what))
        if not 200 <= status < 300:
            message, _ = self._error_text(response)
            raise errors.UpstreamProtocolError(
                f"Runway answered HTTP {status} on {what}" + (f": {message}" if message else "")
            )

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise _Retry(
                errors.UpstreamUnavailable(
                    f"Runway sent a malformed response on {what}", reason="UPSTREAM_BAD_RESPONSE"
                )
            ) from None

    @staticmethod
    def _check_task_id(task_id: str) -> None:
        if not is_canonical_uuid(task_id):
            raise ValueError("task id must be a UUID")

    # --- API -----------------------------------------------------------------------------------------

    async def create(self, path: str, body: dict[str, Any], *, deadline: float | None = None) -> CreatedTask:
        """POST a generation. Retried only on 429 and when the connection never opened. `deadline` stops
        new attempts (no paid POST leaves for a caller who is gone), never one already sent."""
        if not path.startswith("/v1/"):
            raise ValueError("create path must start with /v1/")
        what = f"POST {path}"
        endpoint = path if _CREATE_PATH.fullmatch(path) else "/v1/(other)"
        url = self._base_url + path
        content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        attempt = 0
        while True:
            timeout = self._create_timeout(deadline, what)
            try:
                request = self._http.build_request(
                    "POST", url, content=content, headers=self._api_headers(post=True), timeout=timeout
                )
                response = await self._send(endpoint, request)
            except _NOT_SENT as exc:
                if isinstance(exc, httpx.TimeoutException) and self._past(deadline):
                    raise errors.DeadlineExceeded(f"deadline exceeded connecting for {what}") from exc
                error = errors.UpstreamUnavailable(f"could not connect to Runway for {what}")
                error.__cause__ = exc
                await self._backoff(attempt, error, deadline, what, endpoint)
                attempt += 1
                continue
            except httpx.TransportError as exc:
                # Sent (or maybe sent: a stale keep-alive connection fails on write with ReadError or
                # RemoteProtocolError) and no answer: Runway may have started the task.
                raise errors.UpstreamOutcomeUnknown(
                    f"no answer from Runway to {what} ({type(exc).__name__}); the task may or may not exist"
                ) from exc
            status = response.status_code
            if 200 <= status < 300:
                created = self._created(response, what)
                logs.bind_task(created.id)
                return created
            if status == 400:
                self._rejected(response)
            if status in (401, 403):
                self._auth_failure(response, what)
            if status == 429:
                await self._backoff(attempt, self._unavailable(response, what), deadline, what, endpoint)
                attempt += 1
                continue
            if status >= 500:
                raise errors.UpstreamOutcomeUnknown(
                    f"Runway answered HTTP {status} to {what}; the task may or may not exist",
                    http_status=status,
                )
            message, _ = self._error_text(response)
            raise errors.UpstreamProtocolError(
                f"Runway answered HTTP {status} to {what}" + (f": {message}" if message else "")
            )

    def _created(self, response: httpx.Response, what: str) -> CreatedTask:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise errors.UpstreamOutcomeUnknown(
                f"Runway accepted {what} but its answer could not be read; the task may exist",
                http_status=response.status_code,
            )
        return parse_created(data)  # UpstreamProtocolError on a non-UUID id

    def _rejected(self, response: httpx.Response) -> NoReturn:
        message, issues = self._error_text(response)
        if not issues and "credits" in message.lower():
            raise errors.UpstreamCredits(message or "Runway account is out of credits")
        violations = [
            errors.FieldViolation(field=wire_path_to_field(i.path), description=self._scrub(i.message))
            for i in issues
        ]
        raise errors.UpstreamRejected(message or "Runway rejected the request", violations)

    async def get_task(self, task_id: str, *, deadline: float | None = None) -> UpstreamTask:
        self._check_task_id(task_id)
        logs.bind_task(task_id)
        what = "GET task"

        def handle(response: httpx.Response) -> UpstreamTask:
            if response.status_code == 404:
                raise errors.UpstreamNotFound(f"Runway has no task {task_id}")
            self._common_read_status(response, what)
            try:
                task = parse_task(self._json(response, what))
            except errors.UpstreamProtocolError as exc:
                raise _Retry(
                    errors.UpstreamUnavailable(
                        f"Runway sent a malformed task: {exc.message}", reason="UPSTREAM_BAD_RESPONSE"
                    )
                ) from None
            if task.id.lower() != task_id.lower():
                raise errors.UpstreamProtocolError("Runway returned a different task than asked for")
            return task

        return await self._read(
            "GET", f"/v1/tasks/{task_id}", endpoint=TASK_ENDPOINT, deadline=deadline, what=what, handle=handle
        )

    async def delete_task(self, task_id: str, *, deadline: float | None = None) -> bool:
        """True: cancelled/deleted (2xx). False: 404, already gone (the spec says safe to ignore)."""
        self._check_task_id(task_id)
        logs.bind_task(task_id)
        what = "DELETE task"

        def handle(response: httpx.Response) -> bool:
            if response.status_code == 404:
                return False
            self._common_read_status(response, what)
            return True

        return await self._read(
            "DELETE",
            f"/v1/tasks/{task_id}",
            endpoint=TASK_ENDPOINT,
            deadline=deadline,
            what=what,
            handle=handle,
        )

    async def organization(self, *, deadline: float | None = None) -> dict[str, Any]:
        what = "GET organization"

        def handle(response: httpx.Response) -> dict[str, Any]:
            self._common_read_status(response, what)
            data = self._json(response, what)
            if not isinstance(data, dict):
                raise _Retry(
                    errors.UpstreamUnavailable(
                        "Runway sent a malformed organization", reason="UPSTREAM_BAD_RESPONSE"
                    )
                )
            return data

        return await self._read(
            "GET",
            "/v1/organization",
            endpoint=ORGANIZATION_ENDPOINT,
            deadline=deadline,
            what=what,
            handle=handle,
        )

    @asynccontextmanager
    async def open_output(
        self, url: str, *, start: int = 0, end: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[OutputStream]:
        """Open a signed output URL for reading bytes [start, end). No Runway credentials are sent."""
        if start < 0 or (end is not None and end <= start):
            raise ValueError("need 0 <= start < end")
        what = "output download"
        # No Authorization, no X-Runway-Version: these are signed CDN URLs on other hosts.
        headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
        if start > 0 or end is not None:
            headers["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        attempt = 0
        while True:
            timeout = self._attempt_timeout(deadline, what)
            request = self._downloads.build_request("GET", url, headers=headers, timeout=timeout)
            for name in ("Authorization", "X-Runway-Version"):  # even if an injected client has defaults
                request.headers.pop(name, None)
            try:
                response = await self._send(OUTPUT_ENDPOINT, request, stream=True, follow_redirects=True)
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.TimeoutException) and self._past(deadline):
                    raise errors.DeadlineExceeded(f"deadline exceeded during {what}") from exc
                error = errors.UpstreamUnavailable(f"network error on {what}")
                error.__cause__ = exc
                await self._backoff(attempt, error, deadline, what, OUTPUT_ENDPOINT)
                attempt += 1
                continue
            try:
                stream = self._output_stream(response, start, end, what)
            except _Retry as retry:
                await response.aclose()
                await self._backoff(attempt, retry.error, deadline, what, OUTPUT_ENDPOINT)
                attempt += 1
                continue
            except BaseException:
                await response.aclose()
                raise
            try:
                yield stream
            finally:
                await response.aclose()
            return

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
            raise _Retry(self._unavailable(response, what))
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
                logger.info("output server ignored Range; skipping %d bytes", start)
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
