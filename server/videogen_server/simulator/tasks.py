"""Task records and their lifecycle, computed from elapsed time (no background work per task).

PENDING for ``pending_seconds``; then THROTTLED while the model's ``max_concurrency`` slots are busy
(released in submission order); then RUNNING for ``running_seconds``; then SUCCEEDED, or FAILED when the
prompt asked for it. A start time, once reached, is frozen, so later config changes never rewrite history.
"""

from __future__ import annotations

import heapq
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from videogen_server.simulator.config import SimulatorConfig

Status = Literal["PENDING", "THROTTLED", "RUNNING", "SUCCEEDED", "FAILED"]
TERMINAL: Final = frozenset({"SUCCEEDED", "FAILED"})
DAY: Final = 86400.0
_FAIL_CODE: Final = re.compile(r"([A-Za-z0-9_.\-]+)\]")

_FAILURE_TEXT: Final = (
    ("SAFETY.INPUT", "The input did not pass content moderation."),
    ("SAFETY.OUTPUT", "The generated output did not pass content moderation."),
    ("INTERNAL.BAD_OUTPUT", "The output did not pass our quality checks. Try a different input."),
    ("ASSET", "An input asset could not be processed."),
    ("THIRD_PARTY", "The model provider is unavailable. Please try again later."),
)


def failure_text(code: str) -> str:
    for prefix, text in _FAILURE_TEXT:
        if code.startswith(prefix):
            return text
    return "An unexpected error occurred while generating the video."


def iso_ms(dt: datetime) -> str:
    """``2026-08-11T06:12:01.171Z``: ISO-8601 UTC with milliseconds, like Runway."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(eq=False)
class Task:
    id: str
    model: str
    created_at: datetime
    created: float  # clock() at creation
    pending_s: float
    running_s: float
    credits: int
    output_size: int
    failure_code: str | None
    started_at: float | None = None
    deleted_at: float | None = None
    refunded: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)  # uploaded inputs by field path (uploads.py)

    @property
    def ready(self) -> float:
        return self.created + self.pending_s

    def end(self, start: float) -> float:
        end = start + self.running_s
        return end if self.deleted_at is None else min(end, self.deleted_at)


@dataclass(frozen=True)
class Snapshot:
    status: Status
    progress: float | None = None


@dataclass
class _ModelQueue:
    tasks: list[Task] = field(default_factory=list)  # submission order, incl. deleted ones still relevant


class TaskStore:
    def __init__(self, config: SimulatorConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._tasks: dict[str, Task] = {}
        self._queues: dict[str, _ModelQueue] = {}
        self._creates: dict[str, deque[float]] = {}

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    @config.setter
    def config(self, value: SimulatorConfig) -> None:
        self._config = value

    def __len__(self) -> int:
        return len(self._tasks)

    # --- create / lookup / delete ---------------------------------------------------------------

    def daily_count(self, model: str) -> int:
        stamps = self._creates.get(model)
        if not stamps:
            return 0
        horizon = self._clock() - DAY
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        return len(stamps)

    def create(self, model: str, credits: int, prompt_text: str | None) -> Task:
        cfg = self._config
        now = self._clock()
        failure_code = None
        if prompt_text and cfg.fail_prompt_marker in prompt_text:
            rest = prompt_text.split(cfg.fail_prompt_marker, 1)[1]
            match = _FAIL_CODE.match(rest)
            failure_code = match.group(1) if match else "INTERNAL"
        task = Task(
            id=str(uuid.uuid4()),
            model=model,
            created_at=datetime.now(UTC),
            created=now,
            pending_s=max(0.0, cfg.pending_seconds),
            running_s=max(0.0, cfg.running_seconds),
            credits=credits,
            output_size=cfg.output_size,
            failure_code=failure_code,
        )
        cfg.credits -= credits  # the estimate is held; refunded on early cancel or failure
        self._tasks[task.id] = task
        self._queues.setdefault(model, _ModelQueue()).tasks.append(task)
        self._creates.setdefault(model, deque()).append(now)
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def delete(self, task_id: str) -> Snapshot | None:
        """Cancel (queued/running) or delete (finished) a task; returns its state at that moment."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        snap = self.snapshot(task)
        task.deleted_at = self._clock()
        del self._tasks[task_id]
        if snap.status in ("PENDING", "THROTTLED"):
            self._refund(task)
        return snap

    def _refund(self, task: Task) -> None:
        if not task.refunded:
            task.refunded = True
            self._config.credits += task.credits

    # --- lifecycle --------------------------------------------------------------------------------

    def snapshot(self, task: Task) -> Snapshot:
        now = self._clock()
        self._schedule(task.model, now)
        if now < task.ready:
            return Snapshot("PENDING")
        start = task.started_at
        if start is None:
            return Snapshot("THROTTLED")
        if task.running_s > 0 and now < start + task.running_s:
            return Snapshot("RUNNING", round(min(1.0, max(0.0, (now - start) / task.running_s)), 4))
        if task.failure_code is not None:
            self._refund(task)
            return Snapshot("FAILED")
        return Snapshot("SUCCEEDED")

    def _schedule(self, model: str, now: float) -> None:
        """Assign (and freeze once reached) start times for the model's tasks, FIFO over its slots."""
        queue = self._queues.get(model)
        if queue is None:
            return
        limit = self._config.max_concurrency
        busy: list[float] = []  # end times of tasks holding a slot
        last_start = float("-inf")
        keep: list[Task] = []
        unfrozen_ready = [t.ready for t in queue.tasks if t.started_at is None]
        horizon = min([now, *unfrozen_ready])
        for task in queue.tasks:
            if task.started_at is not None:
                end = task.end(task.started_at)
                last_start = max(last_start, task.started_at)
                if end > horizon:  # may still constrain someone: keep
                    heapq.heappush(busy, end)
                    keep.append(task)
                continue
            start = max(task.ready, last_start)
            while busy and busy[0] <= start:
                heapq.heappop(busy)
            if limit is not None:
                while len(busy) >= max(1, limit):
                    start = max(start, heapq.heappop(busy))
                while busy and busy[0] <= start:
                    heapq.heappop(busy)
            if task.deleted_at is not None and task.deleted_at <= start:
                continue  # cancelled before it ever ran: holds no slot, forgotten
            if start <= now:
                task.started_at = start
            heapq.heappush(busy, task.end(start))
            last_start = start
            keep.append(task)
        queue.tasks = keep

    # --- wire format ------------------------------------------------------------------------------

    def to_json(self, task: Task, output_urls: Callable[[Task], list[str]]) -> dict[str, Any]:
        snap = self.snapshot(task)
        body: dict[str, Any] = {"id": task.id, "status": snap.status, "createdAt": iso_ms(task.created_at)}
        if snap.status not in TERMINAL:
            body["estimatedCost"] = {"credits": task.credits}
        if snap.status == "RUNNING":
            body["progress"] = snap.progress
        if snap.status == "SUCCEEDED":
            body["output"] = output_urls(task)
            body["cost"] = {"credits": task.credits}
        elif snap.status == "FAILED":
            code = task.failure_code or "INTERNAL"
            body["failure"] = failure_text(code)
            body["failureCode"] = code
            body["cost"] = {"credits": 0}
        return body
