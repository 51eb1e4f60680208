"""Which records the archive's two store indexes hold, and under which time: one definition for every engine.

`list_unarchived` (the archiver's recovery scan) reads the records `unarchived_since` gives a time for, oldest
first; `list_expired` (the retention sweeper) the records `expiring_at` gives a time for, up to `now`. Each
engine keeps its index in the same atomic step as the record (SQLite: two columns with partial indexes;
Redis: two sorted sets; memory: two dicts), computed from the record being written, so the index can never
say something the record does not.
"""

from __future__ import annotations

from datetime import UTC, datetime

from videogen_server.domain.video import ArchiveState, VideoRecord, VideoStatus


def unarchived_since(record: VideoRecord) -> datetime | None:
    """For a COMPLETED record with an output still PENDING: its complete_time (its update_time if none was
    recorded), the order of the recovery scan. None: not in the index."""
    if record.status is not VideoStatus.COMPLETED:
        return None
    if not any(o.archive is ArchiveState.PENDING for o in record.outputs):
        return None
    return record.complete_time or record.update_time


def expiring_at(record: VideoRecord) -> datetime | None:
    """For a record with an ARCHIVED output and an expire_time: that expire_time, the sweeper's order. None:
    not in the index (nothing archived now, or kept forever)."""
    if record.expire_time is None or record.status is not VideoStatus.COMPLETED:
        return None
    if not any(o.archive is ArchiveState.ARCHIVED for o in record.outputs):
        return None
    return record.expire_time


def index_text(value: datetime) -> str:
    """A time as fixed-width UTC text (always with microseconds), so that text order is time order.
    (`format_time` drops a zero microsecond part, which only happens to sort right.)"""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def index_score(value: datetime) -> float:
    """A time as a sorted-set score: seconds since the epoch (a float: microseconds may round, so a reader
    re-checks the exact times of what it got)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
