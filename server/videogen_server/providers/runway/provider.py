"""RunwayProvider: the VideoProvider port (services/ports.py) on Runway. It composes the three Runway-shaped
parts the services never see: the mapping of a GenerateSpec to a create request (mapping.py), the /v1 client
(api.py), the output downloads (downloads.py) and the ephemeral uploads (uploads.py), each with its own
connection pool."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import timedelta
from pathlib import Path

import httpx

from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerateSpec
from videogen_server.domain.model_info import ModelInfo
from videogen_server.domain.task import UpstreamRequest, UpstreamTask
from videogen_server.domain.video import DEFAULT_KEY_NAME
from videogen_server.providers.runway.api import RunwayClient
from videogen_server.providers.runway.breaker import CircuitBreaker
from videogen_server.providers.runway.catalog import CATALOG
from videogen_server.providers.runway.describe import CURRENT_MODEL_IDS, MODELS
from videogen_server.providers.runway.downloads import OutputDownloads, OutputStream
from videogen_server.providers.runway.mapping import RunwayRequest, build_upstream_request, wire_path_to_field
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.providers.runway.transport import UpstreamObserver
from videogen_server.providers.runway.uploads import EphemeralUploads
from videogen_server.providers.runway.wire import CreatedTask
from videogen_server.services.ports import UploadedAsset

UPLOAD_LIFETIME = timedelta(hours=24)  # a runway:// URI works for 24 h (runway-api.md §2.2)


class RunwayProvider:
    def __init__(
        self, api: RunwayClient, downloads: OutputDownloads, uploads: EphemeralUploads | None = None
    ) -> None:
        self._api = api
        self._downloads = downloads
        self._uploads = uploads if uploads is not None else EphemeralUploads()

    @classmethod
    def connect(
        cls,
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
    ) -> RunwayProvider:
        """The provider for one Runway account. `http` serves /v1 calls and `downloads` output downloads;
        each is built (and closed by aclose) when not given. An injected `http` without `downloads` serves
        both: the injector chose the transport (tests answer both kinds of request from one mock). Uploads'
        storage POSTs go through an injected `downloads` client too (never the /v1 one: it may carry our
        key as a default header), else through a small pool of their own."""
        if http is not None and downloads is None:
            downloads = http
        api = RunwayClient(
            base_url,
            api_key,
            retry=retry,
            http=http,
            timeout=timeout,
            observer=observer,
            breaker=breaker,
            issue_field=wire_path_to_field,
        )
        return cls(
            api,
            OutputDownloads(
                retry=retry, http=downloads, max_downloads=max_downloads, timeout=timeout, observer=observer
            ),
            EphemeralUploads(retry=retry, http=downloads, timeout=timeout, observer=observer),
        )

    def __repr__(self) -> str:
        return f"RunwayProvider({self._api!r})"

    async def aclose(self) -> None:
        async with AsyncExitStack() as stack:  # each is closed even if closing the other fails
            stack.push_async_callback(self._api.aclose)
            stack.push_async_callback(self._downloads.aclose)
            stack.push_async_callback(self._uploads.aclose)

    def models(self) -> tuple[ModelInfo, ...]:
        return MODELS

    def plan(self, spec: GenerateSpec, *, own_video: str = "") -> RunwayRequest:
        return build_upstream_request(spec, own_video=own_video)

    async def create(
        self, plan: UpstreamRequest, *, key: str | None = None, deadline: float | None = None
    ) -> CreatedTask:
        _check_key(key)
        if not isinstance(plan, RunwayRequest):
            raise TypeError(f"RunwayProvider.create needs a plan of its own, not {type(plan).__name__}")
        try:
            return await self._api.create(plan.path, plan.body, deadline=deadline)
        except errors.UpstreamRejected as exc:
            named = _unknown_model(exc, plan.body.get("model"))
            if named is exc:
                raise
            raise named from exc

    async def get_task(self, task_id: str, *, key: str = "", deadline: float | None = None) -> UpstreamTask:
        _check_key(key)
        return await self._api.get_task(task_id, deadline=deadline)

    async def cancel_task(self, task_id: str, *, key: str = "", deadline: float | None = None) -> bool:
        _check_key(key)
        # On Runway, DELETE cancels a task that is still running (and deletes a finished one).
        return await self._api.delete_task(task_id, deadline=deadline)

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
        """Runway's two-step ephemeral upload (uploads.py), with the one key this provider has."""
        _check_key(key)
        uri = await self._uploads.upload(
            self._api, path, filename=filename, size=size, content_type=content_type, deadline=deadline
        )
        return UploadedAsset(uri=uri, expire_time=utcnow() + UPLOAD_LIFETIME, key=DEFAULT_KEY_NAME)

    def open_output(
        self, url: str, *, start: int = 0, end: int | None = None, deadline: float | None = None
    ) -> AbstractAsyncContextManager[OutputStream]:
        return self._downloads.open_output(url, start=start, end=end, deadline=deadline)


def _check_key(key: str | None) -> None:
    """One key (RUNWAYML_API_SECRET, named DEFAULT_KEY_NAME): a video pinned to another key name was made
    with a key this configuration no longer has."""
    if key and key != DEFAULT_KEY_NAME:
        raise errors.FailedPrecondition(
            f"the video was made with Runway key {key!r}, which is not configured any more",
            reason="RUNWAY_KEY_NOT_CONFIGURED",
            metadata={"runway_key": key},
        )


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
