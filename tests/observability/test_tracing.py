"""Tracing with an in-memory exporter: a SERVER span per RPC, CLIENT spans for the upstream HTTP calls under
it, the caller's traceparent honoured; and which OTEL_* settings turn tracing on."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence

import pytest
from conftest import stop_server
from observability.helpers import start_app
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from rpc_helpers import expect_error, read_content, wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.config import ConfigError, TracingSettings, otlp_traces_endpoint, trace_exporters
from videogen_server.observability.tracing import BoundedTracerProvider, tracer_provider


def provider_from_env(env: dict[str, str], *, version: str = "") -> TracerProvider | None:
    """What main.py does: the settings from the environment (config.py), then the provider they ask for."""
    return tracer_provider(TracingSettings.from_env(env), version=version)


def _server_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == f"videogen.v1.VideoService/{name}" and s.kind is SpanKind.SERVER]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_rpc_spans_have_upstream_children_and_honour_the_callers_traceparent(tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = await start_app(str(tmp_path / "data"), tracer_provider=provider)
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = (("traceparent", f"00-{trace_id}-{caller_span}-01"),)
    try:
        stub = server.stub
        video = (
            await stub.Generate(
                pb.GenerateRequest(model="gen4.5", prompt="a lantern", seconds=5), metadata=traceparent
            )
        ).video
        done = await wait_terminal(stub, video.id)
        assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
        await read_content(stub, video.id)
        await expect_error(stub.Get(pb.GetRequest(id="nope")))
    finally:
        await stop_server(server)
    spans = list(exporter.get_finished_spans())

    generate = _server_span(spans, "Generate")
    assert generate.context is not None and generate.parent is not None
    assert f"{generate.context.trace_id:032x}" == trace_id  # the caller's trace
    assert f"{generate.parent.span_id:016x}" == caller_span and generate.parent.is_remote
    attrs = dict(generate.attributes or {})
    assert attrs["rpc.system"] == "grpc" and attrs["rpc.method"] == "Generate"
    assert attrs["rpc.grpc.status_code"] == 0
    assert attrs["videogen.video_id"] == video.id and attrs["videogen.task_id"] == video.upstream_task_id
    (create,) = _children(spans, generate)
    assert create.name == "POST /v1/text_to_video" and create.kind is SpanKind.CLIENT
    assert create.context is not None and create.context.trace_id == generate.context.trace_id
    assert dict(create.attributes or {})["http.response.status_code"] == 200

    # Without a traceparent an RPC starts its own trace; its upstream calls are still its children.
    stream = _server_span(spans, "StreamContent")
    assert stream.parent is None and stream.context is not None
    assert stream.context.trace_id != generate.context.trace_id
    # (a fresh read of the task for a current output URL, then the download)
    assert [s.name for s in _children(spans, stream)] == ["GET /v1/tasks/{id}", "GET output"]
    watch = _server_span(spans, "WatchStatus")
    assert watch.context is not None

    get = _server_span(spans, "Get")  # an error mapped by the error interceptor: INVALID_ARGUMENT
    assert dict(get.attributes or {})["rpc.grpc.status_code"] == 3
    assert get.status.status_code is StatusCode.UNSET  # a caller's error, not the server's

    # Span names and attributes carry route templates: never a URL (signed tokens) or a key.
    for span in spans:
        text = span.name + repr(dict(span.attributes or {}))
        assert "http://" not in text and server.simulator.api_key not in text, span.name
        assert video.upstream_task_id not in span.name


def test_tracing_is_off_unless_the_otel_variables_ask_for_it():
    assert trace_exporters({}) == []
    assert provider_from_env({}) is None
    assert trace_exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert trace_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == ["otlp"]
    assert trace_exporters({"OTEL_TRACES_EXPORTER": "console,otlp,console"}) == ["console", "otlp"]
    disabled = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}
    assert trace_exporters(disabled) == [] and provider_from_env(disabled) is None


def test_provider_from_env_builds_the_named_exporters_and_refuses_what_it_cannot_do():
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    provider = provider_from_env(env, version="1.2.3")
    assert provider is not None
    try:
        resource = dict(provider.resource.attributes)
        assert resource["service.name"] == "videogen" and resource["service.version"] == "1.2.3"
    finally:
        provider.shutdown()
    named = provider_from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "vg-east"})
    assert named is not None
    try:
        assert dict(named.resource.attributes)["service.name"] == "vg-east"
    finally:
        named.shutdown()
    with pytest.raises(ConfigError, match="http/protobuf"):
        provider_from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(ConfigError, match="unknown exporter"):
        provider_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_the_otlp_endpoint_for_the_start_up_log_is_the_sdks_without_credentials(monkeypatch):
    def endpoint(env: dict[str, str]) -> str:
        return TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "otlp", **env}).otlp_endpoint

    assert endpoint({}) == "http://localhost:4318/v1/traces"
    assert endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:p@collector:4318/"}) == (
        "https://collector:4318/v1/traces"
    )
    traces = "http://[::1]:4318/custom/traces?token=t0ps3cret#x"
    both = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": traces}
    assert endpoint(both) == "http://[::1]:4318/custom/traces"
    assert endpoint({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "u:pw@collector:4318?k=v"}) == "collector:4318"
    assert TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "console"}).otlp_endpoint == ""
    # The same URL the SDK's exporter posts to (it reads os.environ itself).
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    for env in ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, both):
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        exporter = OTLPSpanExporter()
        try:
            assert otlp_traces_endpoint(env) == exporter._endpoint
        finally:
            exporter.shutdown()


class _StuckExporter(SpanExporter):
    """An export that hangs until the exporter is shut down, like the OTLP exporter's retries."""

    def __init__(self) -> None:
        self.exporting = threading.Event()
        self.closed = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exporting.set()
        self.closed.wait(30)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.closed.set()


def test_shutdown_within_closes_an_exporter_that_holds_the_flush():
    provider = BoundedTracerProvider(Resource.create({}))
    stuck = _StuckExporter()
    provider.export_to(stuck)
    provider.get_tracer("test").start_span("one").end()
    started = time.monotonic()
    assert not provider.shutdown_within(0.5)  # not flushed: the exporter was closed
    assert time.monotonic() - started < 5  # unbounded, the export would hold shutdown for 30 s
    assert stuck.exporting.is_set() and stuck.closed.is_set()


def test_shutdown_within_says_when_the_spans_left_in_time():
    provider = BoundedTracerProvider(Resource.create({}))
    exporter = InMemorySpanExporter()
    provider.export_to(exporter)
    provider.get_tracer("test").start_span("one").end()
    assert provider.shutdown_within(5)
    assert [span.name for span in exporter.get_finished_spans()] == ["one"]
