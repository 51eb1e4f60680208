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
import os
import secrets
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from videogen_server import __version__, errors
from videogen_server.api.limits import StreamLimits
from videogen_server.archive import open_archive
from videogen_server.config import Config, ConfigError, listen_error
from videogen_server.domain.video import DEFAULT_KEY_NAME
from videogen_server.observability import logs
from videogen_server.observability.metrics import Metrics
from videogen_server.observability.metrics_http import MetricsServer
from videogen_server.observability.telemetry import Telemetry
from videogen_server.providers.runway import RunwayProvider
from videogen_server.services.archiver import Archiver
from videogen_server.services.content import ContentRelay
from videogen_server.services.ports import Coordinator, OutputArchive, VideoStore
from videogen_server.services.remix import Remixes
from videogen_server.services.retention import RetentionSweeper
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.upload_keys import UploadKeys
from videogen_server.services.uploads import Uploads
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
    # The output archive (issue 11) and its two workers; all None when VIDEOGEN_ARCHIVE=off.
    archive: OutputArchive | None = None
    archiver: Archiver | None = None
    sweeper: RetentionSweeper | None = None
    uploads: Uploads | None = None  # Upload (issue 12): spools under data_dir/uploads
    remixes: Remixes | None = None  # Remix (issue 12); None only for a Service built by hand in a test

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
            for secret in (*upstream.keys.values(), *config.api_keys.values()):
                logs.register_secret(secret)  # belt and braces: log lines are scrubbed of keys
            metrics = Metrics(__version__)
            telemetry = Telemetry(metrics, _tracing(tracer_provider))
            # The archive first: nobody's video is accepted that could not be kept (a bucket that does not
            # exist or cannot be written is a configuration error, one line).
            archive = await _open_archive(config, started)
            # Downloads get a pool of their own, one connection per allowed StreamContent call: held streams
            # can then never starve API calls, nor wait for a connection themselves. The archiver's copies
            # get their own share on top (one per copy in flight), never out of the callers'.
            copies = config.archive_concurrency if archive is not None else 0
            runway = RunwayProvider.connect(
                upstream.base_url,
                upstream.keys,
                observer=telemetry,
                max_downloads=config.max_streams + copies,
            )
            started.push_async_callback(runway.aclose)
            # Several keys: their organizations are read now (best effort, bounded) and kept fresh.
            await runway.start()
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
                lambda record, deadline: runway.get_task(
                    record.upstream_id, key=record.runway_key, deadline=deadline
                ),
                coordinator=coordinator,
                poll_interval=config.poll_interval,
                freshness=config.freshness,
                heartbeat=config.watch_heartbeat,
            )
            started.push_async_callback(tracker.close)
            archiver = sweeper = None
            if archive is not None:
                archiver = Archiver(
                    timed,
                    runway,
                    archive,
                    coordinator,
                    announce=tracker.announce,
                    retention=config.archive_retention,
                    concurrency=config.archive_concurrency,
                    scan_interval=config.archive_scan_interval,
                    chunk_size=config.chunk_size,
                )
                tracker.on_completed = archiver.completed  # every COMPLETED recorded here is copied at once
                sweeper = RetentionSweeper(
                    timed,
                    archive,
                    coordinator,
                    announce=tracker.announce,
                    interval=config.archive_sweep_interval,
                    leases=archiver.leases,
                )
                # Stopped before the tracker (pushed later: closed first), while the store is open.
                started.push_async_callback(archiver.close)
                started.push_async_callback(sweeper.close)
            await tracker.start()  # the recovery scan: unfinished videos nobody polls, CREATING orphans
            if archiver is not None and sweeper is not None:
                await archiver.start()  # its recovery scan: copies a restart or a dead replica left undone
                await sweeper.start()
            metrics.track(tracker)
            if archiver is not None:
                metrics.track_archive(archiver, sweeper)
            videos = Videos(timed, runway, tracker, max_active_per_caller=config.max_active_per_caller)
            uploads = Uploads(
                runway,
                os.path.join(config.data_dir, "uploads"),
                spool_limit=config.upload_spool_bytes,
                keys=UploadKeys(timed),
            )
            await uploads.remove_stale()  # what a killed process left (a small directory: a quick scan)
            service = cls(
                config=config,
                metrics=metrics,
                telemetry=telemetry,
                runway=runway,
                store=store,
                coordinator=coordinator,
                tracker=tracker,
                videos=videos,
                content=ContentRelay(videos, runway, chunk_size=config.chunk_size, archive=archive),
                limits=StreamLimits.of(
                    max_streams=config.max_streams,
                    max_watchers=config.max_watchers,
                    streams_per_caller=config.streams_per_caller,
                    watchers_per_caller=config.watchers_per_caller,
                ),
                upstream=upstream.description,
                simulator=upstream.simulator or simulator,
                archive=archive,
                archiver=archiver,
                sweeper=sweeper,
                uploads=uploads,
                remixes=Remixes(videos, runway, archive, spool=uploads),
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
        # Copies in flight are cancelled (their puts abort; the outputs stay PENDING for whoever takes over),
        # then their leases released; then the pollers. All while the store is open.
        if self.sweeper is not None:
            await self.sweeper.close()
        if self.archiver is not None:
            await self.archiver.close()
        await self.tracker.close()  # pollers stopped, then leases released: the others take over at once
        await self.coordinator.close()
        await self.runway.aclose()
        if self.archive is not None:
            await self.archive.close()
        await self.store.close()
        if self.simulator is not None:
            await _stop_quietly(self.simulator)
        if self.metrics_server is not None:
            await self.metrics_server.stop()


async def _open_archive(config: Config, started: AsyncExitStack) -> OutputArchive | None:
    """The configured archive, opened (its probe object written, read back and deleted), or None when off."""
    archive = open_archive(config.archive, config.data_dir)
    if archive is None:
        log.info(
            "output archive off (VIDEOGEN_ARCHIVE=off): outputs are served from Runway while it has them"
        )
        return None
    try:
        await archive.open()
    except errors.ArchiveUnavailable as exc:
        raise ConfigError(f"VIDEOGEN_ARCHIVE={archive.description}: {exc.message}") from None
    started.push_async_callback(archive.close)
    log.info("output archive: %s; retention %s", archive.description, _duration(config.archive_retention))
    return archive


def _duration(seconds: float | None) -> str:
    """A retention as VIDEOGEN_ARCHIVE_RETENTION would say it: 30d, 12h, 90s, forever."""
    if seconds is None:
        return "forever"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class _Upstream:
    base_url: str
    keys: dict[str, str]  # name -> secret, in configuration order
    description: str
    simulator: RunwaySimulator | None  # started here: the built-in one


async def _upstream(config: Config, simulator: RunwaySimulator | None, started: AsyncExitStack) -> _Upstream:
    """Runway as configured; without a Runway key, the built-in simulator, started on loopback."""
    if not config.use_simulator:
        url = config.runway_base_url
        keys = config.runway_key_secrets
        names = ", ".join(keys)
        return _Upstream(url, keys, f"Runway at {url} with key{'s' if len(keys) > 1 else ''} {names}", None)
    if simulator is None:
        from videogen_server.simulator import RunwaySimulator  # only here: production never loads it

        # No Runway key: run the built-in simulator on loopback with a key of its own.
        simulator = RunwaySimulator(api_key="key_sim_" + secrets.token_hex(16))
    url = await simulator.start(host="127.0.0.1", port=0)
    started.push_async_callback(_stop_quietly, simulator)
    return _Upstream(
        url, {DEFAULT_KEY_NAME: simulator.api_key}, f"the built-in Runway simulator at {url}", simulator
    )


async def _stop_quietly(simulator: RunwaySimulator) -> None:
    with contextlib.suppress(Exception):
        await simulator.stop()


def _tracing(provider: TracerProvider | None) -> Tracing | None:
    if provider is None:
        return None
    # Imports OpenTelemetry: only when tracing is on.
    from videogen_server.observability.tracing import Tracing

    return Tracing(provider, __version__)
