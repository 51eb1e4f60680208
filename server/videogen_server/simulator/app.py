"""aiohttp routes of the simulator: Runway's /v1 API, signed output URLs, and /_sim admin routes."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from videogen_server.simulator.accounts import Account, Accounts
from videogen_server.simulator.config import SimulatorConfig
from videogen_server.simulator.faults import Fault, FaultPlan
from videogen_server.simulator.media import OutputMedia, RangeNotSatisfiable, parse_range
from videogen_server.simulator.models import ENDPOINTS, CreateRejected, Endpoint, validate_create
from videogen_server.simulator.own_outputs import resolve_own_outputs
from videogen_server.simulator.signing import UrlSigner
from videogen_server.simulator.tasks import Task, TaskStore
from videogen_server.simulator.uploads import FILENAME_MAX, UploadStore, receive, resolve_inputs, s3_error
from videogen_server.simulator.validation import DOC_URL

API_VERSION: Final = "2024-11-06"
# Per-request storage: the route label a request is counted under, and the account it authenticated as.
_ROUTE: Final = web.RequestKey("sim_route", str)
_ACCOUNT: Final = web.RequestKey("sim_account", Account)
NOT_ENOUGH_CREDITS: Final = "You do not have enough credits to run this task."
CHUNK: Final = 256 * 1024
_UUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_STATUS_TEXT: Final = {
    401: "Invalid API key or API key not provided.",
    403: "You do not have permission to access this resource.",
    404: "Not found.",
    429: "You have exceeded the rate limit for this model. Please try again later.",
    500: "An internal error occurred.",
    502: "Bad gateway.",
    503: "The service is temporarily unavailable. Please try again later.",
    504: "Gateway timeout.",
}


@dataclass
class State:
    """Everything the handlers share; owned by ``RunwaySimulator``."""

    api_key: str
    store: TaskStore  # the first key's tasks (accounts.py: every key has its own)
    faults: FaultPlan
    signer: UrlSigner
    request_counts: Counter[tuple[str, str]]
    uploads: UploadStore  # ephemeral uploads (uploads.py); one store for every key
    # Issue 12: several keys, each its own organization, and their requests counted per key name.
    accounts: Accounts | None = None
    key_counts: Counter[tuple[str, str, str]] | None = None

    @property
    def config(self) -> SimulatorConfig:
        return self.store.config

    def account(self, request: web.Request) -> Account:
        """The account that `_begin` authenticated the request as."""
        return request[_ACCOUNT]

    def find_task(self, task_id: str) -> Task | None:
        """A task of any key (signed output URLs carry no key: they are the CDN's)."""
        if self.accounts is None:
            return self.store.get(task_id)
        for store in self.accounts.stores():
            task = store.get(task_id)
            if task is not None:
                return task
        return None

    def store_of(self, task: Task) -> TaskStore:
        if self.accounts is not None:
            for store in self.accounts.stores():
                if store.get(task.id) is task:
                    return store
        return self.store


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class _Dropped(Exception):
    """Raised after the connection was closed on purpose; the middleware turns it into no response."""


def _drop(request: web.Request) -> _Dropped:
    transport = request.transport
    if transport is not None:
        transport.close()
    return _Dropped()


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except _Dropped:
        raise asyncio.CancelledError from None
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return _error(exc.status, exc.reason, docUrl=DOC_URL)
        raise


class Handlers:
    def __init__(self, state: State) -> None:
        self.s = state

    # --- shared prologue: faults, then auth and version -------------------------------------------

    async def _begin(self, request: web.Request, route: str) -> tuple[Fault | None, web.Response | None]:
        fault = self.s.faults.take(route)
        if fault is not None:
            if fault.delay:
                # Every kind may answer late: "slow" then answers normally, the others misbehave late.
                await asyncio.sleep(fault.delay)
            if fault.kind == "slow":
                fault = None
            elif fault.kind == "status":
                return None, self._status_fault(fault)
            elif fault.kind == "reset":
                await request.read()
                raise _drop(request)
            elif fault.kind == "expired_url":
                return None, _error(403, "Request has expired")
        if route != "output":
            account = self._authenticate(request)
            if account is None:
                return fault, _error(401, _STATUS_TEXT[401])
            version = request.headers.get("X-Runway-Version")
            if version != API_VERSION:
                what = "Missing" if version is None else "Invalid"
                return fault, _error(
                    400, f"{what} X-Runway-Version header: expected {API_VERSION}.", docUrl=DOC_URL
                )
        return fault, None

    def _authenticate(self, request: web.Request) -> Account | None:
        """The account whose secret is the bearer token, counted per key; None: 401."""
        auth = request.headers.get("Authorization", "")
        if self.s.accounts is None:
            raise RuntimeError("the simulator's State needs its accounts (RunwaySimulator builds them)")
        account = self.s.accounts.by_secret(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None
        if account is not None:
            request[_ACCOUNT] = account
            if self.s.key_counts is not None:
                label = request.get(_ROUTE, request.path)
                self.s.key_counts[(account.name, request.method, label)] += 1
        return account

    @staticmethod
    def _status_fault(fault: Fault) -> web.Response:
        response = _error(fault.status, fault.message or _STATUS_TEXT.get(fault.status, "Injected fault."))
        if fault.retry_after is not None:
            ra = fault.retry_after
            response.headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        return response

    @staticmethod
    def _malformed() -> web.Response:
        return web.Response(status=200, text='{"id": "3f1c', content_type="application/json")

    def _count(self, request: web.Request, route: str) -> None:
        self.s.request_counts[(request.method, route)] += 1
        request[_ROUTE] = route  # the per-key count, once the key is known (_authenticate)

    # --- /v1 ----------------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        endpoint: Endpoint = next(e for e in ENDPOINTS if request.path == f"/v1/{e}")
        self._count(request, f"/v1/{endpoint}")
        fault, early = await self._begin(request, "create")
        if early is not None:
            return early
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return _error(400, "Invalid JSON in request body.", docUrl=DOC_URL)
        # Runway's own output URLs (Remix) are trusted inputs: checked and recorded here (own_outputs.py).
        own = await resolve_own_outputs(
            str(request.url.origin()),
            self.s.signer,
            self.s.find_task,
            lambda task: self.s.store_of(task).snapshot(task).status,
            body,
        )
        if isinstance(own, web.Response):
            return own
        body, own_inputs = own
        try:
            accepted = validate_create(endpoint, body)
        except CreateRejected as exc:
            return web.json_response(exc.body, status=400)
        account = self.s.account(request)
        # Runway fetches the assets after validating; only this key's organization's uploads exist for it.
        inputs = resolve_inputs(self.s.uploads, body, account.name)
        if isinstance(inputs, web.Response):
            return inputs
        if (fault is not None and fault.kind == "credits") or accepted.credits > account.org.credits:
            return _error(400, NOT_ENOUGH_CREDITS)
        daily = account.org.daily(accepted.model)
        if daily is not None and account.store.daily_count(accepted.model) >= daily:
            return _error(429, f"You have reached the daily generation limit for {accepted.model}.")
        task = account.store.create(accepted.model, accepted.credits, accepted.prompt_text)
        task.inputs = {**own_inputs, **inputs}
        if fault is not None and fault.kind == "reset_after_create":
            raise _drop(request)
        if fault is not None and fault.kind == "malformed_json":
            return self._malformed()
        return web.json_response({"id": task.id, "estimatedCost": {"credits": task.credits}})

    def _task_or_error(self, request: web.Request) -> Task | web.Response:
        task_id = request.match_info["id"]
        if not _UUID_RE.match(task_id):
            issue = {"code": "invalid_format", "format": "uuid", "path": ["id"], "message": "Invalid UUID"}
            return _error(400, "Validation of params failed", issues=[issue], docUrl=DOC_URL)
        # Only the key's own tasks: another organization's task is unknown to this key.
        task = self.s.account(request).store.get(task_id.lower())
        if task is None:
            return _error(404, "Could not find Task")
        return task

    async def get_task(self, request: web.Request) -> web.StreamResponse:
        self._count(request, "/v1/tasks/{id}")
        fault, early = await self._begin(request, "get_task")
        if early is not None:
            return early
        task = self._task_or_error(request)
        if isinstance(task, web.Response):
            return task
        body = self.s.account(request).store.to_json(task, lambda t: self._output_urls(request, t))
        if fault is not None and fault.kind == "malformed_json":
            return self._malformed()
        return web.json_response(body)

    def _output_urls(self, request: web.Request, task: Task) -> list[str]:
        origin = str(request.url.origin())
        token = self.s.signer.mint(task.id, 0, self.s.config.output_url_ttl)
        return [f"{origin}/_sim/outputs/{task.id}/0.mp4?_jwt={token}"]

    async def delete_task(self, request: web.Request) -> web.StreamResponse:
        self._count(request, "/v1/tasks/{id}")
        fault, early = await self._begin(request, "delete")
        if early is not None:
            return early
        task = self._task_or_error(request)
        if isinstance(task, web.Response):
            return task
        self.s.account(request).store.delete(task.id)
        if fault is not None and fault.kind == "malformed_json":
            return self._malformed()
        return web.Response(status=204)

    async def organization(self, request: web.Request) -> web.StreamResponse:
        self._count(request, "/v1/organization")
        fault, early = await self._begin(request, "organization")
        if early is not None:
            return early
        if fault is not None and fault.kind == "malformed_json":
            return self._malformed()
        return web.json_response(self.s.account(request).organization_json())

    # --- uploads (runway-api.md §2.2; the storage side is uploads.py) ----------------------------

    async def start_upload(self, request: web.Request) -> web.StreamResponse:
        self._count(request, "/v1/uploads")
        fault, early = await self._begin(request, "uploads")
        if early is not None:
            return early
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return _error(400, "Invalid JSON in request body.", docUrl=DOC_URL)
        issues: list[dict[str, Any]] = []
        filename = body.get("filename") if isinstance(body, dict) else None
        if not isinstance(filename, str) or not 1 <= len(filename) <= FILENAME_MAX or "/" in filename:
            message = f"filename must be 1-{FILENAME_MAX} characters, without '/'"
            issues.append({"code": "custom", "path": ["filename"], "message": message})
        if not isinstance(body, dict) or body.get("type") != "ephemeral":
            message = 'Invalid option: expected one of "ephemeral"'
            issues.append(
                {"code": "invalid_value", "values": ["ephemeral"], "path": ["type"], "message": message}
            )
        if issues:
            return _error(400, "Validation of body failed", issues=issues, docUrl=DOC_URL)
        if self.s.config.credits <= 0:
            return _error(400, NOT_ENOUGH_CREDITS)  # uploads need purchased credits (runway-api.md §1)
        if fault is not None and fault.kind == "malformed_json":
            return self._malformed()
        assert isinstance(filename, str)
        pending = self.s.uploads.start(filename, self.s.account(request).name)
        origin = str(request.url.origin())
        return web.json_response(
            {
                "uploadUrl": f"{origin}/_sim/storage/{pending.id}",
                "fields": pending.fields,
                "runwayUri": self.s.uploads.uri_of(pending.id),
            }
        )

    async def storage(self, request: web.Request) -> web.StreamResponse:
        """The presigned form POST (a storage host: no Runway auth; see uploads.py)."""
        self._count(request, "storage")
        counts = self.s.uploads.counts
        counts.requests += 1
        if "Authorization" in request.headers:
            counts.with_authorization += 1
            return s3_error(
                400, "InvalidArgument", "Only one auth mechanism allowed; the POST policy signs this request"
            )
        fault = self.s.faults.take("storage")
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.kind == "status":
                return s3_error(fault.status, "InjectedFault", fault.message or "Injected fault.")
            if fault.kind == "reset":
                raise _drop(request)
        return await receive(self.s.uploads, request, request.match_info["id"])

    # --- signed output URLs (CDN-like: no Authorization) -----------------------------------------

    async def output(self, request: web.Request) -> web.StreamResponse:
        self._count(request, "output")
        fault, early = await self._begin(request, "output")
        if early is not None:
            return early
        task_id, index = request.match_info["task"], int(request.match_info["index"])
        claims = self.s.signer.verify(request.query.get("_jwt", ""))
        if claims is None or claims.task_id != task_id or claims.index != index:
            return _error(403, "Access denied: invalid signature")
        if claims.expires_at <= time.time():
            return _error(403, "Request has expired")
        task = self.s.find_task(task_id)
        if task is None or index != 0 or self.s.store_of(task).snapshot(task).status != "SUCCEEDED":
            return _error(404, "Not found")
        media = OutputMedia(task.id, index, task.output_size)
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Type": "video/mp4",
            "ETag": f'"{task.id}-{index}-{media.size}"',
            "Cache-Control": "private, max-age=86400",
        }
        try:
            rng = parse_range(request.headers.get("Range"), media.size)
        except RangeNotSatisfiable:
            return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{media.size}"})
        start, end = rng if rng is not None else (0, media.size)
        response = web.StreamResponse(status=206 if rng is not None else 200, headers=headers)
        if rng is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{media.size}"
        response.content_length = end - start
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        if fault is not None and fault.kind == "cut_body":
            await response.write(media.read(start, min(end, start + fault.cut_after)))
            raise _drop(request)
        rate = self.s.config.output_bytes_per_second
        for chunk in media.iter_range(start, end, CHUNK):
            await response.write(chunk)
            if rate:
                await asyncio.sleep(len(chunk) / rate)
        await response.write_eof()
        return response

    # --- /_sim admin (no auth) -------------------------------------------------------------------

    async def add_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            data = json.loads(await request.read())
            items = data if isinstance(data, list) else [data]
            faults = [Fault.from_json(item) for item in items]
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(400, f"Invalid fault list: {exc}")
        self.s.faults.add(*faults)
        return web.json_response({"pending": [f.to_json() for f in self.s.faults.pending]})

    async def list_faults(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"pending": [f.to_json() for f in self.s.faults.pending]})

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.s.faults.clear()
        return web.Response(status=204)

    async def stats(self, request: web.Request) -> web.StreamResponse:
        counts = {f"{method} {route}": n for (method, route), n in sorted(self.s.request_counts.items())}
        accounts = list(self.s.accounts or ())
        per_key: dict[str, dict[str, int]] = {a.name: {} for a in accounts}
        for (name, method, route), n in sorted((self.s.key_counts or {}).items()):
            per_key.setdefault(name, {})[f"{method} {route}"] = n
        return web.json_response(
            {
                "requests": counts,
                "tasks": sum(len(a.store) for a in accounts) if accounts else len(self.s.store),
                "pendingFaults": len(self.s.faults),
                "keys": per_key,  # requests per key name (never a secret), counted once authenticated
                "storage": self.s.uploads.counts.to_json(),
            }
        )

    async def list_keys(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"keys": [a.describe() for a in self.s.accounts or ()]})

    async def control_key(self, request: web.Request) -> web.StreamResponse:
        """POST /_sim/keys/{name}: set a key's credits and caps (accounts.Account.control)."""
        account = self.s.accounts.by_name(request.match_info["name"]) if self.s.accounts else None
        if account is None:
            return _error(404, f"No simulator key named {request.match_info['name']!r}")
        try:
            account.control(json.loads(await request.read() or b"{}"))
        except ValueError as exc:
            return _error(400, f"Invalid key control: {exc}")
        return web.json_response(account.describe())

    async def task_inputs(self, request: web.Request) -> web.StreamResponse:
        """The uploaded files a task received as input (``{path: {uri, sha256, size, filename}}``)."""
        task = self.s.find_task(request.match_info["id"])
        if task is None:
            return _error(404, "Could not find Task")
        return web.json_response({"id": task.id, "model": task.model, "inputs": task.inputs})


