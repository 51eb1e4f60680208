"""RunwayProvider: the VideoProvider port (services/ports.py) on Runway. It composes the Runway-shaped parts
the services never see: the mapping of a GenerateSpec to a create request (mapping.py), the /v1 client
(api.py), the output downloads (downloads.py) and the ephemeral uploads (uploads.py), each with its own
connection pool, and the key pool (keys.py): which Runway key each call is made with.

A new task goes to the least-loaded key that can take its model (keys.py). With several keys, a create that
Runway refuses in a way that proves no task was made (429: that key's daily cap for the model; the
no-credits 400: that key, every model) marks the key and is sent again with the next key, once per key,
within the caller's deadline; never after a 5xx, a timeout or any answer that leaves the outcome unknown
(two paid tasks are worse than an error). When no key is left: RESOURCE_EXHAUSTED, a QuotaFailure violation
per key. With one key the errors stay as they were (design §3): its 429 UNAVAILABLE (retried first), its
no-credits FAILED_PRECONDITION. Reads and cancels use the key that created the task (the record's
runway_key); an upload uses the named key, or the pool's least-loaded one, and says which (a runway:// URI
belongs to the account that uploaded it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import timedelta
from pathlib import Path

import httpx

from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerateSpec
from videogen_server.domain.model_info import ModelInfo
from videogen_server.domain.task import UpstreamRequest, UpstreamTask
from videogen_server.providers.runway.api import RunwayClient
from videogen_server.providers.runway.breaker import CircuitBreaker
from videogen_server.providers.runway.catalog import CATALOG
from videogen_server.providers.runway.credentials import RunwayCredential, default_credential
from videogen_server.providers.runway.describe import CURRENT_MODEL_IDS, MODELS
from videogen_server.providers.runway.downloads import OutputDownloads, OutputStream
from videogen_server.providers.runway.keys import KeyPool, RunwayKey
from videogen_server.providers.runway.mapping import RunwayRequest, build_upstream_request, wire_path_to_field
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.providers.runway.transport import UpstreamObserver
from videogen_server.providers.runway.uploads import EphemeralUploads
from videogen_server.providers.runway.wire import CreatedTask
from videogen_server.services.ports import UploadedAsset

log = logging.getLogger(__name__)

UPLOAD_LIFETIME = timedelta(hours=24)  # a runway:// URI works for 24 h (runway-api.md §2.2)


class RunwayProvider:
    def __init__(
        self,
        api: RunwayClient,
        downloads: OutputDownloads,
        keys: KeyPool,
        uploads: EphemeralUploads | None = None,
    ) -> None:
        self._api = api
        self._downloads = downloads
        self._keys = keys
        self._uploads = uploads if uploads is not None else EphemeralUploads()

    @classmethod
    def connect(
        cls,
        base_url: str,
        api_key: str | Mapping[str, str],
        *,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, immutable default
        http: httpx.AsyncClient | None = None,
        downloads: httpx.AsyncClient | None = None,
        max_downloads: int = 256,
        timeout: float = 30.0,
        observer: UpstreamObserver | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> RunwayProvider:
        """The provider for Runway: `api_key` is one key (named DEFAULT_KEY_NAME) or several, name -> secret
        in configuration order. `http` serves /v1 calls and `downloads` output downloads; each is built
        (and closed by aclose) when not given. An injected `http` without `downloads` serves both: the
        injector chose the transport (tests answer both kinds of request from one mock). Uploads' storage
        POSTs go through an injected `downloads` client too (never the /v1 one: it may carry our key as a
        default header), else through a small pool of their own."""
        if http is not None and downloads is None:
            downloads = http
        if isinstance(api_key, str):
            credentials = [default_credential(api_key)]
        else:
            credentials = [RunwayCredential(name, secret) for name, secret in api_key.items()]
        api = RunwayClient(
            base_url,
            retry=retry,
            http=http,
            timeout=timeout,
            observer=observer,
            breaker=breaker,
            issue_field=wire_path_to_field,
        )
        keys = KeyPool(
            credentials,
            fetch=lambda cred: api.organization(key=cred, deadline=time.monotonic() + timeout),
        )
        return cls(
            api,
            OutputDownloads(
                retry=retry, http=downloads, max_downloads=max_downloads, timeout=timeout, observer=observer
            ),
            keys,
            EphemeralUploads(retry=retry, http=downloads, timeout=timeout, observer=observer),
        )

    def __repr__(self) -> str:
        return f"RunwayProvider({self._api!r}, keys={self._keys.names})"

    @property
    def keys(self) -> KeyPool:
        return self._keys

    async def start(self) -> None:
        """With several keys: read their organizations, and keep them fresh (keys.py). Never fails."""
        await self._keys.start()

    async def aclose(self) -> None:
        async with AsyncExitStack() as stack:  # each is closed even if closing the other fails
            stack.push_async_callback(self._api.aclose)
            stack.push_async_callback(self._downloads.aclose)
            stack.push_async_callback(self._keys.aclose)
            stack.push_async_callback(self._uploads.aclose)

    def models(self) -> tuple[ModelInfo, ...]:
        return MODELS

    def plan(self, spec: GenerateSpec, *, own_video: str = "") -> RunwayRequest:
        return build_upstream_request(spec, own_video=own_video)

    async def create(
        self, plan: UpstreamRequest, *, key: str | None = None, deadline: float | None = None
    ) -> CreatedTask:
        """Start the task with the key named (no failover: the caller chose it), or with the pool's choice
        (see the module docstring). The CreatedTask names the key that made it."""
        if not isinstance(plan, RunwayRequest):
            raise TypeError(f"RunwayProvider.create needs a plan of its own, not {type(plan).__name__}")
        if not self._keys.several:
            # One key: today's behaviour (a 429 retried with backoff, then UNAVAILABLE).
            chosen = self._keys.keys[0] if key is None else self._keys.get(key)
            return await self._create_with(chosen, plan, deadline, failover=False)
        model = str(plan.body.get("model", ""))
        if key is not None:
            # A key the caller chose (uploads live there): no other key is tried, but a refusal still marks
            # it out in the pool, so the pool's own choices stop sending it this model meanwhile.
            chosen = self._keys.get(key)
            try:
                return await self._create_with(chosen, plan, deadline, failover=True)
            except (errors.UpstreamCredits, errors.UpstreamUnavailable) as exc:
                self._refusal(chosen, model, exc)
                raise
        refused: dict[str, str] = {}
        while candidates := self._keys.candidates(model, exclude=tuple(refused)):
            chosen = candidates[0]
            if refused and deadline is not None and time.monotonic() >= deadline:
                raise errors.DeadlineExceeded(
                    f"deadline exceeded before trying another Runway key ({len(refused)} refused)"
                )
            try:
                return await self._create_with(chosen, plan, deadline, failover=True)
            except (errors.UpstreamCredits, errors.UpstreamUnavailable) as exc:
                why = self._refusal(chosen, model, exc)
                if why is None:
                    raise  # a 5xx, a timeout, an unknown outcome: the task may exist, never sent again
                refused[chosen.name] = why
            log.info("Runway key %r refused the create (%s); trying the next key", chosen.name, why)
        raise self._keys.exhausted(model, refused)

    def _refusal(
        self, key: RunwayKey, model: str, exc: errors.UpstreamCredits | errors.UpstreamUnavailable
    ) -> str | None:
        """Why `key` refused a create in a way that proves no task was made, having marked it out in the
        pool (no credits: every model; a 429: this model's daily cap); None for any other failure."""
        if not errors.key_refused_create(exc):
            return None
        if isinstance(exc, errors.UpstreamCredits):
            why = f"no credits left (Runway: {exc.message})"
            self._keys.mark(key.name, None, why, None)
            return why
        why = f"the daily cap for {model} is reached (Runway: HTTP 429)"
        self._keys.mark(key.name, model, why, exc.retry_after)
        return why

    async def _create_with(
        self, key: RunwayKey, plan: RunwayRequest, deadline: float | None, *, failover: bool
    ) -> CreatedTask:
        try:
            created = await self._api.create(
                plan.path, plan.body, deadline=deadline, key=key.credential, retry_429=not failover
            )
        except errors.UpstreamRejected as exc:
            named = _unknown_model(exc, plan.body.get("model"))
            if named is exc:
                raise
            raise named from exc
        self._keys.started(key.name, str(plan.body.get("model", "")), created.id)
        return created

    async def get_task(self, task_id: str, *, key: str = "", deadline: float | None = None) -> UpstreamTask:
        runway_key = self._keys.get(key)
        try:
            task = await self._api.get_task(task_id, deadline=deadline, key=runway_key.credential)
        except errors.UpstreamNotFound:
            self._keys.ended(runway_key.name, task_id)
            raise
        if task.video_status.terminal:
            self._keys.ended(runway_key.name, task_id)
        return task

    async def cancel_task(self, task_id: str, *, key: str = "", deadline: float | None = None) -> bool:
        runway_key = self._keys.get(key)
        # On Runway, DELETE cancels a task that is still running (and deletes a finished one).
        done = await self._api.delete_task(task_id, deadline=deadline, key=runway_key.credential)
        self._keys.ended(runway_key.name, task_id)
        return done

    async def upload(
        self,
        path: Path,
        *,
        filename: str,
        size: int,
        content_type: str,
        key: str | None = None,
        deadline: float | None = None,
    ) -> UploadedAsset:
        """Runway's two-step ephemeral upload (uploads.py), with the named key or the least-loaded usable
        one (uploads need credits: a key known to have none is passed over)."""
        chosen = self._keys.get(key) if key is not None else self._keys.for_upload()
        uri = await self._uploads.upload(
            self._api,
            path,
            filename=filename,
            size=size,
            content_type=content_type,
            key=chosen.credential,
            deadline=deadline,
        )
        return UploadedAsset(uri=uri, expire_time=utcnow() + UPLOAD_LIFETIME, key=chosen.name)

    def open_output(
        self, url: str, *, start: int = 0, end: int | None = None, deadline: float | None = None
    ) -> AbstractAsyncContextManager[OutputStream]:
        return self._downloads.open_output(url, start=start, end=end, deadline=deadline)


def _unknown_model(exc: errors.UpstreamRejected, model: object) -> errors.UpstreamRejected:
    """Runway's 400 for a model id the catalog does not know, when it blames `model` (Runway's words are
    "Invalid input"): the message and the `model` violation name the models Runway accepts, first, so that
    the bounds on error sizes never cut them off. Any other rejection is returned as it is. (Unknown ids
    are still sent: Runway may have added the model since the catalog was written.)"""
    if not isinstance(model, str) or model in CATALOG or not any(v.field == "model" for v in exc.violations):
        return exc
    known = ", ".join(CURRENT_MODEL_IDS)
    said = exc.message
    violations = [
        errors.FieldViolation(
            "model", f"Runway does not accept {model!r}; known models: {known} (Runway: {v.description})"
        )
        if v.field == "model"
        else v
        for v in exc.violations
    ]
    message = f"Runway does not accept model {model!r}; known models: {known} (ListModels describes them)"
    return errors.UpstreamRejected(f"{message}. Runway said: {said}" if said else message, violations)
