"""videogen.v1.VideoService: translates each RPC to a use case. Errors are raised as domain errors and
mapped to gRPC statuses by the interceptor; no HTTP here."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
from videogen.v1 import video_service_pb2, video_service_pb2_grpc

from videogen_server.api.auth import current_caller
from videogen_server.api.content_wire import EncodedChunk
from videogen_server.api.convert import (
    generate_spec,
    model_message,
    remix_spec,
    upload_response,
    video_message,
)
from videogen_server.api.limits import StreamLimits
from videogen_server.domain.model_info import ModelInfo
from videogen_server.domain.video import VideoRecord
from videogen_server.services.content import Chunk, ContentRelay
from videogen_server.services.remix import Remixes
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.uploads import UploadPart, Uploads
from videogen_server.services.videos import Videos

Context = grpc.aio.ServicerContext[Any, Any]


def deadline_of(context: Context) -> float | None:
    """The caller's deadline as an absolute time.monotonic() value (None: no deadline)."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


# Records are immutable and one record object is handed to every watcher of a change (and to every Get of a
# finished video), so each is converted once: a change fanned out to 1,000 watchers costs one conversion,
# not 1,000. Keyed by value (VideoRecord is a frozen dataclass); bounded; responses are never mutated.
@functools.lru_cache(maxsize=4096)
def _get_response(record: VideoRecord) -> video_service_pb2.GetResponse:
    return video_service_pb2.GetResponse(video=video_message(record))


@functools.lru_cache(maxsize=4096)
def _watch_response(record: VideoRecord) -> video_service_pb2.WatchStatusResponse:
    return video_service_pb2.WatchStatusResponse(video=video_message(record))


# The provider's catalog is data, so its description is converted once (keyed by value, like the above).
@functools.lru_cache(maxsize=8)
def _list_models_response(models: tuple[ModelInfo, ...]) -> video_service_pb2.ListModelsResponse:
    return video_service_pb2.ListModelsResponse(models=[model_message(m) for m in models])


async def _upload_parts(
    messages: AsyncIterator[video_service_pb2.UploadRequest],
) -> AsyncIterator[UploadPart]:
    """The client stream as the use case's parts (it reads them one at a time: nothing is buffered)."""
    async for m in messages:
        yield UploadPart(
            data=m.data,
            filename=m.filename,
            content_type=m.content_type,
            size_bytes=m.size_bytes if m.HasField("size_bytes") else None,
        )


