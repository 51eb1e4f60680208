"""The video use cases: Generate, Get and Cancel over the store, the catalog and Runway. No gRPC here."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Protocol

from . import errors
from .catalog import build_upstream_request
from .domain import GenerateSpec, UpstreamRequest, UpstreamTask, VideoRecord, VideoStatus
from .records import fingerprint, mark_cancelled, mark_outcome_unknown, utcnow
from .store.base import VideoStore
from .watch import TaskTracker

log = logging.getLogger(__name__)


class CreatedTaskLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def estimated_credits(self) -> float | None: ...


class Upstream(Protocol):
    """The part of the Runway adapter the use cases need."""

    async def create(
        self, path: str, body: dict[str, object], *, deadline: float | None = None
    ) -> CreatedTaskLike: ...

    async def get_task(self, task_id: str, *, deadline: float | None = None) -> UpstreamTask: ...

    async def delete_task(self, task_id: str, *, deadline: float | None = None) -> bool: ...


def parse_video_id(video_id: str) -> str:
    """Video ids are UUIDs; anything else is refused before it reaches the store or Runway."""
    try:
        return str(uuid.UUID(video_id))
    except (ValueError, AttributeError, TypeError):
        raise errors.InvalidArgument(
            "id must be a video id (a UUID)",
            [errors.FieldViolation("id", "must be a UUID as returned by Generate")],
        ) from None


class Videos:
    def __init__(self, store: VideoStore, upstream: Upstream, tracker: TaskTracker) -> None:
        self._store = store
        self._upstream = upstream
        self._tracker = tracker
        # Creates in flight in this process, by video id: concurrent duplicates of one request_id wait here.
        self._creating: dict[str, asyncio.Task[VideoRecord]] = {}

    async def generate(self, owner: str, spec: GenerateSpec, *, deadline: float | None) -> VideoRecord:
        request = build_upstream_request(spec)  # validation first: nothing invalid costs a credit
        now = utcnow()
        record = VideoRecord(
            id=str(uuid.uuid4()),
            owner=owner,
            mode=request.mode,
            model=spec.model,
            prompt=spec.prompt,
            seconds=request.seconds,
            size=request.size,
            status=VideoStatus.CREATING,
            create_time=now,
            update_time=now,
            request_id=spec.request_id,
            fingerprint=fingerprint(spec),
        )
        # The idempotency key is recorded before the POST (design §2).
        stored, inserted = await self._store.claim(record)
        if not inserted:
            return await self._existing(stored, record)
        task = asyncio.create_task(self._create(record, request, deadline), name=f"create-{record.id}")
        self._creating[record.id] = task
        task.add_done_callback(lambda _: self._creating.pop(record.id, None))
        # Shielded: a caller that goes away mid-POST does not leave the outcome unrecorded.
        return await asyncio.shield(task)

    async def _existing(self, stored: VideoRecord, record: VideoRecord) -> VideoRecord:
        if stored.fingerprint != record.fingerprint:
            raise errors.AlreadyExists(
                f"request_id {record.request_id!r} was already used for a different request",
                metadata={"request_id": record.request_id, "id": stored.id},
            )
        if stored.status is not VideoStatus.CREATING:
            return stored
        in_flight = self._creating.get(stored.id)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        return await self._close_orphaned_create(stored)

    async def _close_orphaned_create(self, record: VideoRecord) -> VideoRecord:
        """Recorded as CREATING but no create is running here: the process that sent it died before the
        answer. Runway cannot be asked whether the task exists, so close it rather than pay twice."""
        log.warning("video %s: create outcome unknown after a restart; closing it as FAILED", record.id)
        return await self._store.save(mark_outcome_unknown(record))

    async def _create(
        self, record: VideoRecord, request: UpstreamRequest, deadline: float | None
    ) -> VideoRecord:
        try:
            created = await self._upstream.create(request.path, request.body, deadline=deadline)
        except errors.UpstreamOutcomeUnknown as exc:
            saved = await self._store.save(mark_outcome_unknown(record))
            exc.metadata["id"] = saved.id
            raise
        except BaseException:
            # Runway definitely did not start a task (validation, credits, 429, no connection) or we never
            # sent it: forget the record so the same request_id can be tried again.
            await asyncio.shield(self._store.delete(record.id))
            raise
        now = utcnow()
        updated = record.replace(
            upstream_id=created.id,
            status=VideoStatus.QUEUED,
            upstream_status="PENDING",
            estimated_credits=created.estimated_credits,
            update_time=now,
        )
        log.info("video %s created as Runway task %s (%s)", record.id, created.id, record.model)
        saved = await self._store.save(updated)
        self._tracker.publish(saved)
        return saved

    async def load(self, owner: str, video_id: str) -> VideoRecord:
        """The caller's own video; another caller's video is indistinguishable from a missing one."""
        vid = parse_video_id(video_id)
        record = await self._store.get(vid)
        if record is None or record.owner != owner:
            raise errors.NotFound(vid)
        if record.status is VideoStatus.CREATING and vid not in self._creating:
            record = await self._close_orphaned_create(record)
        return record

    async def get(self, owner: str, video_id: str, *, deadline: float | None) -> VideoRecord:
        record = await self.load(owner, video_id)
        try:
            return await self._tracker.refresh(record, deadline=deadline)
        except errors.UpstreamError as exc:
            # Runway is unreachable: the last recorded state is still the truest answer we have.
            log.warning("video %s: serving the recorded state, Runway read failed: %s", record.id, exc)
            return record

    async def cancel(self, owner: str, video_id: str, *, deadline: float | None) -> VideoRecord:
        record = await self.load(owner, video_id)
        if record.status is VideoStatus.CANCELLED:
            return record
        if record.status is VideoStatus.CREATING:
            raise errors.FailedPrecondition(
                "the video is still being created; retry the cancel in a moment", reason="VIDEO_CREATING"
            )
        # Read the task right before the DELETE: on Runway, DELETE of a finished task deletes its output.
        # A task that finishes in the milliseconds between this read and the DELETE is recorded CANCELLED
        # (its output is gone at Runway): that window is as small as we can make it without an atomic API.
        fresh = await self._tracker.refresh(record, deadline=deadline, max_age=0.0)
        if fresh.status.terminal:
            if fresh.status is VideoStatus.CANCELLED:
                return fresh
            raise errors.FailedPrecondition(
                f"the video is already {fresh.status.value}; cancelling would delete its output",
                reason="VIDEO_ALREADY_FINISHED",
                metadata={"status": fresh.status.value},
            )
        await self._upstream.delete_task(fresh.upstream_id, deadline=deadline)
        saved = await self._store.save(mark_cancelled(fresh))
        self._tracker.publish(saved)
        log.info("video %s cancelled (Runway task %s deleted)", saved.id, saved.upstream_id)
        return saved

    async def remember_outputs(self, record: VideoRecord) -> None:
        """Record output metadata learnt while streaming (size, content type)."""
        await self._store.save(record)
