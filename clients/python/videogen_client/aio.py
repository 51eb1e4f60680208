"""The asyncio client: ``async with AsyncVideoClient() as client: video = await client.generate(...)``."""

# `timeout` parameters are gRPC deadlines propagated to the server (and spanning retries), which
# `asyncio.timeout` cannot express, hence ASYNC109 is off here.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
import grpc.aio
from videogen.v1 import video_pb2, video_service_pb2, video_service_pb2_grpc

from .content_wire import content_stream
from .download import (
    AsyncPartialDownload,
    Deadline,
    ProgressCallback,
    RetryPolicy,
    is_retryable_stream,
    is_retryable_unary,
)
from .errors import OutOfRange, Unavailable, VideogenError, from_rpc_error
from .models import (
    DEFAULT_TARGET,
    PemSource,
    ReferenceLike,
    VideoPage,
    auth_metadata,
    build_generate_request,
    build_remix_request,
    channel_options,
    is_terminal,
    load_pem,
    resolve_api_key,
    resolve_target,
)
from .upload import UPLOAD_CHUNK, UploadProgress, aupload_messages, check_readable

T = TypeVar("T")

UpdateCallback = Callable[[video_pb2.Video], "Awaitable[object] | object"]

# Without a target (a channel of your own): the defaults; `channel_options(target)` adds round_robin for
# a target listing several addresses.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = channel_options(DEFAULT_TARGET)


