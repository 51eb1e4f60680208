"""``RunwaySimulator``: lifecycle of the loopback HTTP server and the test-facing inspection API."""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import Any

from aiohttp import web

from videogen_server.simulator.app import State, build_app
from videogen_server.simulator.config import SimulatorConfig
from videogen_server.simulator.faults import FaultPlan
from videogen_server.simulator.media import OutputMedia
from videogen_server.simulator.signing import UrlSigner
from videogen_server.simulator.tasks import TaskStore
from videogen_server.simulator.uploads import UploadStore


class RunwaySimulator:
    """A real HTTP server on loopback that behaves like Runway's API (see runway-api.md)."""

    def __init__(self, api_key: str = "key_sim", config: SimulatorConfig | None = None) -> None:
        self.api_key = api_key
        self.faults = FaultPlan()
        self.request_counts: Counter[tuple[str, str]] = Counter()
        self._store = TaskStore(config if config is not None else SimulatorConfig())
        self._state = State(
            api_key=api_key,
            store=self._store,
            faults=self.faults,
            signer=UrlSigner(),
            request_counts=self.request_counts,
            uploads=UploadStore(),
        )
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    @property
    def config(self) -> SimulatorConfig:
        """The live configuration; mutate it (or assign a new one) to change later requests."""
        return self._store.config

    @config.setter
    def config(self, value: SimulatorConfig) -> None:
        self._store.config = value

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("simulator not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = any free port) and return the base URL, e.g. ``http://127.0.0.1:PORT``."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(build_app(self._state), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._state.uploads.close()  # the uploaded files on disk

    async def __aenter__(self) -> RunwaySimulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- inspection for tests ---------------------------------------------------------------------

    def output_bytes(self, task_id: str, index: int = 0) -> bytes:
        """The exact bytes the task's output URL serves (raises KeyError for an unknown/deleted task)."""
        task = self._store.get(task_id)
        if task is None:
            raise KeyError(task_id)
        media = OutputMedia(task.id, index, task.output_size)
        return media.read(0, media.size)

    def forget_task(self, task_id: str) -> bool:
        """Forget a task as Runway does some time after it ended: its GET is then 404 and its output URLs
        stop working. Not a request (request_counts are unchanged). False when there was no such task."""
        return self._store.delete(task_id) is not None

    @property
    def uploads(self) -> UploadStore:
        """Uploaded files (``resolve(uri)``, ``expire(uri)``) and storage request counts (``counts``)."""
        return self._state.uploads

    def task_inputs(self, task_id: str) -> dict[str, Any]:
        """The uploaded files a task received as input: ``{field path: {uri, sha256, size, filename}}``."""
        task = self._store.get(task_id)
        if task is None:
            raise KeyError(task_id)
        return dict(task.inputs)

    def task_status(self, task_id: str) -> str | None:
        """Current status of a task, or None when unknown or deleted."""
        task = self._store.get(task_id)
        return None if task is None else self._store.snapshot(task).status
