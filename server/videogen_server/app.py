"""Wiring: builds the service from a Config, starts the gRPC server (health, reflection, interceptors) and
stops it gracefully. `main.py` runs it as a process; tests start it in-process on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from videogen.v1 import video_service_pb2, video_service_pb2_grpc

from videogen_server import __version__
from videogen_server.api.interceptors import Authenticator, ServiceInterceptor
from videogen_server.api.limits import StreamLimits
from videogen_server.api.servicer import VideoServicer
from videogen_server.api.telemetry_interceptor import TelemetryInterceptor
from videogen_server.api.tls import server_credentials, tls_mode
from videogen_server.config import Config
from videogen_server.observability import logs
from videogen_server.observability.metrics import Metrics
from videogen_server.observability.metrics_http import MetricsServer
from videogen_server.observability.telemetry import Telemetry
from videogen_server.providers.runway import RunwayProvider
from videogen_server.services.content import ContentRelay
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.videos import Videos
from videogen_server.simulator import RunwaySimulator
from videogen_server.store import open_store
from videogen_server.store.base import VideoStore

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from videogen_server.observability.tracing import Tracing

log = logging.getLogger(__name__)

SERVICE_NAME = video_service_pb2.DESCRIPTOR.services_by_name["VideoService"].full_name

MAX_REQUEST_BYTES = 8 * 1024 * 1024

SERVER_OPTIONS = [
    # One process owns its port: a second server must fail to bind, not silently share it.
    ("grpc.so_reuseport", 0),
    # Find dead peers on long, quiet WatchStatus streams.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # A Generate may carry one data: URI of up to 5 MiB (design §4); grpc's default 4 MiB would refuse it
    # with RESOURCE_EXHAUSTED before validation. Anything over 8 MiB is still refused by grpc itself.
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
]


@dataclass
class App:
    config: Config
    simulator: RunwaySimulator | None = None
    port: int = 0
    server: grpc.aio.Server | None = None
    health: health.aio.HealthServicer | None = None
    runway: RunwayProvider | None = None
    store: VideoStore | None = None
    tracker: TaskTracker | None = None
    videos: Videos | None = None
    limits: StreamLimits | None = None
    # Tracing is on when given a provider (main.py builds one from the OTEL_* variables); its owner shuts it.
    tracer_provider: TracerProvider | None = None
    metrics: Metrics | None = None
    metrics_server: MetricsServer | None = None
    metrics_port: int = 0  # the bound /metrics port (config.metrics_listen may say :0)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> int:
        cfg = self.config
        if cfg.use_simulator:
            # No Runway key: run the built-in simulator on loopback with a key of its own.
            key = "key_sim_" + secrets.token_hex(16)
            self.simulator = self.simulator or RunwaySimulator(api_key=key)
            base_url = await self.simulator.start(host="127.0.0.1", port=0)
            api_key = self.simulator.api_key
            upstream = f"the built-in Runway simulator at {base_url}"
        else:
            assert cfg.runway_api_secret is not None
            base_url, api_key = cfg.runway_base_url, cfg.runway_api_secret
            upstream = f"Runway at {base_url}"
        for secret in (api_key, *cfg.api_keys.values()):
            logs.register_secret(secret)  # belt and braces: log lines are scrubbed of keys
        self.metrics = Metrics(__version__)
        telemetry = Telemetry(self.metrics, self._tracing())
        # Downloads get a pool of their own, one connection per allowed StreamContent call: held streams
        # can then never starve API calls, nor wait for a connection themselves.
        self.runway = RunwayProvider.connect(
            base_url, api_key, observer=telemetry, max_downloads=cfg.max_streams
        )
        self.store = open_store(cfg.data_dir)
        await self.store.open()
        store = self.metrics.timed_store(self.store)
        runway = self.runway
        self.tracker = TaskTracker(
            store,
            lambda task_id, deadline: runway.get_task(task_id, deadline=deadline),
            poll_interval=cfg.poll_interval,
            freshness=cfg.freshness,
            heartbeat=cfg.watch_heartbeat,
        )
        self.metrics.track(self.tracker)
        self.videos = Videos(store, runway, self.tracker)
        relay = ContentRelay(self.videos, runway, chunk_size=cfg.chunk_size)

        self.limits = StreamLimits.of(
            max_streams=cfg.max_streams,
            max_watchers=cfg.max_watchers,
            streams_per_caller=cfg.streams_per_caller,
            watchers_per_caller=cfg.watchers_per_caller,
        )
        server = grpc.aio.server(
            # Telemetry first: it wraps the error mapping, so it counts the status callers really get.
            interceptors=[TelemetryInterceptor(telemetry), ServiceInterceptor(Authenticator(cfg.api_keys))],
            options=SERVER_OPTIONS,
        )
        video_service_pb2_grpc.add_VideoServiceServicer_to_server(
            VideoServicer(self.videos, self.tracker, relay, self.limits), server
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        credentials = await server_credentials(cfg)
        if credentials is None:
            self.port = server.add_insecure_port(cfg.listen)
        else:
            self.port = server.add_secure_port(cfg.listen, credentials)
        if self.port == 0:
            raise OSError(f"could not listen on {cfg.listen}")
        if cfg.metrics_listen:
            self.metrics_server = MetricsServer(self.metrics.registry, cfg.metrics_listen)
            self.metrics_port = await self.metrics_server.start()
        await server.start()
        self.server = server
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        host = cfg.listen.rsplit(":", 1)[0]
        log.info(
            "videogen listening on %s:%d; upstream: %s; data dir %s; caller auth %s; TLS %s; "
            "limits: %d streams, %d watchers",
            host,
            self.port,
            upstream,
            cfg.data_dir,
            "on" if cfg.api_keys else "off",
            tls_mode(cfg).value,
            cfg.max_streams,
            cfg.max_watchers,
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Health turns NOT_SERVING, new calls are refused, calls in flight get `grace` seconds."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.shutdown_grace if grace is None else grace
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        # Within one grace period: the calls in flight, and every paid create in flight, also those whose
        # caller has left (they run on in the background). Their answers must reach the store before it and
        # the Runway client close, or Runway's task is paid for and never recorded.
        creates = asyncio.create_task(self.videos.drain(grace)) if self.videos is not None else None
        # server.stop stays awaited by this task, as before: run as a child task of a gather, a call made
        # after health said NOT_SERVING ended CANCELLED instead of being refused UNAVAILABLE
        # (tests/faults/test_shutdown.py).
        try:
            if self.server is not None:
                await self.server.stop(grace)
        finally:
            if creates is not None:
                await creates
        if self.videos is not None:
            # Creates started by calls that were still running meanwhile get the rest of the grace period.
            await self.videos.drain(end - loop.time())
            # Past the grace: the creates still out are closed as outcome-unknown while the store is open.
            await self.videos.close()
        if self.tracker is not None:
            await self.tracker.close()
        if self.runway is not None:
            await self.runway.aclose()
        if self.store is not None:
            await self.store.close()
        if self.simulator is not None:
            with contextlib.suppress(Exception):
                await self.simulator.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        log.info("videogen stopped")

    def _tracing(self) -> Tracing | None:
        if self.tracer_provider is None:
            return None
        from videogen_server.observability.tracing import (
            Tracing,  # imports OpenTelemetry: only when tracing is on
        )

        return Tracing(self.tracer_provider, __version__)

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait_for_termination()
