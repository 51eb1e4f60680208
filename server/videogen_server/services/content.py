"""The content relay: a finished video's bytes, streamed from Runway's output URL to the caller.

Bytes flow one chunk at a time from the upstream HTTP body to the caller, so memory stays bounded whatever
the file size and a slow caller slows the upstream read (backpressure, no queue). A connection cut mid-body
is resumed with an HTTP Range request from the last byte relayed; an expired output URL is replaced by
re-reading the task. Output URLs are resolved from the task every time and never leave the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

from videogen_server import errors
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.services.ports import OutputSource
from videogen_server.services.videos import Videos

log = logging.getLogger(__name__)

_RESUME_ATTEMPTS = 5  # upstream reconnections per StreamContent call
_URL_REFRESHES = 2  # times an expired output URL is replaced per call


@dataclass(frozen=True)
class ContentHeader:
    content_type: str
    total_size: int | None


@dataclass(frozen=True)
class Chunk:
    offset: int
    data: bytes


class ContentRelay:
    def __init__(self, videos: Videos, source: OutputSource, *, chunk_size: int) -> None:
        self._videos = videos
        self._source = source
        self._chunk_size = chunk_size

    async def prepare(
        self, owner: str, video_id: str, *, index: int, offset: int, limit: int, deadline: float | None
    ) -> VideoRecord:
        """Checks that can fail before the first byte (bad arguments, not finished, no such output)."""
        violations = []
        if index < 0:
            violations.append(errors.FieldViolation("index", "must be 0 or more"))
        if offset < 0:
            violations.append(errors.FieldViolation("offset", "must be 0 or more"))
        if limit < 0:
            violations.append(errors.FieldViolation("limit", "must be 0 (no limit) or more"))
        if violations:
            raise errors.InvalidArgument("invalid content range", violations)
        record = await self._videos.get(owner, video_id, deadline=deadline)
        if record.status is not VideoStatus.COMPLETED:
            raise errors.FailedPrecondition(
                f"the video is {record.status.value}; content is available once it is COMPLETED",
                reason="VIDEO_NOT_COMPLETED",
                metadata={"status": record.status.value},
            )
        if index >= len(record.outputs):
            raise errors.InvalidArgument(
                "no such output",
                [errors.FieldViolation("index", f"must be below {len(record.outputs)} for this video")],
            )
        size = record.outputs[index].size_bytes
        if size is not None and offset > size:
            raise errors.OutOfRange(f"offset {offset} is past the end of the content ({size} bytes)")
        return record

    async def stream(
        self, record: VideoRecord, *, index: int, offset: int, limit: int, deadline: float | None
    ) -> AsyncIterator[ContentHeader | Chunk]:
        """Yields one ContentHeader, then the chunks of [offset, offset+limit) in order."""
        position = offset
        end: int | None = offset + limit if limit else None
        header_sent = False
        resumes = refreshes = 0
        url = await self._output_url(record, index, deadline)
        while True:
            try:
                async with self._source.open_output(url, start=position, end=end, deadline=deadline) as out:
                    if not header_sent:
                        total = out.total_size
                        await self._remember_size(record, index, total, out.content_type)
                        if total is not None and end is not None:
                            end = min(end, total)
                        yield ContentHeader(out.content_type or "video/mp4", total)
                        header_sent = True
                    if end is not None and position >= end:
                        return
                    async for data in out.iter_chunks(self._chunk_size):
                        if end is not None and position + len(data) > end:
                            data = data[: end - position]
                        yield Chunk(position, data)
                        position += len(data)
                        if end is not None and position >= end:
                            return
                    return
            except errors.OutOfRange:
                if not header_sent and await self._is_exact_end(record, index, offset):
                    yield ContentHeader("video/mp4", offset)
                    return
                raise
            except errors.OutputExpired:
                refreshes += 1
                if refreshes > _URL_REFRESHES:
                    raise errors.UpstreamUnavailable(
                        "the video's output URL keeps failing at Runway"
                    ) from None
                log.info("video %s: output URL expired, re-reading the task", record.id)
                url = await self._output_url(record, index, deadline)
            except errors.UpstreamUnavailable as exc:
                resumes += 1
                if resumes > _RESUME_ATTEMPTS:
                    raise
                log.warning(
                    "video %s: upstream download cut at byte %d (%s); resuming", record.id, position, exc
                )
                await asyncio.sleep(min(2.0, 0.05 * 2**resumes) * random.uniform(1.0, 1.5))

    async def _output_url(self, record: VideoRecord, index: int, deadline: float | None) -> str:
        try:
            task = await self._source.get_task(record.upstream_id, deadline=deadline)
        except errors.UpstreamNotFound:
            # The video exists here (Get returns it) but Runway deleted the task and its output (expiry, or
            # a Cancel's DELETE that raced the task's end): NOT_FOUND would read as "no such video".
            raise errors.FailedPrecondition(
                "Runway no longer has this video's output (its task was deleted)", reason="VIDEO_OUTPUT_GONE"
            ) from None
        if task.video_status is not VideoStatus.COMPLETED or index >= len(task.outputs):
            raise errors.UpstreamUnavailable("Runway no longer lists this video's output")
        return task.outputs[index]

    async def _remember_size(self, record: VideoRecord, index: int, total: int | None, ctype: str) -> None:
        known = record.outputs[index]
        if total is None or known.size_bytes == total:
            return
        outputs = list(record.outputs)
        outputs[index] = dataclasses.replace(
            known, content_type=ctype or known.content_type, size_bytes=total
        )
        await self._videos.remember_outputs(record.replace(outputs=tuple(outputs)))

    async def _is_exact_end(self, record: VideoRecord, index: int, offset: int) -> bool:
        """An offset equal to the size is a valid empty read (ByteStream semantics), not OUT_OF_RANGE."""
        fresh = await self._videos.load(record.owner, record.id)
        size = fresh.outputs[index].size_bytes if index < len(fresh.outputs) else None
        return size is not None and size == offset
