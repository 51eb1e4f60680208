"""The outermost server interceptor: for every RPC (health and reflection included) a request id and a
logging context, a span when tracing is on, the RPC metrics and one access log line.

It must come first in the server's interceptor list: it then wraps the handler that ErrorMappingInterceptor
already wrapped, so it sees the status that error mapping chose (an abort) and counts it by its code.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import grpc

from videogen_server.api.auth import is_open
from videogen_server.api.content_wire import STREAM_CONTENT
from videogen_server.api.rewrap import rewrap
from videogen_server.observability import logs
from videogen_server.observability.metrics import split_method
from videogen_server.observability.telemetry import Telemetry

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from videogen_server.api.rewrap import Handler

Context = grpc.aio.ServicerContext[Any, Any]

# The access log: a logger of its own name, so that operators can route or silence it apart.
log = logging.getLogger("videogen_server.access")

# A caller's own request id (x-request-id metadata) is kept when it is this tame; otherwise we make one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_STATUS_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _status_code(raw: object) -> grpc.StatusCode | None:
    if isinstance(raw, grpc.StatusCode):
        return raw
    if isinstance(raw, int):
        return _STATUS_BY_VALUE.get(raw, grpc.StatusCode.UNKNOWN)
    return None


def _kind(handler: Handler) -> str:
    if handler.unary_unary is not None:
        return "unary"
    if handler.unary_stream is not None:
        return "server_stream"
    if handler.stream_unary is not None:
        return "client_stream"
    return "bidi_stream"


def _caller_request_id(metadata: Any) -> str:
    for item in metadata or ():
        if item[0] == "x-request-id" and isinstance(item[1], str) and _REQUEST_ID.fullmatch(item[1]):
            return str(item[1])
    return logs.new_request_id()


def _video_id_of(message: Any) -> str:
    """The video a request (`id`) or a response (`video.id`) is about; "" when it has none."""
    value = getattr(message, "id", None)
    if not isinstance(value, str):
        value = getattr(getattr(message, "video", None), "id", None)
    return value if isinstance(value, str) else ""


def _bind_response(response: Any) -> None:
    """A response naming a video (`video`) tells the logging context its ids: the create of a Generate
    runs in a task of its own, whose context variables never reach this one."""
    video = getattr(response, "video", None)
    if video is None:
        return
    logs.bind_video(_video_id_of(response))
    task = getattr(video, "upstream_task_id", None)
    if isinstance(task, str):
        logs.bind_task(task)


class _Rpc:
    """What one RPC's wrapper learns while it runs."""

    __slots__ = ("code", "span")

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK
        self.span: Span | None = None


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata
        kind = _kind(handler)
        return rewrap(
            handler,
            unary=lambda behavior: self._wrap_call(behavior, method, kind, metadata),
            stream=lambda behavior: self._wrap_stream(behavior, method, kind, metadata),
        )

    def _wrap_call(self, behavior: Any, method: str, kind: str, metadata: Any) -> Any:
        """Unary responses, and streaming handlers written as coroutines (context.write)."""

        async def call(request: Any, context: Context) -> Any:
            with self._rpc(method, kind, metadata, request, context):
                response = await behavior(request, context)
                _bind_response(response)
                return response

        return call

    def _wrap_stream(self, behavior: Any, method: str, kind: str, metadata: Any) -> Any:
        if not inspect.isasyncgenfunction(behavior):
            return self._wrap_call(behavior, method, kind, metadata)
        messages = self._telemetry.metrics.stream_messages.labels(grpc_method=split_method(method)[1])
        content_bytes = self._telemetry.metrics.content_bytes if method == STREAM_CONTENT else None

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            with self._rpc(method, kind, metadata, request, context):
                async for response in behavior(request, context):
                    if not logs.task_id.get():
                        _bind_response(response)
                    messages.inc()
                    if content_bytes is not None:
                        # An EncodedChunk says its size; reading a message's `data` copies it.
                        size = getattr(response, "size", None)
                        content_bytes.inc(size if size is not None else len(getattr(response, "data", b"")))
                    yield response

        return stream

    @contextmanager
    def _rpc(self, method: str, kind: str, metadata: Any, request: Any, context: Context) -> Iterator[_Rpc]:
        service, name = split_method(method)
        labels = {"grpc_type": kind, "grpc_service": service, "grpc_method": name}
        metrics = self._telemetry.metrics
        tracing = self._telemetry.tracing
        request_id = _caller_request_id(metadata)
        rpc = _Rpc()
        start = time.perf_counter()
        metrics.rpc_started.labels(**labels).inc()
        with logs.rpc_context(method, request_id):
            # The caller's raw id, unvalidated and unauthenticated: bind_video keeps it only if it is a UUID.
            logs.bind_video(_video_id_of(request))
            scope = tracing.rpc(method, metadata, request_id) if tracing is not None else nullcontext(None)
            with scope as span:
                rpc.span = span
                try:
                    yield rpc
                    rpc.code = _status_code(context.code()) or grpc.StatusCode.OK
                except grpc.aio.AbortError:
                    rpc.code = _status_code(context.code()) or grpc.StatusCode.UNKNOWN
                    raise
                except (asyncio.CancelledError, GeneratorExit):
                    remaining = context.time_remaining()
                    expired = remaining is not None and remaining <= 0
                    rpc.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                    raise
                except BaseException:
                    rpc.code = grpc.StatusCode.UNKNOWN  # what grpc sends for an unhandled exception
                    raise
                finally:
                    elapsed = time.perf_counter() - start
                    metrics.rpc_handled.labels(**labels, grpc_code=rpc.code.name).inc()
                    metrics.rpc_seconds.labels(**labels).observe(elapsed)
                    if span is not None and tracing is not None:
                        tracing.finish_rpc(span, rpc.code, logs.video_id.get(), logs.task_id.get())
                    millis = elapsed * 1000
                    log.log(
                        # Probes call health every few seconds: their lines are DEBUG, not INFO.
                        logging.DEBUG if is_open(method) else logging.INFO,
                        "%s %s %.1fms",
                        method,
                        rpc.code.name,
                        millis,
                        extra={"fields": {"grpc_code": rpc.code.name, "duration_ms": round(millis, 3)}},
                    )
