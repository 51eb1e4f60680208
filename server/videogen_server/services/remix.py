"""The Remix use case (issue 12): a new video-to-video generation whose source is one of the caller's own
COMPLETED videos. No gRPC here.

The source reaches the provider in one of two ways, decided after the claim (so a replayed request_id costs
neither a read nor an upload):

- while the provider still serves the source task's output: its output URL, read afresh from the task
  (signed URLs expire; the record never stores them) and probed with a one-byte read, sent as the video
  input (`own_video`: the provider's own URL is trusted input, see VideoProvider.plan);
- once the provider forgot the task or its URL no longer works, and the output is ARCHIVED (issue 11): the
  archived copy is streamed to a temporary file (bounded memory), uploaded to the provider (`upload`), and
  the create is sent with the key that uploaded it (an upload belongs to that key's account). The temporary
  file is removed in every case.

Neither available: FAILED_PRECONDITION naming why (VIDEO_OUTPUT_GONE, VIDEO_OUTPUT_EXPIRED, as StreamContent).
The request is validated in full before any of this (bad input costs nothing), and fingerprinted from what the
caller sent (the source's id and index), never from the URL or upload it resolves to.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from videogen_server import errors
from videogen_server.domain.remix import RemixSpec
from videogen_server.domain.task import UpstreamRequest
from videogen_server.domain.video import ArchiveState, VideoRecord, VideoStatus, archive_key
from videogen_server.services.ports import UNRESOLVED_SOURCE, OutputArchive, VideoProvider
from videogen_server.services.uploads import Uploads, new_spool_file
from videogen_server.services.videos import Videos

log = logging.getLogger(__name__)

# The archive is read into the temporary file this many bytes at a time (bounded memory whatever the size).
_COPY_CHUNK = 1024 * 1024


class Remixes:
    def __init__(
        self,
        videos: Videos,
        provider: VideoProvider,
        archive: OutputArchive | None = None,
        *,
        spool: Uploads,
    ) -> None:
        self._videos = videos
        self._provider = provider
        self._archive = archive  # None: the archive is off; a source Runway forgot cannot be remixed
        self._spool = spool  # archived sources are copied into the Upload spool before their upload

    async def remix(self, owner: str, remix: RemixSpec, *, deadline: float | None) -> VideoRecord:
        # As Get: another caller's video is NOT_FOUND, and the state is current (a poll if it is stale).
        source = await self._videos.get(owner, remix.source_id, deadline=deadline)
        if source.status is not VideoStatus.COMPLETED:
            raise errors.FailedPrecondition(
                f"the source video is {source.status.value}; only a COMPLETED video can be remixed",
                reason="SOURCE_VIDEO_NOT_COMPLETED",
                metadata={"status": source.status.value, "id": source.id},
            )
        index = remix.index
        if index >= len(source.outputs):
            # INVALID_ARGUMENT, not OUT_OF_RANGE: a completed video's outputs never change, so no retry helps.
            raise errors.InvalidArgument(
                "invalid request: index: no such output",
                [errors.FieldViolation("index", f"must be below {len(source.outputs)} for this video")],
            )

        async def prepare(key: str | None) -> tuple[UpstreamRequest, str | None]:
            return await self._resolve(source, remix, key, deadline)

        return await self._videos.generate(
            owner,
            remix.spec,
            deadline=deadline,
            fingerprint=remix.fingerprint(),
            source_video_id=source.id,
            own_video=UNRESOLVED_SOURCE,
            prepare=prepare,
        )

    async def _resolve(
        self, source: VideoRecord, remix: RemixSpec, key: str | None, deadline: float | None
    ) -> tuple[UpstreamRequest, str | None]:
        """The plan to send and the key to send it with, the source resolved (after the claim); an upload
        of the source is made with `key` when the request's own uploads hold it to one."""
        url = await self._live_url(source, remix.index, deadline)
        if url is not None:
            log.info("remix of video %s: sending its output URL from Runway", source.id)
            return self._provider.plan(remix.spec, own_video=url), None
        output = source.outputs[remix.index]
        if output.archive is ArchiveState.ARCHIVED and self._archive is not None:
            uri, key = await self._upload_archived(self._archive, source, remix.index, key, deadline)
            log.info("remix of video %s: Runway no longer serves it; uploaded from the archive", source.id)
            return self._provider.plan(remix.spec, own_video=uri), key
        if output.archive is ArchiveState.EXPIRED:
            raise _expired()
        why = output.lost_reason or (
            "the archive is off" if self._archive is None else "it was not copied to the archive"
        )
        raise errors.FailedPrecondition(
            f"Runway no longer has the source video's output, and no copy can be used ({why})",
            reason="VIDEO_OUTPUT_GONE",
            metadata={"id": source.id},
        )

    async def _live_url(self, source: VideoRecord, index: int, deadline: float | None) -> str | None:
        """The source's output URL if Runway still serves it (read from the task now, then one byte of it
        read, so that an expired output is not handed to a paid task), else None."""
        try:
            task = await self._provider.get_task(source.upstream_id, key=source.runway_key, deadline=deadline)
        except errors.UpstreamNotFound:
            return None  # Runway forgot the task (it keeps outputs 24-48 h)
        except errors.FailedPrecondition:
            return None  # the key that made it is no longer configured: the archive may still have it
        if task.video_status is not VideoStatus.COMPLETED or index >= len(task.outputs):
            return None
        url = task.outputs[index]
        try:
            async with self._provider.open_output(url, start=0, end=1, deadline=deadline):
                pass
        except (errors.OutputExpired, errors.UpstreamNotFound):
            return None
        return url

    async def _upload_archived(
        self, archive: OutputArchive, source: VideoRecord, index: int, key: str | None, deadline: float | None
    ) -> tuple[str, str]:
        """Copy the archived output to a spool file, streamed, and upload it; the file is always removed.
        It is one of the Upload spool's files (services/uploads.py): inside its disk budget, and found by
        its clean-up after a crash. Returns the upload's URI and the name of the key that owns it."""
        with self._spool.spool_space(source.outputs[index].size_bytes or 0) as directory:
            fd, name = await asyncio.to_thread(new_spool_file, directory)
            path = Path(name)
            try:
                return await self._copy_and_upload(archive, source, index, key, fd, path, deadline)
            finally:
                await asyncio.to_thread(path.unlink, True)

    async def _copy_and_upload(
        self,
        archive: OutputArchive,
        source: VideoRecord,
        index: int,
        key: str | None,
        fd: int,
        path: Path,
        deadline: float | None,
    ) -> tuple[str, str]:
        size = 0
        content_type = "video/mp4"
        file = await asyncio.to_thread(os.fdopen, fd, "wb")  # owns fd from here: closes it
        try:
            async with archive.open_read(archive_key(source.id, index)) as read:
                content_type = read.content_type or content_type
                async for chunk in read.iter_chunks(_COPY_CHUNK):
                    await asyncio.to_thread(file.write, chunk)
                    size += len(chunk)
        except errors.ArchiveObjectMissing:
            raise errors.FailedPrecondition(
                "Runway no longer has the source video's output, and its archived copy is missing",
                reason="VIDEO_OUTPUT_GONE",
                metadata={"id": source.id},
            ) from None
        finally:
            await asyncio.to_thread(file.close)
        asset = await self._provider.upload(
            path,
            filename=f"{source.id}-{index}.mp4",
            size=size,
            content_type=content_type,
            key=key,
            deadline=deadline,
        )
        return asset.uri, asset.key


def _expired() -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        "the source video's retention ended and its content was deleted; it cannot be remixed",
        reason="VIDEO_OUTPUT_EXPIRED",
    )
