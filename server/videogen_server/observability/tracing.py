"""OpenTelemetry tracing: off by default, on with the standard OTEL_* variables (read by config.py into
`TracingSettings`).

- On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`), or when an OTLP endpoint is set
  (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) with no exporter named. Off when
  neither is set, with `OTEL_TRACES_EXPORTER=none`, or with `OTEL_SDK_DISABLED=true`.
- OTLP goes over HTTP/protobuf (port 4318). config.py reads the exporters, the protocol and
  `OTEL_SERVICE_NAME`; the SDK reads the rest of the standard variables itself (`OTEL_RESOURCE_ATTRIBUTES`,
  `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`, ...). Spans are exported from the
  SDK's own thread, never from the loop.
- One SERVER span per RPC, child of the caller's `traceparent` metadata (`OTEL_PROPAGATORS`, default W3C
  trace context and baggage); one CLIENT span per upstream HTTP request under it, named by the route
  template (`GET /v1/tasks/{id}`, `GET output`): never a URL, which may carry a signed token, nor a key.
- On SIGTERM the last spans get a bounded time to leave (`BoundedTracerProvider.shutdown_within`): the OTLP
  exporter alone would retry an endpoint where nothing listens for up to its timeout (10 s) and hold the
  exit that long.

Nothing imports this module (nor OpenTelemetry) unless tracing is on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from videogen_server.observability.metrics import split_method

if TYPE_CHECKING:
    from videogen_server.config import TracingSettings

# gRPC codes that make a server span an error (OpenTelemetry semantic conventions for gRPC servers).
_SERVER_ERRORS = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
}


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # endpoint, headers, timeout, compression: the SDK reads its OTEL_* variables
        return OTLPSpanExporter()
    raise ValueError(f"unknown span exporter {name!r}")  # config.TracingSettings lets none through


class _ClosableExporter(SpanExporter):
    """An exporter that can be shut down early, and only once. Shutting the OTLP exporter down ends its
    retries at once (it waits on an event between them) and closes its connections: the batch processor's
    worker thread, held in an export, then returns."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return  # the batch processor shuts its exporter down too, after an early close
            self._closed = True
        self._inner.shutdown()


class BoundedTracerProvider(TracerProvider):
    """A TracerProvider whose shutdown can be given a time limit (`shutdown_within`)."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource=resource)
        self._exporters: list[_ClosableExporter] = []

    def export_to(self, exporter: SpanExporter) -> None:
        closable = _ClosableExporter(exporter)
        self._exporters.append(closable)
        self.add_span_processor(BatchSpanProcessor(closable))

    def shutdown_within(self, seconds: float) -> bool:
        """Flush the spans still queued and shut down, giving up after about `seconds`: the exporters are
        then closed (an export in progress ends, its spans are dropped) and, should the SDK still not return,
        it is left behind on a daemon thread. True when the spans were flushed in time, False when dropped."""
        end = time.monotonic() + seconds
        worker = threading.Thread(target=self.shutdown, name="videogen-tracing-shutdown", daemon=True)
        worker.start()
        worker.join(seconds * 0.8)  # the export's own time; the rest is for closing
        if not worker.is_alive():
            return True
        for exporter in self._exporters:
            exporter.shutdown()
        worker.join(max(0.0, end - time.monotonic()))
        return False


def tracer_provider(settings: TracingSettings, *, version: str = "") -> BoundedTracerProvider | None:
    """A TracerProvider exporting where the settings say, or None when tracing is off."""
    if not settings.enabled:
        return None
    attributes: dict[str, str] = {"service.version": version} if version else {}
    attributes["service.name"] = settings.service_name
    provider = BoundedTracerProvider(Resource.create(attributes))
    for name in settings.exporters:
        provider.export_to(_exporter(name))
    return provider


def _carrier(metadata: Sequence[Any] | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for item in metadata or ():
        key, value = item[0], item[1]
        if isinstance(value, str) and not key.endswith("-bin"):
            carrier[key.lower()] = value
    return carrier


class Tracing:
    """Starts the spans the service makes, from one TracerProvider (per App: tests run several)."""

    def __init__(self, provider: trace.TracerProvider, version: str = "") -> None:
        self._tracer = provider.get_tracer("videogen_server", version or None)

    @contextmanager
    def rpc(self, full_method: str, metadata: Sequence[Any] | None, request_id: str) -> Iterator[Span]:
        """The SERVER span of one RPC, current while the handler runs, parented by the caller's context."""
        service, method = split_method(full_method)
        with self._tracer.start_as_current_span(
            f"{service}/{method}",
            context=propagate.extract(_carrier(metadata)),
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": method,
                "videogen.request_id": request_id,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    @staticmethod
    def finish_rpc(span: Span, code: grpc.StatusCode, video_id: str, task_id: str) -> None:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if video_id:
            span.set_attribute("videogen.video_id", video_id)
        if task_id:
            span.set_attribute("videogen.task_id", task_id)
        if code in _SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, code.name))

    @contextmanager
    def upstream(self, endpoint: str, method: str, host: str) -> Iterator[Span]:
        """A CLIENT span for one HTTP request to Runway (or its CDN), child of the current span."""
        with self._tracer.start_as_current_span(
            f"{method} {endpoint}",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.template": endpoint, "server.address": host},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    @staticmethod
    def finish_upstream(span: Span, status: int | None, error: BaseException | None) -> None:
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(status))
        elif error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.set_attribute("error.type", type(error).__name__)
