"""RunwayClient: the httpx client of Runway's /v1 API: create, read and delete tasks (runway-api.md; design §3
errors and retries). Output downloads are downloads.py's, on a pool of their own.

- Every call carries the bearer key and X-Runway-Version.
- Reads retry on 408/429/5xx/network errors/malformed bodies, with backoff and jitter, within the deadline.
- A create (a PAID task) is retried only when Runway cannot have started it: 429, or the connection
  never opened. Anything ambiguous after the body may have been sent raises UpstreamOutcomeUnknown.
- The API key never appears in a log line, an exception message or a repr.
- While the API cannot be reached at all, a circuit breaker (breaker.py) fails calls at once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import httpx

from videogen_server import errors
from videogen_server.domain.ids import is_canonical_uuid
from videogen_server.domain.task import UpstreamTask
from videogen_server.observability import logs
from videogen_server.providers.runway.breaker import CircuitBreaker
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.providers.runway.transport import (
    CONNECT_TIMEOUT,
    Retry,
    Transport,
    UpstreamObserver,
    unavailable,
)
from videogen_server.providers.runway.wire import (
    CreatedTask,
    UploadTicket,
    parse_created,
    parse_error,
    parse_task,
    parse_upload_ticket,
    render_path,
)

log = logging.getLogger(__name__)

API_VERSION = "2024-11-06"
API_CONNECTIONS = 100
_CREATE_PATH = re.compile(r"/v1/[a-z0-9_]+")
# The `endpoint` label of metrics and spans: a route template, never a URL with ids.
TASK_ENDPOINT = "/v1/tasks/{id}"
UPLOADS_ENDPOINT = "/v1/uploads"

_T = TypeVar("_T")
# Our field name for a path in Runway's 400 issues.
IssueField = Callable[[Sequence[str | int]], str]


class RunwayClient:
    """`http` is built here when not given (and then closed by aclose). `issue_field` names our field for
    a path in Runway's 400 issues (mapping.wire_path_to_field, given by the provider)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, immutable default
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        observer: UpstreamObserver | None = None,
        breaker: CircuitBreaker | None = None,
        issue_field: IssueField = render_path,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._key = api_key
        self._issue_field = issue_field
        owned = http is None
        if http is None:
            http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=API_CONNECTIONS, max_keepalive_connections=20),
                timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
                follow_redirects=False,
            )
        self._transport = Transport(
            http,
            retry=retry,
            timeout=timeout,
            observer=observer,
            breaker=breaker or CircuitBreaker(),
            network_error="network error talking to Runway on {what}",
            owned=owned,
        )

    @property
    def _http(self) -> httpx.AsyncClient:
        return self._transport.http

    def __repr__(self) -> str:
        return f"RunwayClient(base_url={self._base_url!r}, api_key=<redacted>)"

    async def aclose(self) -> None:
        await self._transport.aclose()

    # --- plumbing ----------------------------------------------------------------------------------

    def _headers(self, *, post: bool = False) -> dict[str, str]:
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

    def _create_timeout(self, deadline: float | None, what: str) -> httpx.Timeout:
        """A paid POST: the caller's deadline bounds only what happens before the request can reach Runway
        (waiting for a pooled connection, connecting). Once the body is on its way, the answer is awaited
        under the service's own timeout, whoever still listens: cut at a caller's deadline, a task Runway
        did start would be paid for and never recorded (its outcome unknown for good)."""
        before_sending = self._transport.attempt_timeout(deadline, what)
        t = self._transport.timeout
        return httpx.Timeout(connect=before_sending.connect, pool=before_sending.pool, read=t, write=t)

    def _error_text(self, response: httpx.Response) -> tuple[str, list[Any]]:
        try:
            data = json.loads(response.content) if response.content else None
        except ValueError:
            return "", []
        message, issues = parse_error(data)
        return self._scrub(message), issues

    def _fail(self, response: httpx.Response, what: str, *, idempotent: bool) -> NoReturn:
        """A non-2xx answer not handled by the call itself, as our error. Retried (Retry): 429 always;
        408 and 5xx for idempotent calls. A create's 5xx may have started the task: outcome unknown."""
        status = response.status_code
        if status in (401, 403):
            log.error(
                "Runway rejected the service's API key (HTTP %s on %s): check RUNWAYML_API_SECRET",
                status,
                what,
            )
            raise errors.UpstreamAuth(f"Runway rejected the service's credentials (HTTP {status})")
        if status == 429 or (idempotent and (status >= 500 or status == 408)):
            raise Retry(unavailable(response, what))
        if status >= 500:
            raise errors.UpstreamOutcomeUnknown(
                f"Runway answered HTTP {status} to {what}; the task may or may not exist", http_status=status
            )
        message, _ = self._error_text(response)
        preposition = "on" if idempotent else "to"
        raise errors.UpstreamProtocolError(
            f"Runway answered HTTP {status} {preposition} {what}" + (f": {message}" if message else "")
        )

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise Retry(
                errors.UpstreamUnavailable(
                    f"Runway sent a malformed response on {what}", reason="UPSTREAM_BAD_RESPONSE"
                )
            ) from None

    @staticmethod
    def _check_task_id(task_id: str) -> None:
        if not is_canonical_uuid(task_id):
            raise ValueError("task id must be a UUID")

    async def _task_call(
        self,
        method: str,
        task_id: str,
        *,
        deadline: float | None,
        what: str,
        handle: Callable[[httpx.Response], _T],
    ) -> _T:
        """A call on /v1/tasks/{id} (idempotent: retried). `handle` maps a response to a value or raises
        (Retry to retry)."""
        url = f"{self._base_url}/v1/tasks/{task_id}"

        async def attempt() -> _T:
            timeout = self._transport.attempt_timeout(deadline, what)
            request = self._http.build_request(method, url, headers=self._headers(), timeout=timeout)
            response = await self._transport.send(TASK_ENDPOINT, request, what=what, deadline=deadline)
            return handle(response)

        return await self._transport.retrying(attempt, deadline=deadline, what=what, endpoint=TASK_ENDPOINT)

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

        async def attempt() -> CreatedTask:
            timeout = self._create_timeout(deadline, what)
            request = self._http.build_request(
                "POST", url, content=content, headers=self._headers(post=True), timeout=timeout
            )
            response = await self._transport.send(
                endpoint, request, what=what, deadline=deadline, idempotent=False
            )
            status = response.status_code
            if 200 <= status < 300:
                created = self._created(response, what)
                logs.bind_task(created.id)
                return created
            if status == 400:
                self._rejected(response)
            self._fail(response, what, idempotent=False)

        return await self._transport.retrying(attempt, deadline=deadline, what=what, endpoint=endpoint)

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
            errors.FieldViolation(field=self._issue_field(i.path), description=self._scrub(i.message))
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
            if not 200 <= response.status_code < 300:
                self._fail(response, what, idempotent=True)
            try:
                task = parse_task(self._json(response, what))
            except errors.UpstreamProtocolError as exc:
                raise Retry(
                    errors.UpstreamUnavailable(
                        f"Runway sent a malformed task: {exc.message}", reason="UPSTREAM_BAD_RESPONSE"
                    )
                ) from None
            if task.id.lower() != task_id.lower():
                raise errors.UpstreamProtocolError("Runway returned a different task than asked for")
            return task

        return await self._task_call("GET", task_id, deadline=deadline, what=what, handle=handle)

    async def delete_task(self, task_id: str, *, deadline: float | None = None) -> bool:
        """True: cancelled/deleted (2xx). False: 404, already gone (the spec says safe to ignore)."""
        self._check_task_id(task_id)
        logs.bind_task(task_id)
        what = "DELETE task"

        def handle(response: httpx.Response) -> bool:
            if response.status_code == 404:
                return False
            if not 200 <= response.status_code < 300:
                self._fail(response, what, idempotent=True)
            return True

        return await self._task_call("DELETE", task_id, deadline=deadline, what=what, handle=handle)

    async def start_upload(self, filename: str, *, deadline: float | None = None) -> UploadTicket:
        """POST /v1/uploads (runway-api.md §2.2): a presigned storage form for one file. Nothing is paid
        and nothing is stored yet, so it is retried like a read (5xx, 429, network errors, malformed
        answers). A 400 is UpstreamRejected, or UpstreamCredits when the account has none (uploads need
        purchased credits)."""
        what = "POST /v1/uploads"
        url = self._base_url + UPLOADS_ENDPOINT
        content = json.dumps({"filename": filename, "type": "ephemeral"}, ensure_ascii=False).encode("utf-8")

        async def attempt() -> UploadTicket:
            timeout = self._transport.attempt_timeout(deadline, what)
            request = self._http.build_request(
                "POST", url, content=content, headers=self._headers(post=True), timeout=timeout
            )
            response = await self._transport.send(UPLOADS_ENDPOINT, request, what=what, deadline=deadline)
            if response.status_code == 400:
                self._rejected(response)
            if not 200 <= response.status_code < 300:
                self._fail(response, what, idempotent=True)
            try:
                return parse_upload_ticket(self._json(response, what))
            except errors.UpstreamProtocolError as exc:
                raise Retry(
                    errors.UpstreamUnavailable(
                        f"Runway sent a malformed upload answer: {exc.message}",
                        reason="UPSTREAM_BAD_RESPONSE",
                    )
                ) from None

        return await self._transport.retrying(
            attempt, deadline=deadline, what=what, endpoint=UPLOADS_ENDPOINT
        )
