"""The composition root: a Config becomes the running service (the Runway client or the built-in simulator,
the job store, the task tracker, the use cases, the content relay, the stream limits, metrics and /metrics),
started in order and stopped in order. No gRPC here: api/server.py serves a Service, and its shutdown
fits into `Service.stop` through the small `Transport` protocol.

The built-in Runway simulator (some 1,500 lines, aiohttp) is imported only when the configuration asks for
it; OpenTelemetry only when tracing is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from videogen_server import __version__
from videogen_server.api.limits import StreamLimits
from videogen_server.config import Config, listen_error
from videogen_server.observability import logs
from videogen_server.observability.metrics import Metrics
from videogen_server.observability.metrics_http import MetricsServer
from videogen_server.observability.telemetry import Telemetry
from videogen_server.providers.runway import RunwayProvider
from videogen_server.services.content import ContentRelay
from videogen_server.services.ports import Coordinator, VideoStore
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.videos import Videos
from videogen_server.store import open_coordinator, open_store

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from videogen_server.observability.tracing import Tracing
    from videogen_server.simulator import RunwaySimulator


class Transport(Protocol):
    """What shutdown needs of the server in front of the service (api/server.py's GrpcServer)."""

    async def announce_shutdown(self) -> None:
        """Tell health checkers the server is going away (NOT_SERVING); calls are still accepted."""

    async def stop(self, grace: float) -> None:
        """Refuse new calls; calls in flight get `grace` seconds, then are cancelled."""


@dataclass
class Service:
    """Everything the API serves, started. Build one with `Service.start`."""

    config: Config
    metrics: Metrics
    telemetry: Telemetry
    runway: RunwayProvider
    store: VideoStore  # the store itself; the use cases get it wrapped in the metrics' timing
    coordinator: Coordinator  # leases, poll lock and notices shared with the other replicas
    tracker: TaskTracker
    videos: Videos
    content: ContentRelay
    limits: StreamLimits
    upstream: str  # where Runway calls go, for the start-up log line
    simulator: RunwaySimulator | None = None  # the built-in Runway, when it stands in for the real one
    metrics_server: MetricsServer | None = None  # None: /metrics is off
    metrics_port: int = 0  # the bound /metrics port (config.metrics_listen may say :0)

    @classmethod
    async def start(
        cls,
        config: Config,
        *,
        simulator: RunwaySimulator | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> Service:
        """Build and start every part. A start that fails stops again what it had started.

        `simulator`: the simulator to run when the configuration has no Runway key (tests pass one, to
        configure and inspect it); one is made otherwise. `tracer_provider`: tracing is on when given one
        (main.py builds it from the OTEL_* settings); its owner shuts it down."""
        started = AsyncExitStack()  # what to stop again if a later part fails to start
        try:
            upstream = await _upstream(config, simulator, started)
            for secret in (upstream.api_key, *config.api_keys.values()):
                logs.register_secret(secret)  # belt and braces: log lines are scrubbed of keys
            metrics = Metrics(__version__)
            telemetry = Telemetry(metrics, _tracing(tracer_provider))
            # Downloads get a pool of their own, one connection per allowed StreamContent call: held streams
            # can then never starve API calls, nor wait for a connection themselves.
            runway = RunwayProvider.connect(
                upstream.base_url, upstream.api_key, observer=telemetry, max_downloads=config.max_streams
            )
            started.push_async_callback(runway.aclose)
            store = open_store(config.data_dir, config.store)
            await store.open()
            started.push_async_callback(store.close)
            timed = metrics.timed_store(store)
            # Leases, the poll lock and notices between replicas: Redis with a Redis store, this process
            # alone otherwise. Closed after the tracker (which releases its leases), before the store.
            coordinator = open_coordinator(config.store, lease_ttl=config.lease_ttl)
            await coordinator.open()
            started.push_async_callback(coordinator.close)
            log.info("poller leases held as instance %s", coordinator.instance)
            tracker = TaskTracker(
                timed,
                lambda task_id, deadline: runway.get_task(task_id, deadline=deadline),
                coordinator=coordinator,
                poll_interval=config.poll_interval,
                freshness=config.freshness,
                heartbeat=config.watch_heartbeat,
            )
            started.push_async_callback(tracker.close)
            await tracker.start()  # the recovery scan: unfinished videos nobody polls, CREATING orphans
            metrics.track(tracker)
            videos = Videos(timed, runway, tracker)
            service = cls(
                config=config,
                metrics=metrics,
                telemetry=telemetry,
                runway=runway,
                store=store,
                coordinator=coordinator,
                tracker=tracker,
                videos=videos,
                content=ContentRelay(videos, runway, chunk_size=config.chunk_size),
                limits=StreamLimits.of(
                    max_streams=config.max_streams,
                    max_watchers=config.max_watchers,
                    streams_per_caller=config.streams_per_caller,
                    watchers_per_caller=config.watchers_per_caller,
                ),
                upstream=upstream.description,
                simulator=upstream.simulator or simulator,
            )
            if config.metrics_listen:
                service.metrics_server = MetricsServer(metrics.registry, config.metrics_listen)
                try:
                    service.metrics_port = await service.metrics_server.start()
                except OSError as exc:  # the port is taken: one line naming the variable, not a traceback
                    raise listen_error("VIDEOGEN_METRICS_LISTEN", config.metrics_listen, exc) from None
        except BaseException:
            await started.aclose()
            raise
        return service

    async def stop(self, grace: float, transport: Transport | None = None) -> None:
        """Stop `transport` (health NOT_SERVING, new calls refused, calls in flight get `grace` seconds),
        let the creates in flight record their outcome, then close every part, the store last but for the
        simulator and /metrics."""
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        if transport is not None:
            await transport.announce_shutdown()
        # Within one grace period: the calls in flight, and every paid create in flight, also those whose
        # caller has left (they run on in the background). Their answers must reach the store before it and
        # the Runway client close, or Runway's task is paid for and never recorded.
        creates = asyncio.create_task(self.videos.drain(grace))
        # transport.stop stays awaited by this task, as before: run as a child task of a gather, a call made
        # after health said NOT_SERVING ended CANCELLED instead of being refused UNAVAILABLE
        # (tests/faults/test_shutdown.py).
        try:
            if transport is not None:
                await transport.stop(grace)
        finally:
            await creates
        # Creates started by calls that were still running meanwhile get the rest of the grace period.
        await self.videos.drain(end - loop.time())
        # Past the grace: the creates still out are closed as outcome-unknown while the store is open.
        await self.videos.close()
        await self.tracker.close()  # pollers stopped, then leases released: the others take over at once
        await self.coordinator.close()
        await self.runway.aclose()
        await self.store.close()
        if self.simulator is not None:
            await _stop_quietly(self.simulator)
        if self.metrics_server is not None:
            await self.metrics_server.stop()


@dataclass(frozen=True)
class _Upstream:
    base_url: str
    api_key: str
    description: str
    simulator: RunwaySimulator | None  # started here: the built-in one


async def _upstream(config: Config, simulator: RunwaySimulator | None, started: AsyncExitStack) -> _Upstream:
    """Runway as configured; without a Runway key, the built-in simulator, started on loopback."""
    if not config.use_simulator:
        assert config.runway_api_secret is not None
        url = config.runway_base_url
        return _Upstream(url, config.runway_api_secret, f"Runway at {url}", None)
    if simulator is None:
        from videogen_server.simulator import RunwaySimulator  # only here: production never loads it

        # No Runway key: run the built-in simulator on loopback with a key of its own.
        simulator = RunwaySimulator(api_key="key_sim_" + secrets.token_hex(16))
    url = await simulator.start(host="127.0.0.1", port=0)
    started.push_async_callback(_stop_quietly, simulator)
    return _Upstream(url, simulator.api_key, f"the built-in Runway simulator at {url}", simulator)


async def _stop_quietly(simulator: RunwaySimulator) -> None:
    with contextlib.suppress(Exception):
        await simulator.stop()


def _tracing(provider: TracerProvider | None) -> Tracing | None:
    if provider is None:
        return None
    # Imports OpenTelemetry: only when tracing is on.
    from videogen_server.observability.tracing import Tracing

    return Tracing(provider, __version__)
