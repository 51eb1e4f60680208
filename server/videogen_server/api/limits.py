"""Bounded resources: caps on concurrent long-lived streams (StreamContent, WatchStatus), on the whole server
and per caller.

A call past a cap fails at once with ``ResourceExhausted`` (RESOURCE_EXHAUSTED + QuotaFailure): it never
queues, so an overloaded process answers fast instead of dying slowly. A slot is held for the life of the
stream and released however it ends (last message, error, caller cancel, server shutdown).

Each caller may hold only its share of a cap (by default half of it), so that one caller holding streams
open cannot lock every other caller out. The caller is the authenticated caller's name
(api/auth.py ``current_caller``); without caller authentication every call comes from the same
anonymous caller "", whose share the configuration then makes the whole cap (config.py).

Why not grpc's ``maximum_concurrent_rpcs``: it counts every RPC, health checks included, so under load a
liveness probe would be refused and the orchestrator would restart a process that is merely busy. These
caps count only the streams that hold memory, sockets and upstream connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from videogen_server import errors
from videogen_server.config import default_share


class ConcurrencyLimit:
    """A non-blocking counting semaphore with a per-caller share. All use is on one event loop: no lock.

    Per-caller counts live in a dict that holds only callers with a slot in use (an entry is dropped when
    its count returns to zero), so its size is bounded by the cap, however many callers come and go."""

    def __init__(
        self,
        name: str,
        limit: int,
        *,
        subject: str,
        per_caller: int | None = None,
        per_caller_subject: str = "",
    ) -> None:
        if limit < 1:
            raise ValueError(f"{name} limit must be at least 1")
        per_caller = default_share(limit) if per_caller is None else per_caller
        if not 1 <= per_caller <= limit:
            raise ValueError(f"{name} per-caller limit must be between 1 and {limit}")
        self.name = name
        self.limit = limit
        self.subject = subject  # what QuotaFailure names, e.g. the configuration variable
        self.per_caller = per_caller
        self.per_caller_subject = per_caller_subject or f"{subject}_PER_CALLER"
        self._in_use = 0
        self._by_caller: dict[str, int] = {}

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def callers(self) -> int:
        """How many callers hold at least one slot."""
        return len(self._by_caller)

    def held_by(self, caller: str) -> int:
        return self._by_caller.get(caller, 0)

    @contextmanager
    def hold(self, caller: str) -> Iterator[None]:
        # The global cap is checked first: when the server is full, that is what every caller is told
        # (whatever it holds itself, no slot would be free for it).
        if self._in_use >= self.limit:
            raise errors.ResourceExhausted(
                f"too many concurrent {self.name} on this server (limit {self.limit}); retry shortly",
                reason="CONCURRENCY_LIMIT_EXCEEDED",
                retry_after=1.0,
                subject=self.subject,
            )
        held = self._by_caller.get(caller, 0)
        if held >= self.per_caller:
            raise errors.ResourceExhausted(
                f"too many concurrent {self.name} for this caller (limit {self.per_caller} per caller); "
                "retry when one of yours has ended",
                reason="CONCURRENCY_LIMIT_EXCEEDED",
                retry_after=1.0,
                subject=self.per_caller_subject,
            )
        self._in_use += 1
        self._by_caller[caller] = held + 1
        try:
            yield
        finally:
            self._in_use -= 1
            left = self._by_caller[caller] - 1
            if left:
                self._by_caller[caller] = left
            else:
                del self._by_caller[caller]


@dataclass(frozen=True)
class StreamLimits:
    streams: ConcurrencyLimit  # StreamContent calls
    watchers: ConcurrencyLimit  # WatchStatus streams

    @classmethod
    def of(
        cls,
        max_streams: int,
        max_watchers: int,
        *,
        streams_per_caller: int | None = None,
        watchers_per_caller: int | None = None,
    ) -> StreamLimits:
        """Per-caller shares default to half of each cap (default_share)."""
        return cls(
            streams=ConcurrencyLimit(
                "StreamContent calls",
                max_streams,
                subject="VIDEOGEN_MAX_STREAMS",
                per_caller=streams_per_caller,
                per_caller_subject="VIDEOGEN_MAX_STREAMS_PER_CALLER",
            ),
            watchers=ConcurrencyLimit(
                "WatchStatus streams",
                max_watchers,
                subject="VIDEOGEN_MAX_WATCHERS",
                per_caller=watchers_per_caller,
                per_caller_subject="VIDEOGEN_MAX_WATCHERS_PER_CALLER",
            ),
        )
