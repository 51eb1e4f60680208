"""Bounded resources: caps on concurrent long-lived streams (StreamContent, WatchStatus).

A call past a cap fails at once with ``ResourceExhausted`` (RESOURCE_EXHAUSTED + QuotaFailure): it never
queues, so an overloaded process answers fast instead of dying slowly. A slot is held for the life of the
stream and released however it ends (last message, error, caller cancel, server shutdown).

Why not grpc's ``maximum_concurrent_rpcs``: it counts every RPC, health checks included, so under load a
liveness probe would be refused and the orchestrator would restart a process that is merely busy. These
caps count only the streams that hold memory, sockets and upstream connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import errors


class ConcurrencyLimit:
    """A non-blocking counting semaphore. All use is on one event loop: no lock needed."""

    def __init__(self, name: str, limit: int, *, subject: str) -> None:
        if limit < 1:
            raise ValueError(f"{name} limit must be at least 1")
        self.name = name
        self.limit = limit
        self.subject = subject  # what QuotaFailure names, e.g. the configuration variable
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self._in_use >= self.limit:
            raise errors.ResourceExhausted(
                f"too many concurrent {self.name} on this server (limit {self.limit}); retry shortly",
                reason="CONCURRENCY_LIMIT_EXCEEDED",
                retry_after=1.0,
                subject=self.subject,
            )
        self._in_use += 1
        try:
            yield
        finally:
            self._in_use -= 1


@dataclass(frozen=True)
class StreamLimits:
    streams: ConcurrencyLimit  # StreamContent calls
    watchers: ConcurrencyLimit  # WatchStatus streams

    @classmethod
    def of(cls, max_streams: int, max_watchers: int) -> StreamLimits:
        return cls(
            streams=ConcurrencyLimit("StreamContent calls", max_streams, subject="VIDEOGEN_MAX_STREAMS"),
            watchers=ConcurrencyLimit("WatchStatus streams", max_watchers, subject="VIDEOGEN_MAX_WATCHERS"),
        )
