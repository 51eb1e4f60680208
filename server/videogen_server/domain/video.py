"""A video as the service records it, and how each event changes the record. Pure: no I/O.

Every transition returns a new record (records are frozen) and leaves a terminal record as it is: COMPLETED,
FAILED and CANCELLED are final, whatever arrives later (a late poll, a racing cancel). `merged_with` is the
same rule as a store applies it, so every store engine keeps records the same way.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerationMode

if TYPE_CHECKING:
    from videogen_server.domain.task import UpstreamTask


class VideoStatus(enum.StrEnum):
    """Normalized lifecycle state (the proto's VideoStatus without the prefix)."""

    # Our own state between recording an idempotency key and Runway's answer to the create.
    CREATING = "CREATING"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


# The final states: a record in one of them never changes status again.
TERMINAL_STATUSES = frozenset({VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELLED})

# Runway keeps outputs for 24-48 h (runway-api.md §3); promise callers the lower bound.
OUTPUT_LIFETIME = timedelta(hours=24)

# The name of the provider key of a single-key configuration (RUNWAYML_API_SECRET alone), and of every
# record made before several keys existed (VideoRecord.runway_key "").
DEFAULT_KEY_NAME = "default"

# The error code of a video whose paid create was sent but never confirmed (see `outcome_unknown`).
OUTCOME_UNKNOWN_CODE = "VIDEOGEN.UPSTREAM_OUTCOME_UNKNOWN"


class ArchiveState(enum.StrEnum):
    """Where one output of a COMPLETED video stands with the archive (issue 11)."""

    PENDING = "PENDING"  # not copied yet (or the archive is off): served from Runway while its URL lives
    ARCHIVED = "ARCHIVED"  # a verified copy (size and sha256 recorded) is in the archive: served from there
    LOST = "LOST"  # Runway stopped serving it before a copy was made (`lost_reason` says why); final
    EXPIRED = "EXPIRED"  # retention ended and the copy was deleted; final

    @property
    def final(self) -> bool:
        return self in (ArchiveState.LOST, ArchiveState.EXPIRED)


def archive_key(video_id: str, index: int) -> str:
    """The archive object of one output: the same on every replica and after a restart (the record need not
    store it). An engine puts its own prefix in front."""
    return f"videos/{video_id}/{index}.mp4"


@dataclass(frozen=True)
class OutputInfo:
    index: int
    content_type: str = ""
    size_bytes: int | None = None  # from the verified archive copy once ARCHIVED (Runway's Content-Length)
    sha256: str = ""  # hex, of the archived copy (computed while copying); "" until ARCHIVED
    archive: ArchiveState = ArchiveState.PENDING
    lost_reason: str = ""  # why a LOST output could not be copied


@dataclass(frozen=True)
class VideoRecord:
    """The service's durable record of one video (see design §2, "The job record")."""

    id: str
    owner: str
    mode: GenerationMode
    model: str
    prompt: str
    seconds: int | None
    size: str
    status: VideoStatus
    create_time: datetime
    update_time: datetime
    request_id: str = ""
    fingerprint: str = ""
    upstream_id: str = ""
    upstream_status: str = ""
    progress: int = 0  # percent
    outputs: tuple[OutputInfo, ...] = ()
    error_code: str = ""
    error_message: str = ""
    complete_time: datetime | None = None
    expire_time: datetime | None = None
    cost_credits: float | None = None
    estimated_credits: float | None = None
    error_retryable: bool = True  # the provider's verdict on error_code (see UpstreamTask.failure_retryable)
    # When Runway was last asked about this task (by any process sharing the store): a Get anywhere reuses a
    # poll younger than the freshness window instead of asking again. Not part of the caller's view.
    polled_at: datetime | None = None
    # The name of the provider key (Runway account key) that created the task: every later call for this
    # video (polls, downloads, cancel) must use the same key. "" on records made before several keys existed
    # means the default key (DEFAULT_KEY_NAME). Never the secret.
    runway_key: str = ""
    # For a video made by Remix: the id of the video it was made from (issue 12). "" otherwise.
    source_video_id: str = ""

    def replace(self, **changes: Any) -> VideoRecord:
        return dataclasses.replace(self, **changes)

    # -- transitions (each: the record after an event; a terminal record never changes) ----------------

    def with_task(self, task: UpstreamTask, now: datetime | None = None) -> VideoRecord:
        """The record after Runway reported `task`. Unchanged (the same object) when nothing changed."""
        if self.status.terminal:
            return self
        now = now or utcnow()
        status = task.video_status
        progress = self.progress
        if status is VideoStatus.IN_PROGRESS and task.progress is not None:
            progress = max(0, min(99, int(task.progress * 100)))  # 100 only once COMPLETED
        elif status is VideoStatus.COMPLETED:
            progress = 100
        outputs = self.outputs
        if status is VideoStatus.COMPLETED and len(outputs) != len(task.outputs):
            outputs = tuple(OutputInfo(index=i, content_type="video/mp4") for i in range(len(task.outputs)))
        updated = self.replace(
            status=status,
            upstream_status=task.status,
            progress=progress,
            outputs=outputs,
            error_code=task.failure_code if status is VideoStatus.FAILED else "",
            error_message=(task.failure or "generation failed") if status is VideoStatus.FAILED else "",
            error_retryable=task.failure_retryable if status is VideoStatus.FAILED else True,
            cost_credits=task.cost_credits if task.cost_credits is not None else self.cost_credits,
            estimated_credits=(
                task.estimated_credits if task.estimated_credits is not None else self.estimated_credits
            ),
        )
        if updated == self:
            return self
        updated = updated.replace(update_time=now)
        if status.terminal:
            updated = updated.replace(complete_time=now)
            if status is VideoStatus.COMPLETED:
                updated = updated.replace(expire_time=now + OUTPUT_LIFETIME)
        return updated

    def cancelled(self, now: datetime | None = None) -> VideoRecord:
        """The record after our Cancel deleted the task at Runway."""
        if self.status.terminal:
            return self
        now = now or utcnow()
        return self.replace(status=VideoStatus.CANCELLED, update_time=now, complete_time=now)

    def gone(self, now: datetime | None = None) -> VideoRecord:
        """Runway answers 404 for a task we did not cancel: it was deleted outside this service."""
        if self.status.terminal:
            return self
        now = now or utcnow()
        return self.replace(
            status=VideoStatus.CANCELLED,
            error_code="UPSTREAM_TASK_DELETED",
            error_message="the task no longer exists at Runway (deleted outside this service)",
            update_time=now,
            complete_time=now,
        )

    def outcome_unknown(self, now: datetime | None = None) -> VideoRecord:
        """A paid create was sent but never confirmed. We cannot ask Runway whether it started the task (its
        API has no idempotency key and no task listing), so the video is closed as FAILED rather than risk
        paying twice; a retry with the same request_id returns this record, a new request_id starts afresh."""
        if self.status.terminal:
            return self
        now = now or utcnow()
        return self.replace(
            status=VideoStatus.FAILED,
            error_code=OUTCOME_UNKNOWN_CODE,
            error_message=(
                "Runway did not confirm the create request, so it may or may not have started a task. "
                "This request_id will not start another; use a new request_id to try again."
            ),
            update_time=now,
            complete_time=now,
        )

    # -- the store's rule ------------------------------------------------------------------------------

    def merged_with(self, new: VideoRecord) -> VideoRecord:
        """What a store keeps when `new` is saved over this stored record (see VideoStore.save).

        Not terminal: `new`, whole (last writer wins). Terminal: final. A `new` of another status changes
        nothing (this record is returned); one of the same status merges in only metadata: outputs (per
        index: a known content type, size, sha256 or lost reason is filled in, never erased; the archive
        state only moves forward, PENDING -> ARCHIVED -> EXPIRED or PENDING -> LOST, so a stale save never
        takes an output back to PENDING nor out of a final state), expire_time, credits, upstream_status
        and the later update_time. The error and complete_time stay as first recorded.

        expire_time says until when the content can be fetched: Runway's URL expiry while nothing is
        archived, the retention end once archived, None when retention is `forever`. So a `new` that moves
        some output's archive state forward brings its expire_time as it is (None included: kept forever).
        Any other `new` fills it in (a None there erases nothing), as before, unless an output of this
        record is already past PENDING: then the expire time belongs to the archive (a late COMPLETED save
        from a racing poller, which carries Runway's URL expiry, must not shorten a retention end or end
        `forever`, which the sweeper would act on) and stays.
        """
        if not self.status.terminal:
            return new
        if new.status != self.status:
            return self
        outputs = {o.index: o for o in self.outputs}
        advanced = False
        for o in new.outputs:
            old = outputs.get(o.index)
            if old is None:
                outputs[o.index] = o
                advanced = advanced or o.archive is not ArchiveState.PENDING
                continue
            archive = old.archive
            if o.archive in _ARCHIVE_NEXT[old.archive]:
                archive, advanced = o.archive, True
            outputs[o.index] = OutputInfo(
                index=o.index,
                content_type=o.content_type or old.content_type,
                size_bytes=o.size_bytes if o.size_bytes is not None else old.size_bytes,
                sha256=o.sha256 or old.sha256,
                archive=archive,
                lost_reason=o.lost_reason or old.lost_reason,
            )
        if advanced:
            expire_time = new.expire_time
        elif any(o.archive is not ArchiveState.PENDING for o in self.outputs):
            expire_time = self.expire_time
        else:
            expire_time = new.expire_time or self.expire_time
        return self.replace(
            outputs=tuple(outputs[i] for i in sorted(outputs)),
            expire_time=expire_time,
            cost_credits=new.cost_credits if new.cost_credits is not None else self.cost_credits,
            estimated_credits=(
                new.estimated_credits if new.estimated_credits is not None else self.estimated_credits
            ),
            upstream_status=new.upstream_status or self.upstream_status,
            update_time=max(self.update_time, new.update_time),
        )


# The archive states an output may move to from each state (`merged_with`): forward only, and LOST and
# EXPIRED are final. PENDING -> EXPIRED is the ARCHIVED step and the sweep arriving in one save.
_ARCHIVE_NEXT: dict[ArchiveState, frozenset[ArchiveState]] = {
    ArchiveState.PENDING: frozenset({ArchiveState.ARCHIVED, ArchiveState.LOST, ArchiveState.EXPIRED}),
    ArchiveState.ARCHIVED: frozenset({ArchiveState.EXPIRED}),
    ArchiveState.LOST: frozenset(),
    ArchiveState.EXPIRED: frozenset(),
}