def build_app(state: State) -> web.Application:
    h = Handlers(state)
    # Runway takes data: URIs of several MiB in a create body; aiohttp's default cap is 1 MiB.
    app = web.Application(middlewares=[_json_errors], client_max_size=64 * 1024 * 1024)
    for endpoint in ENDPOINTS:
        app.router.add_post(f"/v1/{endpoint}", h.create)
    app.router.add_get("/v1/tasks/{id}", h.get_task, allow_head=False)
    app.router.add_delete("/v1/tasks/{id}", h.delete_task)
    app.router.add_get("/v1/organization", h.organization, allow_head=False)
    app.router.add_post("/v1/uploads", h.start_upload)
    app.router.add_post("/_sim/storage/{id}", h.storage)
    app.router.add_get("/_sim/tasks/{id}/inputs", h.task_inputs, allow_head=False)
    app.router.add_get(r"/_sim/outputs/{task}/{index:\d+}.mp4", h.output)  # GET and HEAD
    app.router.add_post("/_sim/faults", h.add_faults)
    app.router.add_get("/_sim/faults", h.list_faults, allow_head=False)
    app.router.add_delete("/_sim/faults", h.clear_faults)
    app.router.add_get("/_sim/stats", h.stats, allow_head=False)
    app.router.add_get("/_sim/keys", h.list_keys, allow_head=False)
    app.router.add_post("/_sim/keys/{name}", h.control_key)
    return app
