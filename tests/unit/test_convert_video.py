"""The Video message built from a record (api/convert.py video_message): the archive's fields (issue 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from videogen_server.api.convert import video_message
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import ArchiveState, OutputInfo, VideoRecord, VideoStatus

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def completed(*outputs: OutputInfo, expire_time: datetime | None) -> VideoRecord:
    return VideoRecord(
        id="6f1c2a9e-0d4b-4f7a-8e3c-5b2d1a0f9c8e",
        owner="alice",
        mode=GenerationMode.TEXT_TO_VIDEO,
        model="gen4.5",
        prompt="a boat",
        seconds=5,
        size="1280x720",
        status=VideoStatus.COMPLETED,
        create_time=T0,
        update_time=T0,
        complete_time=T0,
        outputs=outputs,
        expire_time=expire_time,
    )


def test_an_archived_output_carries_its_sha256_and_verified_size() -> None:
    record = completed(
        OutputInfo(0, "video/mp4", 4096, sha256=SHA, archive=ArchiveState.ARCHIVED),
        OutputInfo(1, "video/mp4"),
        OutputInfo(2, "video/mp4", archive=ArchiveState.LOST, lost_reason="URL expired"),
        expire_time=T0 + timedelta(days=30),
    )
    videos = video_message(record).videos
    assert [(v.index, v.sha256) for v in videos] == [(0, SHA), (1, ""), (2, "")]
    assert videos[0].size_bytes == 4096 and videos[0].HasField("size_bytes")
    assert not videos[1].HasField("size_bytes")


def test_an_expired_output_still_says_what_was_kept() -> None:
    record = completed(
        OutputInfo(0, "video/mp4", 4096, sha256=SHA, archive=ArchiveState.EXPIRED), expire_time=T0
    )
    (video,) = video_message(record).videos
    assert (video.sha256, video.size_bytes) == (SHA, 4096)


def test_expire_time_is_the_records_and_unset_when_kept_forever() -> None:
    retention_end = T0 + timedelta(days=30)
    archived = OutputInfo(0, "video/mp4", 1, sha256=SHA, archive=ArchiveState.ARCHIVED)
    message = video_message(completed(archived, expire_time=retention_end))
    assert message.HasField("expire_time") and message.expire_time.ToDatetime(UTC) == retention_end
    forever = video_message(completed(archived, expire_time=None))
    assert not forever.HasField("expire_time")
    # An expire time in the past (retention over) is shown as it is: Get still shows the video.
    past = video_message(completed(archived, expire_time=T0 - timedelta(days=1)))
    assert past.expire_time.ToDatetime(UTC) == T0 - timedelta(days=1)
