"""MemoryProvider: an in-memory VideoProvider (services/ports.py) for service-layer tests. No sockets, no
clock: a task changes only when the test says so (`start`, `succeed`, `fail`, `vanish`), and any call can be
made to fail (`fail_next`).

It keeps the port's promises the services rely on: `plan` refuses what it cannot run with InvalidArgument
and decides mode, seconds and size; `create` returns a reference to a task `get_task` then reports QUEUED;
`cancel_task` of a task that still runs ends it and makes it gone (as on Runway: GET after DELETE is a 404),
and answers False for a task already gone; `open_output` serves a finished task's bytes by range.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerateSpec, GenerationMode
from videogen_server.domain.model_info import ModelInfo
from videogen_server.domain.task import UpstreamRequest, UpstreamTask
from videogen_server.domain.video import DEFAULT_KEY_NAME, VideoStatus
from videogen_server.services.ports import UploadedAsset

if TYPE_CHECKING:
    from videogen_server.services.ports import VideoProvider

DEFAULT_SECONDS = 5
UPLOAD_LIFETIME = timedelta(hours=24)  # as Runway's (runway-api.md §2.2)
DEFAULT_SIZE = "1280x720"
OUTPUT_PREFIX = "memory://outputs/"


@dataclass(frozen=True)
class MemoryPlan(UpstreamRequest):
    """A plan made by a MemoryProvider: the spec it was made from."""

    spec: GenerateSpec


@dataclass(frozen=True)
class MemoryTaskRef:
    id: str
    estimated_credits: float | None = None
    status: str = VideoStatus.QUEUED.value
    key: str = DEFAULT_KEY_NAME


class MemoryOutput:
    """An open read of bytes [start, end) of one output."""

    def __init__(self, data: bytes, start: int, end: int | None) -> None:
        self.total_size: int | None = len(data)
        self.content_type = "video/mp4"
        self.start = start
        self._data = data[start:end]

    async def iter_chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        for i in range(0, len(self._data), chunk_size):
            yield self._data[i : i + chunk_size]


class MemoryProvider:
    """`credits` is the estimate every create reports. `calls` counts the calls made, by method name.
    `models` is what `models()` lists: a fake has no catalog of its own (`plan` takes any model id)."""

    def __init__(self, *, credits: float | None = 10.0, models: tuple[ModelInfo, ...] = ()) -> None:
        self.model_infos = models
        self.tasks: dict[str, UpstreamTask] = {}
        self.plans: dict[str, MemoryPlan] = {}  # the plan each task was created from
        self.uploads: dict[str, bytes] = {}  # runway:// URI -> the uploaded bytes
        self.upload_as = DEFAULT_KEY_NAME  # the key an upload is made with when none is named (the "pool")
        self.create_keys: dict[str, str | None] = {}  # task id -> the key its create named (None: any)
        self.calls: defaultdict[str, int] = defaultdict(int)
        self._credits = credits
        self._outputs: dict[str, bytes] = {}
        self._failures: defaultdict[str, deque[BaseException]] = defaultdict(deque)

    # --- driving it (tests) ----------------------------------------------------------------------------

    def fail_next(self, method: str, error: BaseException) -> None:
        """The next call of `method` ("models", "plan", "create", "get_task", "cancel_task", "open_output")
        raises `error`; several are raised in the order given."""
        self._failures[method].append(error)

    def start(self, task_id: str, progress: float = 0.0) -> None:
        self._update(task_id, VideoStatus.IN_PROGRESS, progress=progress)

    def succeed(self, task_id: str, *outputs: bytes) -> None:
        """The task ends with `outputs` (one short video by default), served by open_output."""
        urls = []
        for i, data in enumerate(outputs or (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 1000,)):
            url = f"{OUTPUT_PREFIX}{task_id}/{i}"
            self._outputs[url] = data
            urls.append(url)
        self._update(
            task_id, VideoStatus.COMPLETED, progress=1.0, outputs=tuple(urls), cost_credits=self._credits
        )

    def fail(
        self, task_id: str, code: str = "INTERNAL", message: str = "failed", *, retryable: bool = True
    ) -> None:
        self._update(
            task_id, VideoStatus.FAILED, failure=message, failure_code=code, failure_retryable=retryable
        )

    def vanish(self, task_id: str) -> None:
        """The task is deleted behind the service's back: get_task raises UpstreamNotFound from now on."""
        self.tasks.pop(task_id, None)

    def _update(self, task_id: str, status: VideoStatus, **changes: Any) -> None:
        task = self.tasks[task_id]
        self.tasks[task_id] = replace(task, status=status.value, video_status=status, **changes)

    def _call(self, method: str) -> None:
        self.calls[method] += 1
        failures = self._failures.get(method)
        if failures:
            raise failures.popleft()

    # --- the port ----------------------------------------------------------------------------------------

    def models(self) -> tuple[ModelInfo, ...]:
        self._call("models")
        return self.model_infos

    def plan(self, spec: GenerateSpec, *, own_video: str = "") -> MemoryPlan:
        self._call("plan")
        violations = []
        if own_video and spec.video_uri:
            violations.append(errors.FieldViolation("video_uri", "the source video is given by the service"))
        if not spec.model.strip():
            violations.append(errors.FieldViolation("model", "is required"))
        if spec.input_reference and spec.video_uri:
            violations.append(errors.FieldViolation("video_uri", "set either input_reference or video_uri"))
        if spec.seconds is not None and spec.seconds <= 0:
            violations.append(errors.FieldViolation("seconds", "must be a positive number of seconds"))
        if violations:
            raise errors.InvalidArgument(f"invalid request for model {spec.model!r}", violations)
        if own_video:
            spec = replace(spec, video_uri=own_video)  # the plan carries what is sent
        if spec.video_uri:
            mode = GenerationMode.VIDEO_TO_VIDEO
        elif spec.input_reference:
            mode = GenerationMode.IMAGE_TO_VIDEO
        else:
            mode = GenerationMode.TEXT_TO_VIDEO
        seconds = spec.seconds if spec.seconds is not None else DEFAULT_SECONDS
        return MemoryPlan(mode=mode, seconds=seconds, size=spec.size or DEFAULT_SIZE, spec=spec)

    async def create(
        self, plan: UpstreamRequest, *, key: str | None = None, deadline: float | None = None
    ) -> MemoryTaskRef:
        self._call("create")
        if not isinstance(plan, MemoryPlan):
            raise TypeError(f"MemoryProvider.create needs a plan of its own, not {type(plan).__name__}")
        ref = MemoryTaskRef(
            id=str(uuid.uuid4()), estimated_credits=self._credits, key=key or DEFAULT_KEY_NAME
        )
        self.create_keys[ref.id] = key
        self.tasks[ref.id] = UpstreamTask(
            id=ref.id, status=ref.status, video_status=VideoStatus.QUEUED, estimated_credits=self._credits
        )
        self.plans[ref.id] = plan
        return ref

    async def get_task(self, task_id: str, *, key: str = "", deadline: float | None = None) -> UpstreamTask:
        self._call("get_task")
        task = self.tasks.get(task_id)
        if task is None:
            raise errors.UpstreamNotFound(f"no task {task_id}")
        return task

    async def cancel_task(self, task_id: str, *, key: str = "", deadline: float | None = None) -> bool:
        self._call("cancel_task")
        return self.tasks.pop(task_id, None) is not None

    @asynccontextmanager
    async def open_output(
        self, url: str, *, start: int = 0, end: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[MemoryOutput]:
        if start < 0 or (end is not None and end <= start):
            raise ValueError("need 0 <= start < end")
        self._call("open_output")
        data = self._outputs.get(url)
        if data is None:
            raise errors.OutputExpired("no such output")
        if start > 0 and start >= len(data):
            raise errors.OutOfRange(f"offset {start} is past the end of the output ({len(data)} bytes)")
        yield MemoryOutput(data, start, end)

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
        """Keeps the file's bytes under a new `runway://` URI (`uploads`), as Runway's storage would."""
        self._call("upload")
        data = await asyncio.to_thread(path.read_bytes)
        if len(data) != size:
            raise ValueError(f"upload of {filename!r}: {len(data)} bytes on disk, {size} announced")
        uri = f"runway://memory/{uuid.uuid4()}/{filename}"
        self.uploads[uri] = data
        return UploadedAsset(uri=uri, expire_time=utcnow() + UPLOAD_LIFETIME, key=key or self.upload_as)


if TYPE_CHECKING:
    _: VideoProvider = MemoryProvider()  # mypy: the fake keeps the port's signatures
