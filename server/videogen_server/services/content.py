"""The content relay: a finished video's bytes, streamed to the caller from the output archive once the
output is archived (issue 11: no request to Runway at all), else from Runway's output URL.

An archived output is read from the archive with a ranged read for offset/limit. When the archive cannot
serve an object the record says is archived (a replica that does not see the same directory, an object
lost by the storage, the archive down), that is logged and the bytes are relayed from Runway while its URL
lives, from the byte reached. An output whose retention ended (EXPIRED) is FAILED_PRECONDITION
VIDEO_OUTPUT_EXPIRED; one Runway stopped serving before it was copied (LOST), VIDEO_OUTPUT_GONE.

Bytes flow one chunk at a time from the upstream HTTP body to the caller, so memory stays bounded whatever
the file size and a slow caller slows the upstream read (backpressure, no queue). A connection cut mid-body
is resumed with an HTTP Range request from the last byte relayed; an expired output URL is replaced by
re-reading the task. Output URLs are resolved from the task every time and never leave the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from videogen_server import errors
from videogen_server.domain.video import ArchiveState, VideoRecord, VideoStatus, archive_key
from videogen_server.services.message_sizes import LargeMessageBudget, MessageSizes
from videogen_server.services.ports import OutputArchive, OutputSource
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
    data: bytes | memoryview  # a view into the archive read's buffer, or bytes from the relay


class ContentRelay:
    def __init__(
        self, videos: Videos, source: OutputSource, *, chunk_size: int, archive: OutputArchive | None = None
    ) -> None:
        self._videos = videos
        self._source = source
        self._chunk_size = chunk_size
        self._archive = archive  # None: the archive is off, every output is relayed from Runway
        self._large_messages = LargeMessageBudget()  # archived reads above the chunk size, at once

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
        output = record.outputs[index]
        if output.archive is ArchiveState.EXPIRED:
            raise errors.FailedPrecondition(
                "the video's retention ended and its content was deleted; the video's record remains",
                reason="VIDEO_OUTPUT_EXPIRED",
            )
        if output.archive is ArchiveState.LOST:
            raise errors.FailedPrecondition(
                f"Runway no longer has this video's output, and no copy was made ({output.lost_reason})",
                reason="VIDEO_OUTPUT_GONE",
            )
        size = output.size_bytes
        if size is not None and offset > size:
            raise errors.OutOfRange(f"offset {offset} is past the end of the content ({size} bytes)")
        return record

    async def stream(
        self, record: VideoRecord, *, index: int, offset: int, limit: int, deadline: float | None
    ) -> AsyncIterator[ContentHeader | Chunk]:
        """Yields one ContentHeader, then the chunks of [offset, offset+limit) in order."""
        end: int | None = offset + limit if limit else None
        position = offset
        header_sent = False
        if self._archive is not None and record.outputs[index].archive is ArchiveState.ARCHIVED:
            try:
                # aclosing: a caller gone mid-stream closes the read now (its file, its place in the
                # large-message budget), not whenever the event loop finalizes the generator.
                async with contextlib.aclosing(
                    self._from_archive(self._archive, record, index, offset, end)
                ) as items:
                    async for item in items:
                        if isinstance(item, Chunk):
                            position = item.offset + len(item.data)
                        else:
                            header_sent = True
                        yield item
                return
            except (errors.ArchiveObjectMissing, errors.ArchiveUnavailable) as exc:
                log.warning(
                    "video %s output %d: the archived copy cannot be read (%s); relaying from Runway "
                    "from byte %d",
                    record.id,
                    index,
                    exc,
                    position,
                )
                if end is not None and position >= end:
                    return
        async with contextlib.aclosing(
            self._relay(record, index, position, end, header_sent, deadline)
        ) as relayed:
            async for item in relayed:
                yield item

    async def _from_archive(
        self, archive: OutputArchive, record: VideoRecord, index: int, offset: int, end: int | None
    ) -> AsyncGenerator[ContentHeader | Chunk, None]:
        output = record.outputs[index]
        content_type = output.content_type or "video/mp4"
        if output.size_bytes is not None and offset == output.size_bytes:
            yield ContentHeader(content_type, output.size_bytes)  # an empty read at the end: valid
            return
        position = offset
        # Small for a slow reader, up to 1 MiB for a fast one (within the service-wide budget).
        sizes = MessageSizes(self._chunk_size, budget=self._large_messages)
        try:
            async with archive.open_read(archive_key(record.id, index), start=offset, end=end) as out:
                yield ContentHeader(out.content_type or content_type, out.total_size)
                async for data in out.iter_sized(sizes):
                    handed = time.monotonic()
                    yield Chunk(position, data)
                    sizes.taken(len(data), time.monotonic() - handed)  # the reader has taken it: how fast?
                    position += len(data)
        finally:
            sizes.close()

    async def _relay(
        self,
        record: VideoRecord,
        index: int,
        position: int,
        end: int | None,
        header_sent: bool,
        deadline: float | None,
    ) -> AsyncGenerator[ContentHeader | Chunk, None]:
        """From Runway's output URL, bytes [position, end); the header first unless it was sent already."""
        offset = position
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
            task = await self._source.get_task(record.upstream_id, key=record.runway_key, deadline=deadline)
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
