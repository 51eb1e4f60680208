"""The video record's transitions and the store's merge rule (domain/video.py): pure, no store, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.task import UpstreamTask
from videogen_server.domain.video import (
    OUTCOME_UNKNOWN_CODE,
    OUTPUT_LIFETIME,
    TERMINAL_STATUSES,
    ArchiveState,
    OutputInfo,
    VideoRecord,
    VideoStatus,
)
from videogen_server.providers.runway.wire import task_status

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)
TID = "0b6c9f6e-2b7d-4c1e-9d6e-3f1a2b3c4d5e"
TERMINAL = sorted(TERMINAL_STATUSES)
UNFINISHED = [s for s in VideoStatus if not s.terminal]


def record(**changes: Any) -> VideoRecord:
    fields: dict[str, Any] = {
        "id": "6f1c2a9e-0d4b-4f7a-8e3c-5b2d1a0f9c8e",
        "owner": "alice",
        "mode": GenerationMode.TEXT_TO_VIDEO,
        "model": "gen4.5",
        "prompt": "a boat",
        "seconds": 5,
        "size": "1280x720",
        "status": VideoStatus.QUEUED,
        "create_time": T0,
        "update_time": T0,
        "upstream_id": TID,
        "upstream_status": "PENDING",
    }
    fields.update(changes)
    return VideoRecord(**fields)


def task(status: str, **changes: Any) -> UpstreamTask:
    # The provider maps its own words (Runway's, here) to a VideoStatus; the record reacts to the mapping.
    return UpstreamTask(id=TID, status=status, video_status=task_status(status), **changes)


def test_terminal_statuses() -> None:
    assert {VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELLED} == TERMINAL_STATUSES
    assert all(s.terminal == (s in TERMINAL_STATUSES) for s in VideoStatus)


# -- a terminal record never changes -------------------------------------------------------------------


@pytest.mark.parametrize("status", TERMINAL)
def test_a_terminal_record_ignores_every_event(status: VideoStatus) -> None:
    done = record(status=status, complete_time=T0, error_code="E" if status is VideoStatus.FAILED else "")
    for word in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SOMETHING_NEW"):
        assert done.with_task(task(word, progress=0.5, outputs=("u",)), T1) is done
    assert done.cancelled(T1) is done
    assert done.gone(T1) is done
    assert done.outcome_unknown(T1) is done


# -- with_task: Runway's view of the task --------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("PENDING", VideoStatus.QUEUED),
        ("THROTTLED", VideoStatus.QUEUED),
        ("RUNNING", VideoStatus.IN_PROGRESS),
        ("SUCCEEDED", VideoStatus.COMPLETED),
        ("FAILED", VideoStatus.FAILED),
        ("CANCELLED", VideoStatus.CANCELLED),
        ("A_WORD_FROM_A_NEWER_API", VideoStatus.IN_PROGRESS),  # not a failure
    ],
)
def test_status_words(word: str, status: VideoStatus) -> None:
    updated = record().with_task(task(word), T1)
    assert (updated.status, updated.upstream_status) == (status, word)


@pytest.mark.parametrize(
    ("progress", "percent"),
    [(0.0, 0), (0.456, 45), (0.999, 99), (1.0, 99), (1.7, 99), (-0.2, 0)],
)
def test_progress_is_a_percentage_below_100_while_running(progress: float, percent: int) -> None:
    assert record().with_task(task("RUNNING", progress=progress), T1).progress == percent


def test_progress_without_a_figure_keeps_the_last_one() -> None:
    running = record(status=VideoStatus.IN_PROGRESS, upstream_status="RUNNING", progress=40)
    assert running.with_task(task("RUNNING"), T1) is running
    assert record(progress=7).with_task(task("PENDING", progress=0.5), T1).progress == 7  # only while running


def test_completed() -> None:
    done = record(progress=60).with_task(task("SUCCEEDED", outputs=("u0", "u1"), cost_credits=20.0), T1)
    assert done.status is VideoStatus.COMPLETED and done.progress == 100
    assert done.outputs == (OutputInfo(0, "video/mp4"), OutputInfo(1, "video/mp4"))  # never the URLs
    assert (done.update_time, done.complete_time, done.expire_time) == (T1, T1, T1 + OUTPUT_LIFETIME)
    assert done.cost_credits == 20.0
    assert (done.error_code, done.error_message) == ("", "")


def test_completed_keeps_known_outputs_of_the_same_count() -> None:
    known = (OutputInfo(0, "video/mp4", 123),)
    done = record(outputs=known).with_task(task("SUCCEEDED", outputs=("u0",)), T1)
    assert done.outputs == known


def test_failed() -> None:
    failed = record().with_task(task("FAILED", failure="bad prompt", failure_code="SAFETY.INPUT.TEXT"), T1)
    assert failed.status is VideoStatus.FAILED
    assert (failed.error_code, failed.error_message) == ("SAFETY.INPUT.TEXT", "bad prompt")
    assert (failed.complete_time, failed.expire_time) == (T1, None)
    assert record().with_task(task("FAILED"), T1).error_message == "generation failed"


def test_runway_cancelled() -> None:
    gone = record().with_task(task("CANCELLED"), T1)
    assert (gone.status, gone.complete_time, gone.expire_time) == (VideoStatus.CANCELLED, T1, None)


def test_credits_are_kept_when_runway_omits_them() -> None:
    priced = record(estimated_credits=10.0, cost_credits=None)
    updated = priced.with_task(task("RUNNING", progress=0.1), T1)
    assert (updated.estimated_credits, updated.cost_credits) == (10.0, None)
    updated = priced.with_task(task("RUNNING", progress=0.1, estimated_credits=12.0), T1)
    assert updated.estimated_credits == 12.0


def test_no_change_is_the_same_record_and_time() -> None:
    queued = record()
    assert queued.with_task(task("PENDING"), T1) is queued
    running = queued.with_task(task("RUNNING", progress=0.5), T1)
    assert running.update_time == T1 and running.complete_time is None


def test_now_defaults_to_the_clock() -> None:
    before = datetime.now(UTC)
    updated = record().with_task(task("RUNNING"))
    assert before <= updated.update_time <= datetime.now(UTC)


# -- our own events ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", UNFINISHED)
def test_cancelled(status: VideoStatus) -> None:
    cancelled = record(status=status).cancelled(T1)
    assert cancelled.status is VideoStatus.CANCELLED
    assert (cancelled.update_time, cancelled.complete_time) == (T1, T1)
    assert (cancelled.error_code, cancelled.upstream_status) == ("", "PENDING")


def test_gone() -> None:
    gone = record(status=VideoStatus.IN_PROGRESS).gone(T1)
    assert gone.status is VideoStatus.CANCELLED and gone.error_code == "UPSTREAM_TASK_DELETED"
    assert "deleted outside this service" in gone.error_message
    assert (gone.update_time, gone.complete_time) == (T1, T1)


def test_outcome_unknown() -> None:
    closed = record(status=VideoStatus.CREATING, upstream_id="", upstream_status="").outcome_unknown(T1)
    assert closed.status is VideoStatus.FAILED and closed.error_code == OUTCOME_UNKNOWN_CODE
    assert "new request_id" in closed.error_message
    assert (closed.update_time, closed.complete_time) == (T1, T1)


# -- merged_with: what a store keeps when a record is saved over a stored one --------------------------


@pytest.mark.parametrize("stored_status", UNFINISHED)
@pytest.mark.parametrize("new_status", list(VideoStatus))
def test_unfinished_takes_the_last_write(stored_status: VideoStatus, new_status: VideoStatus) -> None:
    stored = record(status=stored_status, progress=50, update_time=T1)
    new = record(status=new_status, progress=10, update_time=T0)  # even an older one
    assert stored.merged_with(new) is new


@pytest.mark.parametrize("stored_status", TERMINAL)
def test_a_terminal_record_keeps_its_status(stored_status: VideoStatus) -> None:
    stored = record(status=stored_status, complete_time=T0)
    for other in VideoStatus:
        if other is not stored_status:
            assert stored.merged_with(record(status=other, update_time=T1, cost_credits=5.0)) is stored


def test_the_same_terminal_status_merges_metadata_only() -> None:
    stored = record(
        status=VideoStatus.COMPLETED,
        upstream_status="SUCCEEDED",
        progress=100,
        outputs=(OutputInfo(0, "video/mp4", 100), OutputInfo(1)),
        complete_time=T0,
        expire_time=T0 + OUTPUT_LIFETIME,
        cost_credits=20.0,
        estimated_credits=10.0,
    )
    new = stored.replace(
        prompt="not merged",
        progress=3,
        outputs=(OutputInfo(1, "video/webm", 7), OutputInfo(2, "video/mp4")),
        update_time=T1,
        complete_time=T1,
        expire_time=T1 + OUTPUT_LIFETIME,
        cost_credits=None,
        estimated_credits=11.0,
        upstream_status="",
        error_code="NOT_MERGED",
    )
    assert stored.merged_with(new) == stored.replace(
        outputs=(OutputInfo(0, "video/mp4", 100), OutputInfo(1, "video/webm", 7), OutputInfo(2, "video/mp4")),
        update_time=T1,
        expire_time=T1 + OUTPUT_LIFETIME,
        estimated_credits=11.0,
    )


def test_merged_metadata_is_never_erased() -> None:
    stored = record(
        status=VideoStatus.COMPLETED,
        outputs=(OutputInfo(0, "video/mp4", 100),),
        complete_time=T0,
        expire_time=T0 + OUTPUT_LIFETIME,
        update_time=T1,
    )
    bare = record(status=VideoStatus.COMPLETED, outputs=(OutputInfo(0),), update_time=T0, upstream_status="")
    assert stored.merged_with(bare) == stored  # older update_time: the later one stays


def test_a_failed_record_keeps_its_first_error() -> None:
    stored = record(status=VideoStatus.FAILED, error_code="FIRST", error_message="first", complete_time=T0)
    new = stored.replace(error_code="SECOND", error_message="second", complete_time=T1, update_time=T1)
    merged = stored.merged_with(new)
    assert (merged.error_code, merged.error_message, merged.complete_time) == ("FIRST", "first", T0)
    assert merged.update_time == T1


# -- merged_with and the archive state (issue 11) ------------------------------------------------------

P, A, L, X = ArchiveState.PENDING, ArchiveState.ARCHIVED, ArchiveState.LOST, ArchiveState.EXPIRED
RUNWAY_EXPIRY = T0 + OUTPUT_LIFETIME
RETENTION_END = T0 + timedelta(days=30)
# Every move an output may make (`merged_with`): forward only; LOST and EXPIRED are final.
FORWARD = {(P, A), (P, L), (P, X), (A, X)}


def completed(
    *outputs: OutputInfo, expire_time: datetime | None = RUNWAY_EXPIRY, **changes: Any
) -> VideoRecord:
    return record(
        status=VideoStatus.COMPLETED,
        upstream_status="SUCCEEDED",
        progress=100,
        outputs=outputs,
        complete_time=T0,
        expire_time=expire_time,
        **changes,
    )


def archived(index: int, size: int = 100, sha: str = "ab" * 32) -> OutputInfo:
    return OutputInfo(index, "video/mp4", size, sha256=sha, archive=A)


@pytest.mark.parametrize("old", list(ArchiveState))
@pytest.mark.parametrize("new", list(ArchiveState))
def test_the_archive_state_only_moves_forward(old: ArchiveState, new: ArchiveState) -> None:
    stored = completed(OutputInfo(0, "video/mp4", archive=old))
    merged = stored.merged_with(completed(OutputInfo(0, archive=new), update_time=T1))
    assert merged.outputs[0].archive is (new if (old, new) in FORWARD else old)


def test_archiving_fills_size_and_sha256_and_they_are_never_erased() -> None:
    stored = completed(OutputInfo(0, "video/mp4"), OutputInfo(1, "video/mp4"))
    done = stored.merged_with(completed(archived(0, 4096, "cd" * 32), update_time=T1))
    assert done.outputs == (archived(0, 4096, "cd" * 32), OutputInfo(1, "video/mp4"))
    # A stale save (the record as a poller had it before the copy) erases nothing and moves nothing back.
    assert done.merged_with(stored).outputs == done.outputs
    # Expiry keeps what the verified copy recorded: the record still says what the video was.
    expired = done.merged_with(completed(OutputInfo(0, archive=X), update_time=T1))
    assert expired.outputs[0] == OutputInfo(0, "video/mp4", 4096, sha256="cd" * 32, archive=X)


def test_a_lost_output_keeps_its_reason() -> None:
    stored = completed(OutputInfo(0, "video/mp4"))
    lost = stored.merged_with(completed(OutputInfo(0, archive=L, lost_reason="URL expired (403)")))
    assert (lost.outputs[0].archive, lost.outputs[0].lost_reason) == (L, "URL expired (403)")
    assert lost.merged_with(completed(OutputInfo(0), update_time=T1)).outputs[0] == lost.outputs[0]
    # A later save cannot rescue it either: LOST is final.
    assert lost.merged_with(completed(archived(0))).outputs[0].archive is L


def test_moving_forward_brings_the_expire_time_as_it_is() -> None:
    stored = completed(OutputInfo(0, "video/mp4"), expire_time=RUNWAY_EXPIRY)
    # Archived: the retention end replaces Runway's URL expiry ...
    kept = stored.merged_with(completed(archived(0), expire_time=RETENTION_END, update_time=T1))
    assert kept.expire_time == RETENTION_END
    # ... even when it is earlier (a retention shorter than Runway's lifetime) ...
    short = stored.merged_with(completed(archived(0), expire_time=T0 + timedelta(hours=1)))
    assert short.expire_time == T0 + timedelta(hours=1)
    # ... and with retention `forever`: no expiry at all (None is taken, not read as "unknown").
    forever = stored.merged_with(completed(archived(0), expire_time=None, update_time=T1))
    assert forever.expire_time is None


def test_a_save_that_moves_nothing_keeps_todays_expire_time_rule() -> None:
    stored = completed(OutputInfo(0, "video/mp4"), expire_time=RUNWAY_EXPIRY)
    assert stored.merged_with(completed(OutputInfo(0), expire_time=None)).expire_time == RUNWAY_EXPIRY
    later = RUNWAY_EXPIRY + timedelta(hours=1)
    assert stored.merged_with(completed(OutputInfo(0), expire_time=later)).expire_time == later


@pytest.mark.parametrize("retention_end", [RETENTION_END, None])
def test_a_late_completed_save_does_not_undo_the_retention_end(retention_end: datetime | None) -> None:
    # Replica B's poller saw SUCCEEDED after replica A had completed and archived the video: B saves the
    # COMPLETED record as it built it (outputs PENDING, Runway's URL expiry). That must not turn the
    # retention end (or `forever`) back into Runway's expiry, or the sweeper deletes a copy still wanted.
    stored = completed(archived(0), expire_time=retention_end)
    late = completed(OutputInfo(0, "video/mp4"), expire_time=T1 + OUTPUT_LIFETIME, update_time=T1)
    merged = stored.merged_with(late)
    assert merged.expire_time == retention_end
    assert merged.outputs == (archived(0),)


def test_a_new_output_index_already_past_pending_counts_as_a_move() -> None:
    stored = completed(expire_time=RUNWAY_EXPIRY)
    merged = stored.merged_with(completed(archived(0), expire_time=None))
    assert merged.outputs == (archived(0),) and merged.expire_time is None


# -- merged_with as properties (hypothesis) ------------------------------------------------------------

_outputs = st.builds(
    OutputInfo,
    index=st.integers(0, 2),
    content_type=st.sampled_from(["", "video/mp4"]),
    size_bytes=st.one_of(st.none(), st.integers(0, 10**9)),
    sha256=st.sampled_from(["", "ab" * 32, "cd" * 32]),
    archive=st.sampled_from(list(ArchiveState)),
    lost_reason=st.sampled_from(["", "gone (403)"]),
)
_output_lists = st.lists(_outputs, max_size=3, unique_by=lambda o: o.index)
_expiries = st.one_of(st.none(), st.sampled_from([RUNWAY_EXPIRY, RETENTION_END, T1]))


def _completed_from(outputs: list[OutputInfo], expire: datetime | None, when: datetime) -> VideoRecord:
    return completed(*sorted(outputs, key=lambda o: o.index), expire_time=expire, update_time=when)


@given(
    stored_outputs=_output_lists,
    saves=st.lists(st.tuples(_output_lists, _expiries), max_size=4),
    stored_expiry=_expiries,
)
def test_property_merged_outputs_never_go_back(
    stored_outputs: list[OutputInfo],
    saves: list[tuple[list[OutputInfo], datetime | None]],
    stored_expiry: datetime | None,
) -> None:
    current = _completed_from(stored_outputs, stored_expiry, T0)
    for outputs, expiry in saves:
        merged = current.merged_with(_completed_from(outputs, expiry, T1))
        before = {o.index: o for o in current.outputs}
        after = {o.index: o for o in merged.outputs}
        assert before.keys() <= after.keys()  # no output is ever dropped
        for i, old in before.items():
            new = after[i]
            assert new.archive is old.archive or (old.archive, new.archive) in FORWARD
            # what was known stays known
            for field in ("content_type", "sha256", "lost_reason"):
                assert getattr(new, field) or not getattr(old, field)
            assert new.size_bytes is not None or old.size_bytes is None
        moved = any(after[i].archive is not (before[i].archive if i in before else P) for i in after)
        if not moved:
            # nothing moved: a None never erases the expire time (today's rule), and a record with an
            # archive decision keeps its expire time whatever the save says
            if any(o.archive is not P for o in current.outputs) or expiry is None:
                assert merged.expire_time == current.expire_time
            else:
                assert merged.expire_time == expiry
        else:
            assert merged.expire_time == expiry
        # merging the same save twice changes nothing more (idempotent: a retried save is harmless)
        assert merged.merged_with(_completed_from(outputs, expiry, T1)) == merged
        current = merged
