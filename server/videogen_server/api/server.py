"""The gRPC server: VideoService behind its interceptors, health and reflection, TLS when configured; and
`App`, the service (bootstrap.py) behind that server, which main.py runs as a process and tests start
in-process on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from videogen.v1 import video_service_pb2, video_service_pb2_grpc

from videogen_server import errors
from videogen_server.api.auth import Authenticator
from videogen_server.api.content_wire import ContentWire
from videogen_server.api.error_mapping import ErrorMappingInterceptor
from videogen_server.api.servicer import VideoServicer
from videogen_server.api.telemetry_interceptor import TelemetryInterceptor
from videogen_server.api.tls import server_credentials, tls_mode
from videogen_server.bootstrap import Service
from videogen_server.config import listen_error

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from videogen_server.api.limits import StreamLimits
    from videogen_server.config import Config
    from videogen_server.observability.metrics import Metrics
    from videogen_server.observability.metrics_http import MetricsServer
    from videogen_server.services.ports import VideoProvider, VideoStore
    from videogen_server.services.tracker import TaskTracker
    from videogen_server.services.videos import Videos
    from videogen_server.simulator import RunwaySimulator

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


def server_options(config: Config) -> list[tuple[str, int]]:
    """SERVER_OPTIONS and what the configuration adds: the connection age (VIDEOGEN_MAX_CONNECTION_AGE).
    Its grace (how long calls in flight get after the GOAWAY) is left at grpc's default, unlimited: a
    WatchStatus stream that outlives its connection's age is never cut for it."""
    options = list(SERVER_OPTIONS)
    if config.max_connection_age is not None:
        options.append(("grpc.max_connection_age_ms", max(1, round(config.max_connection_age * 1000))))
    return options


