"""Telemetry: the metrics of one App and, when tracing is on, its tracer, behind the few calls the rest of
the service makes (the RPC interceptor, and RunwayClient as its UpstreamObserver)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from videogen_server.observability.metrics import Metrics
from videogen_server.providers.runway.transport import UpstreamCall

if TYPE_CHECKING:
    from videogen_server.observability.tracing import Tracing


class Telemetry:
    def __init__(self, metrics: Metrics, tracing: Tracing | None = None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    # -- UpstreamObserver ----------------------------------------------------------------------------

    @contextmanager
    def request(self, endpoint: str, method: str, host: str, key: str = "") -> Iterator[UpstreamCall]:
        call = UpstreamCall()
        if self.tracing is None:
            with self._measure(call, endpoint, method, key):
                yield call
            return
        with self.tracing.upstream(endpoint, method, host) as span:
            if key:
                span.set_attribute("videogen.runway_key", key)
            error: BaseException | None = None
            try:
                with self._measure(call, endpoint, method, key):
                    yield call
            except BaseException as exc:
                error = exc
                raise
            finally:
                self.tracing.finish_upstream(span, call.status, error)

    def retry(self, endpoint: str, key: str = "") -> None:
        self.metrics.upstream_retries.labels(endpoint=endpoint, key=key).inc()

    def circuit(self, open: bool) -> None:
        self.metrics.upstream_circuit_open.set(1 if open else 0)

    @contextmanager
    def _measure(self, call: UpstreamCall, endpoint: str, method: str, key: str) -> Iterator[None]:
        start = time.perf_counter()
        status = "error"
        try:
            yield
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            if call.status is not None:
                status = str(call.status)
            m = self.metrics
            m.upstream_requests.labels(endpoint=endpoint, method=method, status=status, key=key).inc()
            elapsed = time.perf_counter() - start
            m.upstream_seconds.labels(endpoint=endpoint, method=method, key=key).observe(elapsed)
