"""What every HTTP call of the Runway adapter shares (design §3 errors and retries): one httpx client with its
observer and per-attempt timeouts, the one place where httpx's exceptions become our errors, and the one
retry loop. The /v1 client (api.py) and the output downloads (downloads.py) each own a Transport.

An attempt either returns, raises `Retry` (a failure that may pass: the loop backs off and tries again while
attempts and the deadline allow), or raises a final error. What counts as retryable depends on whether the
request is idempotent (``send(..., idempotent=...)``): a read may be repeated after any network failure, a
paid create only when it cannot have reached the server.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import httpx

from videogen_server import errors
from videogen_server.providers.runway.breaker import CircuitBreaker
from videogen_server.providers.runway.retry import RetryPolicy

CONNECT_TIMEOUT = 5.0
_T = TypeVar("_T")
# Connection never opened: the server cannot have received the request.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The connection could not be opened: what the circuit breaker counts (a PoolTimeout is ours).
_CONNECT_FAILED = (httpx.ConnectError, httpx.ConnectTimeout)


class UpstreamCall:
    """How one HTTP request ended: `status` is None when no response came (network error, cancelled)."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status: int | None = None


class UpstreamObserver(Protocol):
    """Told about every HTTP request and retry (metrics and tracing; see telemetry.py)."""

    def request(
        self, endpoint: str, method: str, host: str, key: str = ""
    ) -> AbstractContextManager[UpstreamCall]:
        """`key`: the name of the Runway key the request is made with ("" for output downloads: signed CDN
        URLs, no key), a metrics label; never the secret."""
        ...

    def retry(self, endpoint: str, key: str = "") -> None: ...

    def circuit(self, open: bool) -> None: ...


class Retry(Exception):
    """This attempt failed in a way that may pass; `error` is raised if no retry is left."""

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


def unavailable(response: httpx.Response, what: str) -> errors.UpstreamUnavailable:
    """A 408/429/5xx answer, as the error a caller gets once retries are spent."""
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


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class Transport:
    """One httpx client, and how requests to it are sent and retried.

    `breaker`: the circuit breaker requests pass first (the /v1 API); None: never (output downloads, on CDN
    hosts whose health says nothing about the API's). `network_error`: the message of a retryable network
    failure, formatted with `what`. `owned`: the client was built here, so `aclose` closes it."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        retry: RetryPolicy,
        timeout: float,
        observer: UpstreamObserver | None,
        breaker: CircuitBreaker | None,
        network_error: str,
        owned: bool,
    ) -> None:
        self.http = http
        self.timeout = timeout
        self._retry = retry
        self._observer = observer
        self._breaker = breaker
        self._network_error = network_error
        self._owned = owned

    async def aclose(self) -> None:
        if self._owned:
            self._owned = False
            await self.http.aclose()

    def attempt_timeout(self, deadline: float | None, what: str) -> httpx.Timeout:
        """The service's timeout, cut to what is left of the caller's deadline."""
        t = self.timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.DeadlineExceeded(f"deadline exceeded before {what}")
            t = min(t, remaining)
        return httpx.Timeout(connect=min(CONNECT_TIMEOUT, t), read=t, write=t, pool=t)

    # --- one attempt ---------------------------------------------------------------------------------

    async def send(
        self,
        endpoint: str,
        request: httpx.Request,
        *,
        what: str,
        deadline: float | None,
        idempotent: bool = True,
        stream: bool = False,
        follow_redirects: bool = False,
        key: str = "",
    ) -> httpx.Response:
        """Send one attempt (through the breaker, if any), observed under `endpoint` (a route template, never
        a URL with ids or signed tokens) and `key` (the Runway key's name). httpx's exceptions become ours
        here and nowhere else."""
        try:
            if self._breaker is None:
                return await self._transmit(endpoint, request, stream, follow_redirects, key)
            return await self._through_breaker(
                self._breaker, endpoint, request, stream, follow_redirects, key
            )
        except httpx.TransportError as exc:
            raise self._transport_failure(exc, what, deadline, idempotent) from exc

    def _transport_failure(
        self, exc: httpx.TransportError, what: str, deadline: float | None, idempotent: bool
    ) -> Exception:
        not_sent = isinstance(exc, NOT_SENT)
        if idempotent or not_sent:
            if isinstance(exc, httpx.TimeoutException) and _past(deadline):
                # The caller's deadline cut the attempt (attempt_timeout): the caller's error, not Runway's.
                where = "during" if idempotent else "connecting for"
                return errors.DeadlineExceeded(f"deadline exceeded {where} {what}")
            message = self._network_error if idempotent else "could not connect to Runway for {what}"
            error = errors.UpstreamUnavailable(message.format(what=what))
            error.__cause__ = exc
            return Retry(error)
        # Sent (or maybe sent: a stale keep-alive connection fails on write with ReadError or
        # RemoteProtocolError) and no answer: a create may have started the task.
        return errors.UpstreamOutcomeUnknown(
            f"no answer from Runway to {what} ({type(exc).__name__}); the task may or may not exist"
        )

    async def _through_breaker(
        self,
        breaker: CircuitBreaker,
        endpoint: str,
        request: httpx.Request,
        stream: bool,
        follow_redirects: bool,
        key: str,
    ) -> httpx.Response:
        probe = breaker.admit()  # UpstreamUnavailable (circuit=open): nothing is sent
        try:
            response = await self._transmit(endpoint, request, stream, follow_redirects, key)
        except _CONNECT_FAILED:
            if breaker.connect_failed(probe) and self._observer is not None:
                self._observer.circuit(True)
            raise
        except BaseException:
            breaker.released(probe)
            raise
        if breaker.connected(probe) and self._observer is not None:
            self._observer.circuit(False)
        return response

    async def _transmit(
        self, endpoint: str, request: httpx.Request, stream: bool, follow_redirects: bool, key: str
    ) -> httpx.Response:
        if self._observer is None:
            return await self.http.send(request, stream=stream, follow_redirects=follow_redirects)
        with self._observer.request(endpoint, request.method, request.url.host, key) as call:
            response = await self.http.send(request, stream=stream, follow_redirects=follow_redirects)
            call.status = response.status_code
            return response

    # --- the retry loop ------------------------------------------------------------------------------

    async def retrying(
        self,
        attempt: Callable[[], Awaitable[_T]],
        *,
        deadline: float | None,
        what: str,
        endpoint: str,
        key: str = "",
    ) -> _T:
        """Run `attempt` until it returns or raises a final error; after a `Retry`, back off and run it
        again while attempts and the deadline allow."""
        n = 0
        while True:
            try:
                return await attempt()
            except Retry as retry:
                error = retry.error
            await self._backoff(n, error, deadline, what, endpoint, key)
            n += 1

    async def _backoff(
        self,
        attempt: int,
        error: errors.UpstreamUnavailable,
        deadline: float | None,
        what: str,
        endpoint: str,
        key: str,
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
            self._observer.retry(endpoint, key)
        await self._retry.sleep(delay)
