"""How Runway's view of a task changes our record of a video: pure functions, no I/O."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta

from videogen_server.domain.video import GenerateSpec, OutputInfo, UpstreamTask, VideoRecord, VideoStatus

# Runway keeps outputs for 24-48 h (runway-api.md §3); promise callers the lower bound.
OUTPUT_LIFETIME = timedelta(hours=24)


def utcnow() -> datetime:
    return datetime.now(UTC)


_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(GenerateSpec) if f.name != "request_id")


def fingerprint(spec: GenerateSpec) -> str:
    """A stable digest of everything that defines a request except its idempotency key.

    The same JSON as ``spec.fingerprint_fields()`` gives (so stored fingerprints stay valid), built without
    `dataclasses.asdict`'s recursive copy: nested dataclasses (MediaRef) become objects as they are met."""
    fields = {name: getattr(spec, name) for name in _SPEC_FIELDS}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def apply_task(record: VideoRecord, task: UpstreamTask, now: datetime | None = None) -> VideoRecord:
    """The record after Runway reported `task`. A terminal record never changes."""
    if record.status.terminal:
        return record
    now = now or utcnow()
    status = task.video_status
    progress = record.progress
    if status is VideoStatus.IN_PROGRESS and task.progress is not None:
        progress = max(0, min(99, int(task.progress * 100)))
    elif status is VideoStatus.COMPLETED:
        progress = 100
    outputs = record.outputs
    if status is VideoStatus.COMPLETED and len(outputs) != len(task.outputs):
        outputs = tuple(OutputInfo(index=i, content_type="video/mp4") for i in range(len(task.outputs)))
    updated = record.replace(
        status=status,
        upstream_status=task.status,
        progress=progress,
        outputs=outputs,
        error_code=task.failure_code if status is VideoStatus.FAILED else "",
        error_message=(task.failure or "generation failed") if status is VideoStatus.FAILED else "",
        error_retryable=task.failure_retryable if status is VideoStatus.FAILED else True,
        cost_credits=task.cost_credits if task.cost_credits is not None else record.cost_credits,
        estimated_credits=(
            task.estimated_credits if task.estimated_credits is not None else record.estimated_credits
        ),
    )
    if updated == record:
        return record
    updated = updated.replace(update_time=now)
    if status.terminal:
        updated = updated.replace(complete_time=now)
        if status is VideoStatus.COMPLETED:
            updated = updated.replace(expire_time=now + OUTPUT_LIFETIME)
    return updated


def mark_cancelled(record: VideoRecord, now: datetime | None = None) -> VideoRecord:
    if record.status.terminal:
        return record
    now = now or utcnow()
    return record.replace(
        status=VideoStatus.CANCELLED,
        upstream_status=record.upstream_status,
        update_time=now,
        complete_time=now,
    )


def mark_gone(record: VideoRecord, now: datetime | None = None) -> VideoRecord:
    """Runway answers 404 for a task we did not cancel: it was deleted outside this service."""
    if record.status.terminal:
        return record
    now = now or utcnow()
    return record.replace(
        status=VideoStatus.CANCELLED,
        error_code="UPSTREAM_TASK_DELETED",
        error_message="the task no longer exists at Runway (deleted outside this service)",
        update_time=now,
        complete_time=now,
    )


OUTCOME_UNKNOWN_CODE = "VIDEOGEN.UPSTREAM_OUTCOME_UNKNOWN"


def mark_outcome_unknown(record: VideoRecord, now: datetime | None = None) -> VideoRecord:
    """A paid create was sent but never confirmed. We cannot ask Runway whether it started the task (its API
    has no idempotency key and no task listing), so the video is closed as FAILED rather than risk paying
    twice; a retry with the same request_id returns this record, a new request_id starts afresh."""
    if record.status.terminal:
        return record
    now = now or utcnow()
    return record.replace(
        status=VideoStatus.FAILED,
        error_code=OUTCOME_UNKNOWN_CODE,
        error_message=(
            "Runway did not confirm the create request, so it may or may not have started a task. "
            "This request_id will not start another; use a new request_id to try again."
        ),
        update_time=now,
        complete_time=now,
    )
