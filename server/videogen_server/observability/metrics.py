"""Prometheus metric families (prometheus_client), one registry per App so that several servers in one
process (tests) never share or collide.

RPC families follow go-grpc-prometheus, so existing dashboards and alerts work unchanged:
`grpc_server_started_total`, `grpc_server_handled_total{grpc_code}`, `grpc_server_handling_seconds`, all with
`grpc_type`, `grpc_service` and `grpc_method`. The videogen_* families cover streams, watchers and pollers,
the upstream (Runway) calls and the job store. Label values are bounded sets (methods, codes, route
templates, HTTP statuses, the configured Runway keys' names): never an id, a URL or a secret. The upstream
families carry `key`, the name of the Runway key a request was made with ("" for output downloads, which
go to signed CDN URLs without a key).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from videogen_server.domain.listing import SCAN_BUDGET, ListCursor, ListPage, ListQuery
from videogen_server.domain.video import VideoRecord
from videogen_server.services.ports import VideoStore

if TYPE_CHECKING:
    from videogen_server.services.archiver import Archiver
    from videogen_server.services.retention import RetentionSweeper
    from videogen_server.services.tracker import TaskTracker

# RPC latency: unary calls take milliseconds to seconds; streams (WatchStatus, StreamContent) minutes.
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def split_method(full_method: str) -> tuple[str, str]:
    """'/videogen.v1.VideoService/Generate' -> ('videogen.v1.VideoService', 'Generate')."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