# Health follows the store (StoreHealth): how often it is asked, and how long one answer may take.
STORE_CHECK_INTERVAL_S = 1.0
STORE_CHECK_TIMEOUT_S = 5.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StoreHealth:
    """Health follows the store: NOT_SERVING while `store.check()` fails (a shared store that cannot be
    reached: every call would fail UNAVAILABLE), SERVING again once it answers. Checked every
    `STORE_CHECK_INTERVAL_S` by one task, and at once when a call failed with StoreUnavailable (`check_soon`).

    Both the VideoService and the whole server ("") follow it: VideoService is the only service here, and
    probes and balancers mostly ask "" (grpc_health_probe's and Kubernetes' default), so a replica whose
    every call fails must not say SERVING there. Hence "" is a readiness signal, not a liveness one: a
    restart does not bring Redis back (README, "Redis store").

    `stop` ends the task before shutdown's NOT_SERVING (which the health servicer keeps for good anyway)."""

    def __init__(self, health: health.aio.HealthServicer, store: VideoStore) -> None:
        self._health = health
        self._store = store
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._serving = True

    async def start(self) -> None:
        """Report the store's state now, then follow it."""
        self._serving = await self._probe()
        await self._set(SERVING if self._serving else NOT_SERVING)
        self._task = asyncio.create_task(self._run(), name="videogen-store-health")

    def check_soon(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # asyncio.timeout, never asyncio.wait_for: on Python 3.11, wait_for returns the inner result and drops
    # a cancellation that arrives after the inner call finished but before this task resumed; `stop` then
    # waited for this loop for good, and shutdown with it (tests/unit/test_store_health_stop.py).
    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STORE_CHECK_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            serving = await self._probe()
            if serving != self._serving:
                self._serving = serving
                log.warning(
                    "health: %s (the job store %s)",
                    *(("SERVING", "answers again") if serving else ("NOT_SERVING", "does not answer")),
                )
                await self._set(SERVING if serving else NOT_SERVING)

    async def _probe(self) -> bool:
        try:
            async with asyncio.timeout(STORE_CHECK_TIMEOUT_S):
                await self._store.check()
        except (errors.StoreUnavailable, TimeoutError):
            return False
        except Exception:  # a broken check: say so, and do not claim to serve
            log.exception("health: the store check failed")
            return False
        return True

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        await self._health.set("", status)
        await self._health.set(SERVICE_NAME, status)


class GrpcServer:
    """The grpc.aio server in front of one Service. Shutdown is driven by `Service.stop` (its Transport)."""

    def __init__(self, service: Service) -> None:
        self._config = service.config
        self._health = health.aio.HealthServicer()
        self._store_health = StoreHealth(self._health, service.store)
        self._server = grpc.aio.server(
            # Telemetry first: it wraps the error mapping, so it counts the status callers really get.
            interceptors=[
                TelemetryInterceptor(service.telemetry),
                ErrorMappingInterceptor(
                    Authenticator(service.config.api_keys), on_store_unavailable=self._store_health.check_soon
                ),
                ContentWire(),  # innermost: StreamContent's serializer, kept by the two above
            ],
            options=server_options(service.config),
        )
        video_service_pb2_grpc.add_VideoServiceServicer_to_server(
            VideoServicer(
                service.videos,
                service.tracker,
                service.content,
                service.limits,
                uploads=service.uploads,
                remixes=service.remixes,
            ),
            self._server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )
        self._started = False
        self.port = 0

    async def start(self) -> int:
        """Bind (TLS if configured), serve, and report SERVING. Returns the bound port."""
        cfg = self._config
        credentials = await server_credentials(cfg)
        # Tried first: grpc's own failure is a bare RuntimeError, after a log line of its own on stderr. On
        # a thread: resolving a host name may take seconds, and the service's pollers already run.
        problem = await asyncio.to_thread(unbindable, cfg.listen)
        if problem is not None:
            raise listen_error("VIDEOGEN_LISTEN", cfg.listen, problem)
        try:
            if credentials is None:
                self.port = self._server.add_insecure_port(cfg.listen)
            else:
                self.port = self._server.add_secure_port(cfg.listen, credentials)
        except RuntimeError:  # "Failed to bind to address ...": taken since, or a form tried by grpc only
            raise listen_error("VIDEOGEN_LISTEN", cfg.listen) from None
        if self.port == 0:
            raise listen_error("VIDEOGEN_LISTEN", cfg.listen)
        await self._server.start()
        self._started = True
        await self._store_health.start()  # SERVING, unless the store does not answer
        return self.port

    async def announce_shutdown(self) -> None:
        await self._store_health.stop()
        await self._health.enter_graceful_shutdown()  # every service NOT_SERVING, for good

    async def stop(self, grace: float) -> None:
        await self._store_health.stop()
        if self._started:
            await self._server.stop(grace)


# grpc's address forms other than host:port: left to grpc itself.
_URI = re.compile(r"^(unix|unix-abstract|vsock|ipv4|ipv6|dns):")


def unbindable(listen: str) -> OSError | None:
    """Why grpc could not bind `listen` (host:port), found by binding it as grpc does (SO_REUSEADDR, any of
    the addresses the host names will do; a wildcard host dual-stack or IPv4); None when one binds, or when
    `listen` is not a plain host:port with a fixed port (grpc is then left to say)."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) == 0 or _URI.match(listen):
        return None
    host = host.strip("[]")
    wildcard = host in ("", "0.0.0.0", "::")
    try:
        candidates = (
            [(socket.AF_INET6, ("::", int(port))), (socket.AF_INET, ("0.0.0.0", int(port)))]
            if wildcard
            else [(info[0], info[4]) for info in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)]
        )
    except OSError as exc:  # a name that does not resolve
        return exc
    first: OSError | None = None
    for family, address in candidates:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if wildcard and family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind(address)
                return None
        except OSError as exc:
            first = first or exc
    return first


class App:
    """The service behind its gRPC server: `await start()` -> the port; `await stop(grace)`. Its parts are
    attributes (`videos`, `store`, `metrics`, ...) for tests to look at, once started."""

    def __init__(
        self,
        config: Config,
        simulator: RunwaySimulator | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.config = config
        self._simulator = simulator
        self._tracer_provider = tracer_provider
        self._service: Service | None = None
        self._server: GrpcServer | None = None
        self._stopped = False

    async def start(self) -> int:
        """Start the service, then serve it. A start that fails stops what it had started."""
        self._service = await Service.start(
            self.config, simulator=self._simulator, tracer_provider=self._tracer_provider
        )
        try:
            self._server = GrpcServer(self._service)
            port = await self._server.start()
        except BaseException:
            await self.stop(grace=0)
            raise
        cfg, limits = self.config, self._service.limits
        log.info(
            "videogen listening on %s:%d; upstream: %s; store %s; caller auth %s; TLS %s; "
            "limits: %d streams (%d per caller), %d watchers (%d per caller), "
            "unfinished videos per caller %s",
            cfg.listen.rsplit(":", 1)[0],
            port,
            self._service.upstream,
            cfg.store_description,
            "on" if cfg.api_keys else "off",
            tls_mode(cfg).value,
            limits.streams.limit,
            limits.streams.per_caller,
            limits.watchers.limit,
            limits.watchers.per_caller,
            cfg.max_active_per_caller or "unlimited",
        )
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Health turns NOT_SERVING, new calls are refused, calls in flight get `grace` seconds (default:
        the configured shutdown grace); then the service stops (bootstrap.Service.stop)."""
        if self._stopped:
            return
        self._stopped = True
        if self._service is not None:
            grace = self.config.shutdown_grace if grace is None else grace
            await self._service.stop(grace, self._server)
        log.info("videogen stopped")

    # -- the parts, for tests and tools --------------------------------------------------------------

    @property
    def service(self) -> Service:
        if self._service is None:
            raise RuntimeError("the app is not started")
        return self._service

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else 0

    @property
    def simulator(self) -> RunwaySimulator | None:
        return self._service.simulator if self._service is not None else self._simulator

    @property
    def videos(self) -> Videos:
        return self.service.videos

    @property
    def tracker(self) -> TaskTracker:
        return self.service.tracker

    @property
    def store(self) -> VideoStore:
        return self.service.store

    @property
    def runway(self) -> VideoProvider:
        return self.service.runway

    @property
    def limits(self) -> StreamLimits:
        return self.service.limits

    @property
    def metrics(self) -> Metrics:
        return self.service.metrics

    @property
    def metrics_server(self) -> MetricsServer | None:
        return self.service.metrics_server

    @property
    def metrics_port(self) -> int:
        return self.service.metrics_port