class VideoServicer(video_service_pb2_grpc.VideoServiceServicer):
    def __init__(
        self,
        videos: Videos,
        tracker: TaskTracker,
        content: ContentRelay,
        limits: StreamLimits,
        *,
        uploads: Uploads | None = None,
        remixes: Remixes | None = None,
    ) -> None:
        self._videos = videos
        self._uploads = uploads
        self._remixes = remixes
        self._tracker = tracker
        self._content = content
        self._limits = limits  # from the Config: its caps and shares are defined there, once

    async def Generate(
        self, request: video_service_pb2.GenerateRequest, context: Context
    ) -> video_service_pb2.GenerateResponse:
        record = await self._videos.generate(
            current_caller.get(), generate_spec(request), deadline=deadline_of(context)
        )
        return video_service_pb2.GenerateResponse(video=video_message(record))

    async def Get(
        self, request: video_service_pb2.GetRequest, context: Context
    ) -> video_service_pb2.GetResponse:
        record = await self._videos.get(current_caller.get(), request.id, deadline=deadline_of(context))
        return _get_response(record)

    async def Cancel(
        self, request: video_service_pb2.CancelRequest, context: Context
    ) -> video_service_pb2.CancelResponse:
        record = await self._videos.cancel(current_caller.get(), request.id, deadline=deadline_of(context))
        return video_service_pb2.CancelResponse(video=video_message(record))

    async def ListModels(
        self, request: video_service_pb2.ListModelsRequest, context: Context
    ) -> video_service_pb2.ListModelsResponse:
        # A normal call: it needs a caller key when keys are configured (the interceptor checks it), as
        # every VideoService RPC does. The catalog is no secret, but an open method would be the one
        # exception to "VideoService needs a key", for no caller that lacks one.
        return _list_models_response(self._videos.models())

    async def List(
        self, request: video_service_pb2.ListRequest, context: Context
    ) -> video_service_pb2.ListResponse:
        # From the store only: the recorded states, no Runway call (a Get of one video refreshes it).
        records, next_token = await self._videos.list(
            current_caller.get(),
            page_size=request.page_size,
            page_token=request.page_token,
            filter_text=request.filter,
        )
        return video_service_pb2.ListResponse(
            videos=[video_message(r) for r in records], next_page_token=next_token
        )

    async def Upload(
        self, request_iterator: AsyncIterator[video_service_pb2.UploadRequest], context: Context
    ) -> video_service_pb2.UploadResponse:
        if self._uploads is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server takes no uploads")
            raise AssertionError("unreachable")
        result = await self._uploads.upload(_upload_parts(request_iterator), deadline=deadline_of(context))
        return upload_response(result)

    async def Remix(
        self, request: video_service_pb2.RemixRequest, context: Context
    ) -> video_service_pb2.RemixResponse:
        if self._remixes is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Remix is not configured in this server")
            raise AssertionError("unreachable")
        record = await self._remixes.remix(
            current_caller.get(), remix_spec(request), deadline=deadline_of(context)
        )
        return video_service_pb2.RemixResponse(video=video_message(record))

    async def WatchStatus(  # type: ignore[override]
        self, request: video_service_pb2.WatchStatusRequest, context: Context
    ) -> AsyncIterator[video_service_pb2.WatchStatusResponse]:
        # The slot is taken first (a full server refuses at once) and held until the stream ends, however.
        # It counts against the caller's share too (without caller auth, all calls are one caller's).
        caller = current_caller.get()
        with self._limits.watchers.hold(caller):
            record = await self._videos.load(caller, request.id)
            async for state in self._tracker.watch(record):
                yield _watch_response(state)

    async def StreamContent(  # type: ignore[override]
        self, request: video_service_pb2.StreamContentRequest, context: Context
    ) -> AsyncIterator[video_service_pb2.StreamContentResponse | EncodedChunk]:
        with self._limits.streams.hold(current_caller.get()):
            async with contextlib.aclosing(self._stream_content(request, context)) as messages:
                async for message in messages:
                    yield message

    async def _stream_content(
        self, request: video_service_pb2.StreamContentRequest, context: Context
    ) -> AsyncGenerator[video_service_pb2.StreamContentResponse | EncodedChunk, None]:
        deadline = deadline_of(context)
        record = await self._content.prepare(
            current_caller.get(),
            request.id,
            index=request.index,
            offset=request.offset,
            limit=request.limit,
            deadline=deadline,
        )
        first: video_service_pb2.StreamContentResponse | None = None
        async for item in self._content.stream(
            record, index=request.index, offset=request.offset, limit=request.limit, deadline=deadline
        ):
            if isinstance(item, Chunk):
                if first is not None:
                    # The first chunk carries the content type and total size too. bytes(): a chunk may
                    # be a view (protobuf takes bytes; bytes(b) of a bytes object is that object).
                    first.data = bytes(item.data)
                    yield first
                    first = None
                else:
                    # Encoded by hand: one copy of the data, not three (api/content_wire.py).
                    yield EncodedChunk(item.offset, item.data)
            else:
                await context.send_initial_metadata(
                    (
                        ("x-content-type", item.content_type),
                        ("x-content-length", str(item.total_size or 0)),
                    )
                )
                first = video_service_pb2.StreamContentResponse(
                    offset=request.offset, content_type=item.content_type, total_size=item.total_size or 0
                )
        if first is not None:
            # An empty range: still tell the caller what it asked about.
            yield first