class AsyncVideoClient:
    """A client of ``videogen.v1.VideoService`` for asyncio.

    ``target`` defaults to ``$VIDEOGEN_TARGET`` or ``127.0.0.1:50051`` and ``api_key`` to
    ``$VIDEOGEN_API_KEY``; with a key, every call sends ``authorization: Bearer <key>``. Pass ``channel``
    to use your own ``grpc.aio.Channel`` (it is not closed by ``close()``). ``timeout`` arguments are
    overall deadlines in seconds for the whole method, retries included. ``tls``/``root_certificates``
    connect with TLS; ``certificate_chain`` + ``private_key`` add a client certificate for mutual
    TLS. Each TLS option takes either the PEM contents as ``bytes`` or the path of a PEM file (``str``
    or ``pathlib.Path``), read here, once (``OSError`` if unreadable, ``ValueError`` if not PEM).
    Every method raises
    :class:`~videogen_client.errors.VideogenError` subclasses, never raw gRPC errors.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        channel: grpc.aio.Channel | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        certificate_chain: PemSource | None = None,
        private_key: PemSource | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.target = resolve_target(target)
        self._metadata = auth_metadata(resolve_api_key(api_key))
        if (certificate_chain is None) != (private_key is None):
            raise ValueError("certificate_chain and private_key (mutual TLS) go together")
        self._tls = tls or root_certificates is not None or certificate_chain is not None
        self._root_certificates = load_pem(root_certificates, "root_certificates")
        # Mutual TLS: the client's own certificate (PEM chain) and its private key.
        self._certificate_chain = load_pem(certificate_chain, "certificate_chain")
        self._private_key = load_pem(private_key, "private_key")
        self._channel = channel
        self._owns_channel = channel is None
        self._stub: video_service_pb2_grpc.VideoServiceAsyncStub | None = None
        self.retry = retry or RetryPolicy()

    # -- lifecycle --------------------------------------------------------------------------------------

    def _get_stub(self) -> video_service_pb2_grpc.VideoServiceAsyncStub:
        # The channel is created lazily, inside the running event loop it will be used on.
        if self._stub is None:
            if self._channel is None:
                options = channel_options(self.target)  # round_robin over several addresses
                if self._tls:
                    creds = grpc.ssl_channel_credentials(
                        root_certificates=self._root_certificates,
                        private_key=self._private_key,
                        certificate_chain=self._certificate_chain,
                    )
                    self._channel = grpc.aio.secure_channel(self.target, creds, options=options)
                else:
                    self._channel = grpc.aio.insecure_channel(self.target, options=options)
            stub = video_service_pb2_grpc.VideoServiceStub(self._channel)
            # StreamContent's messages are read without copying their data (content_wire.py).
            stub.StreamContent = content_stream(self._channel)
            self._stub = stub
        return self._stub

    async def close(self) -> None:
        if self._owns_channel and self._channel is not None:
            await self._channel.close()
            self._channel = None
        self._stub = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- helpers ----------------------------------------------------------------------------------------

    async def _retry_wait(self, err: VideogenError, attempt: int, deadline: Deadline) -> None:
        delay = self.retry.delay(attempt, err.retry_after)
        if delay is None or not deadline.allows(delay):
            raise err
        await asyncio.sleep(delay)

    async def _unary(self, call: Callable[[float | None], Awaitable[T]], deadline: Deadline) -> T:
        attempt = 0
        while True:
            try:
                return await call(deadline.call_timeout())
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                if not is_retryable_unary(err):
                    raise err from exc
            attempt += 1
            await self._retry_wait(err, attempt, deadline)

    # -- RPCs -------------------------------------------------------------------------------------------

    async def generate(
        self,
        model: str,
        prompt: str = "",
        *,
        input_reference: str = "",
        video_uri: str = "",
        seconds: int | None = None,
        size: str = "",
        seed: int | None = None,
        audio: bool | None = None,
        references: Iterable[ReferenceLike] = (),
        reference_images: Iterable[ReferenceLike] = (),
        public_figure_threshold: str = "",
        provider_options: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> video_pb2.Video:
        """Starts a generation and returns the new video (usually QUEUED). Without ``request_id`` a UUID4 is
        used, so retrying on UNAVAILABLE (which this method does) never starts a second paid video."""
        req = build_generate_request(
            model,
            prompt,
            input_reference=input_reference,
            video_uri=video_uri,
            seconds=seconds,
            size=size,
            seed=seed,
            audio=audio,
            references=references,
            reference_images=reference_images,
            public_figure_threshold=public_figure_threshold,
            provider_options=provider_options,
            request_id=request_id,
        )
        stub = self._get_stub()
        resp = await self._unary(
            lambda t: stub.Generate(req, metadata=self._metadata, timeout=t), Deadline(timeout)
        )
        return resp.video

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        content_type: str = "",
        progress: UploadProgress | None = None,
        chunk_size: int = UPLOAD_CHUNK,
        timeout: float | None = None,
    ) -> video_service_pb2.UploadResponse:
        """Uploads a local image or video (PNG, JPEG, WebP, MP4, MOV, WebM; 512 B to 200 MB) and returns
        its ``runway://`` URI (``.uri``, valid until ``.expire_time``: 24 h) for ``input_reference``,
        ``video_uri`` or a reference of :meth:`generate`, with ``size_bytes`` and ``sha256`` of what the
        server received. The file is read a chunk at a time in a worker thread; ``progress(sent, total)`` is
        called after each chunk. ``filename`` defaults to the file's name; the server checks the type
        from the bytes (a name or ``content_type`` that disagrees is InvalidArgument). Retried from the
        start on UNAVAILABLE (each attempt is a new upload)."""
        await asyncio.to_thread(check_readable, path)
        stub = self._get_stub()

        def call(t: float | None) -> Any:
            messages = aupload_messages(
                path, filename=filename, content_type=content_type, chunk_size=chunk_size, progress=progress
            )
            return stub.Upload(messages, metadata=self._metadata, timeout=t)

        response: video_service_pb2.UploadResponse = await self._unary(call, Deadline(timeout))
        return response

    async def remix(
        self,
        id: str,
        prompt: str = "",
        *,
        index: int = 0,
        model: str = "",
        seconds: int | None = None,
        size: str = "",
        seed: int | None = None,
        audio: bool | None = None,
        references: Iterable[ReferenceLike] = (),
        reference_images: Iterable[ReferenceLike] = (),
        public_figure_threshold: str = "",
        provider_options: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> video_pb2.Video:
        """Starts a video-to-video generation from one of your COMPLETED videos (``id``, output ``index``)
        and returns the new video, whose ``source_video_id`` is ``id``. ``model`` empty: ``aleph2``. Retried
        on UNAVAILABLE like ``generate``, under one ``request_id`` (a UUID4 when not given)."""
        req = build_remix_request(
            id,
            prompt,
            index=index,
            model=model,
            seconds=seconds,
            size=size,
            seed=seed,
            audio=audio,
            references=references,
            reference_images=reference_images,
            public_figure_threshold=public_figure_threshold,
            provider_options=provider_options,
            request_id=request_id,
        )
        stub = self._get_stub()
        resp = await self._unary(
            lambda t: stub.Remix(req, metadata=self._metadata, timeout=t), Deadline(timeout)
        )
        return resp.video

    async def list_models(self, *, timeout: float | None = None) -> list[video_service_pb2.Model]:
        """Every model the server's catalog knows, current ones first: its modes, sizes, durations, options
        and status (a model it does not list may still be accepted: the server passes it to Runway)."""
        stub = self._get_stub()
        req = video_service_pb2.ListModelsRequest()
        resp = await self._unary(
            lambda t: stub.ListModels(req, metadata=self._metadata, timeout=t), Deadline(timeout)
        )
        return list(resp.models)

    async def list_videos(
        self,
        *,
        filter: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> VideoPage:
        """One page of the caller's own videos, newest first, as the server recorded them (no call to Runway).

        ``filter``: ``status = COMPLETED``, ``model = "gen4.5"``, or both joined by ``AND``. ``page_size``:
        0 is the server's default (50), at most 1000. ``page_token``: the ``next_page_token`` of the previous
        page, with the same filter. Retried on UNAVAILABLE (a read: safe to repeat)."""
        stub = self._get_stub()
        req = video_service_pb2.ListRequest(filter=filter, page_size=page_size, page_token=page_token)
        resp = await self._unary(
            lambda t: stub.List(req, metadata=self._metadata, timeout=t), Deadline(timeout)
        )
        return VideoPage(list(resp.videos), resp.next_page_token)

    async def iter_videos(
        self, *, filter: str = "", page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[video_pb2.Video]:
        """Every one of the caller's videos matching ``filter``, newest first, page after page (``timeout``
        applies to each page). Videos created while it runs are not included; none is repeated or skipped."""
        token = ""
        while True:
            page = await self.list_videos(
                filter=filter, page_size=page_size, page_token=token, timeout=timeout
            )
            for video in page.videos:
                yield video
            token = page.next_page_token
            if not token:
                return

    async def get(self, id: str, *, timeout: float | None = None) -> video_pb2.Video:
        """The video's current state."""
        stub = self._get_stub()
        req = video_service_pb2.GetRequest(id=id)
        resp = await self._unary(
            lambda t: stub.Get(req, metadata=self._metadata, timeout=t), Deadline(timeout)
        )
        return resp.video

    async def cancel(self, id: str, *, timeout: float | None = None) -> video_pb2.Video:
        """Cancels a queued or running video (FailedPrecondition once it COMPLETED or FAILED)."""
        stub = self._get_stub()
        req = video_service_pb2.CancelRequest(id=id)
        resp = await self._unary(
            lambda t: stub.Cancel(req, metadata=self._metadata, timeout=t), Deadline(timeout)
        )
        return resp.video

    async def watch(self, id: str, *, timeout: float | None = None) -> AsyncIterator[video_pb2.Video]:
        """Yields the video's state at once and then every change; ends after a terminal state.

        A stream that breaks (UNAVAILABLE, a reset, or an early end) is reopened with backoff; identical
        consecutive states (re-sent on quiet streams or after a reconnect) are yielded once."""
        stub = self._get_stub()
        req = video_service_pb2.WatchStatusRequest(id=id)
        deadline = Deadline(timeout)
        last: video_pb2.Video | None = None
        attempt = 0
        while True:
            call = stub.WatchStatus(req, metadata=self._metadata, timeout=deadline.call_timeout())
            try:
                async for resp in call:
                    attempt = 0
                    video = resp.video
                    if video != last:
                        last = video
                        yield video
                    if is_terminal(video):
                        return
                err: VideogenError = Unavailable(
                    grpc.StatusCode.UNAVAILABLE, "the status stream ended before a terminal state"
                )
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                if not is_retryable_stream(err):
                    raise err from exc
            finally:
                call.cancel()
            attempt += 1
            await self._retry_wait(err, attempt, deadline)

    async def wait(
        self, id: str, *, timeout: float | None = None, on_update: UpdateCallback | None = None
    ) -> video_pb2.Video:
        """Waits (with WatchStatus, reconnecting as needed) until the video is terminal and returns it.

        Decision: a FAILED or CANCELLED video is *returned*, not raised (it is an outcome, not an RPC
        error); check ``video.status`` or call ``videogen_client.raise_for_status(video)``. ``on_update`` is
        called (and awaited, if it returns an awaitable) with every state change."""
        last: video_pb2.Video | None = None
        async for video in self.watch(id, timeout=timeout):
            last = video
            if on_update is not None:
                result = on_update(video)
                if inspect.isawaitable(result):
                    await result
        if last is None:  # unreachable: watch only ends after a terminal state
            raise Unavailable(grpc.StatusCode.UNAVAILABLE, "no state received")
        return last

    async def stream_content(
        self, id: str, offset: int = 0, limit: int = 0, *, index: int = 0, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Yields the content's bytes from ``offset`` (up to ``limit`` bytes, 0 = to the end). A broken stream
        is resumed where it stopped, with bounded retries."""
        stub = self._get_stub()
        deadline = Deadline(timeout)
        attempt = 0
        position = offset
        while True:
            remaining = 0 if limit == 0 else limit - (position - offset)
            if limit and remaining <= 0:
                return
            req = video_service_pb2.StreamContentRequest(id=id, index=index, offset=position, limit=remaining)
            call = stub.StreamContent(req, metadata=self._metadata, timeout=deadline.call_timeout())
            start = position
            try:
                async for msg in call:
                    data = bytes(msg.data)  # the one copy (msg.data is a view into the message)
                    if data:
                        position += len(data)
                        yield data
                return
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                if not is_retryable_stream(err):
                    raise err from exc
            finally:
                call.cancel()
            attempt = 1 if position > start else attempt + 1
            await self._retry_wait(err, attempt, deadline)

    async def download(
        self,
        id: str,
        path: str | os.PathLike[str],
        *,
        index: int = 0,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,
        resume: bool = True,
    ) -> int:
        """Downloads output ``index`` to ``path`` and returns its size in bytes.

        Bytes go to ``path + ".part"``; an existing ``.part`` is resumed from its size (``resume=False``
        starts over). Broken streams are resumed with bounded retries and backoff. The total is checked
        against the server's ``total_size``, then the file is renamed atomically to ``path``: a short file
        never appears there. On failure the ``.part`` stays for a later resume. (Chunk size is the
        server's choice: the API has no field for it.) All file I/O runs on a worker thread, never on the
        event loop; ``on_progress`` is called on the loop."""
        stub = self._get_stub()
        deadline = Deadline(timeout)
        part = await AsyncPartialDownload.open(path, resume=resume)  # file I/O runs off the event loop
        attempt = 0
        checked_out_of_range = False
        try:
            while True:
                await part.flush()  # a resume starts from what is on disk
                start = part.offset
                call = stub.StreamContent(
                    part.request(id, index), metadata=self._metadata, timeout=deadline.call_timeout()
                )
                try:
                    first = True
                    async for msg in call:
                        if first:
                            first = False
                            await part.start_stream(msg)
                            if on_progress is not None:
                                on_progress(part.offset, part.total)
                        data = msg.data  # a view into the message: written to the file as is
                        await part.write(msg.offset, data)
                        if on_progress is not None and data:
                            on_progress(part.offset, part.total)
                    if part.complete():
                        return await part.finish()
                    err: VideogenError = Unavailable(
                        grpc.StatusCode.UNAVAILABLE,
                        f"the content stream ended at byte {part.offset} of {part.total}",
                    )
                except grpc.RpcError as exc:
                    err = from_rpc_error(exc)
                    if isinstance(err, OutOfRange) and part.offset > 0 and not checked_out_of_range:
                        # The .part is at (or past) the end: complete if it has exactly the known size.
                        checked_out_of_range = True
                        if await self._output_size(id, index, deadline) == part.offset:
                            part.total = part.offset
                            return await part.finish()
                        await part.discard()
                        continue
                    if not is_retryable_stream(err):
                        raise err from exc
                finally:
                    call.cancel()
                attempt = 1 if part.offset > start else attempt + 1
                await self._retry_wait(err, attempt, deadline)
        finally:
            await part.close()

    async def _output_size(self, id: str, index: int, deadline: Deadline) -> int | None:
        video = await self.get(id, timeout=deadline.remaining())
        for out in video.videos:
            if out.index == index and out.HasField("size_bytes"):
                return out.size_bytes
        return None