class Metrics:
    def __init__(self, version: str = "") -> None:
        # No `*_created` series: they double what a scrape carries and no dashboard of ours reads them.
        # (A process-wide switch of prometheus_client; this process serves only our metrics.)
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rpc_started = Counter(
            "grpc_server_started", "RPCs started on the server.", RPC_LABELS, registry=r
        )
        self.rpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            (*RPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status (whole stream for streaming RPCs).",
            RPC_LABELS,
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.stream_messages = Counter(
            "videogen_stream_messages_sent",
            "Messages sent on server streams (WatchStatus updates, StreamContent chunks).",
            ("grpc_method",),
            registry=r,
        )
        self.content_bytes = Counter(
            "videogen_content_bytes_sent", "Video bytes sent to callers by StreamContent.", registry=r
        )
        self.open_watchers = Gauge("videogen_open_watchers", "WatchStatus streams open now.", registry=r)
        self.active_pollers = Gauge(
            "videogen_active_pollers",
            "Upstream pollers running now (one per unfinished video whose lease this replica holds).",
            registry=r,
        )
        self.leases_held = Gauge(
            "videogen_leases_held",
            "Poller leases held now: the unfinished videos this replica polls, and its creates in flight.",
            registry=r,
        )
        self.upstream_requests = Counter(
            "videogen_upstream_requests",
            "HTTP requests to Runway by route template, method, status ('error': no response) and key name.",
            ("endpoint", "method", "status", "key"),
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "videogen_upstream_request_seconds",
            "Time to Runway's response headers, by route template, method and key name.",
            ("endpoint", "method", "key"),
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.upstream_retries = Counter(
            "videogen_upstream_retries",
            "Upstream attempts retried after a retryable failure, by route template and key name.",
            ("endpoint", "key"),
            registry=r,
        )
        self.upstream_circuit_open = Gauge(
            "videogen_upstream_circuit_open",
            "1 while the Runway API circuit breaker is open (Runway unreachable: calls fail fast), else 0.",
            registry=r,
        )
        self.store_seconds = Histogram(
            "videogen_store_operation_seconds",
            "Job store operation latency, by operation.",
            ("op",),
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge(
            "videogen_build_info", "Always 1; the version label.", ("version",), registry=r
        )
        self.build_info.labels(version=version or "unknown").set(1)

    def track(self, tracker: TaskTracker) -> None:
        """Read the watcher and poller gauges from the tracker at each scrape (no bookkeeping to drift)."""
        self.open_watchers.set_function(lambda: tracker.open_watchers)
        self.active_pollers.set_function(lambda: tracker.active_pollers)
        self.leases_held.set_function(lambda: tracker.leases_held)

    def track_archive(self, archiver: Archiver, sweeper: RetentionSweeper | None) -> None:
        """The archive's families, read from the archiver and the sweeper at each scrape (like `track`):
        copies in flight, and outputs archived, lost and expired by this instance since it started."""
        self.registry.register(_ArchiveCollector(archiver, sweeper))

    def timed_store(self, store: VideoStore) -> VideoStore:
        return TimedStore(store, self.store_seconds.labels)


class _ArchiveCollector(Collector):
    def __init__(self, archiver: Archiver, sweeper: RetentionSweeper | None) -> None:
        self._archiver = archiver
        self._sweeper = sweeper

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "videogen_archive_copies_in_flight",
            "Videos whose outputs this instance is copying into the archive now (at most "
            "VIDEOGEN_ARCHIVE_CONCURRENCY).",
            value=self._archiver.in_flight,
        )
        outputs = CounterMetricFamily(
            "videogen_archive_outputs",
            "Outputs this instance recorded, by result: archived (a verified copy), lost (Runway stopped "
            "serving it before a copy was made), expired (deleted when its retention ended).",
            labels=("result",),
        )
        outputs.add_metric(("archived",), self._archiver.archived)
        outputs.add_metric(("lost",), self._archiver.lost)
        outputs.add_metric(("expired",), self._sweeper.expired if self._sweeper is not None else 0)
        yield outputs


class TimedStore:
    """A VideoStore that times each operation of the store it wraps and otherwise changes nothing."""

    def __init__(self, inner: VideoStore, histogram: Callable[..., Histogram]) -> None:
        self._inner = inner
        self._get = histogram(op="get")
        self._claim = histogram(op="claim")
        self._save = histogram(op="save")
        self._delete = histogram(op="delete")
        self._list = histogram(op="list_unfinished")
        self._list_unarchived = histogram(op="list_unarchived")
        self._list_expired = histogram(op="list_expired")
        self._list_page = histogram(op="list_page")
        self._save_upload = histogram(op="save_upload")
        self._upload_key = histogram(op="upload_key")

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        await self._inner.close()

    async def check(self) -> None:  # not timed: health's probe, not a store operation
        await self._inner.check()

    async def get(self, video_id: str, *, owner: str | None = None) -> VideoRecord | None:
        start = time.perf_counter()
        try:
            return await self._inner.get(video_id, owner=owner)
        finally:
            self._get.observe(time.perf_counter() - start)

    async def claim(self, record: VideoRecord, *, max_active: int | None = None) -> tuple[VideoRecord, bool]:
        start = time.perf_counter()
        try:
            if max_active is None:
                return await self._inner.claim(record)
            return await self._inner.claim(record, max_active=max_active)
        finally:
            self._claim.observe(time.perf_counter() - start)

    async def save(self, record: VideoRecord) -> VideoRecord:
        start = time.perf_counter()
        try:
            return await self._inner.save(record)
        finally:
            self._save.observe(time.perf_counter() - start)

    async def delete(self, video_id: str) -> None:
        start = time.perf_counter()
        try:
            await self._inner.delete(video_id)
        finally:
            self._delete.observe(time.perf_counter() - start)

    async def list_unfinished(self) -> list[VideoRecord]:
        start = time.perf_counter()
        try:
            return await self._inner.list_unfinished()
        finally:
            self._list.observe(time.perf_counter() - start)

    async def list_unarchived(self, limit: int = 100) -> list[VideoRecord]:
        start = time.perf_counter()
        try:
            return await self._inner.list_unarchived(limit)
        finally:
            self._list_unarchived.observe(time.perf_counter() - start)

    async def list_expired(self, now: datetime, limit: int = 100) -> list[VideoRecord]:
        start = time.perf_counter()
        try:
            return await self._inner.list_expired(now, limit)
        finally:
            self._list_expired.observe(time.perf_counter() - start)

    async def list_page(
        self,
        owner: str,
        query: ListQuery,
        *,
        after: ListCursor | None,
        limit: int,
        scan_limit: int = SCAN_BUDGET,
    ) -> ListPage:
        start = time.perf_counter()
        try:
            return await self._inner.list_page(owner, query, after=after, limit=limit, scan_limit=scan_limit)
        finally:
            self._list_page.observe(time.perf_counter() - start)

    async def secret(self, name: str) -> bytes:  # not timed: read once per process
        return await self._inner.secret(name)

    async def save_upload(self, uri: str, key: str, expire_time: datetime) -> None:
        start = time.perf_counter()
        try:
            await self._inner.save_upload(uri, key, expire_time)
        finally:
            self._save_upload.observe(time.perf_counter() - start)

    async def upload_key(self, uri: str) -> str | None:
        start = time.perf_counter()
        try:
            return await self._inner.upload_key(uri)
        finally:
            self._upload_key.observe(time.perf_counter() - start)
