"""Backoff policy for Runway calls (design §3; runway-api.md §4: exponential backoff, up to 50% jitter)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """max_attempts counts every attempt (4 = one try plus three retries).

    Delay before retry n (0-based): min(base_delay * 2**n, max_delay) * (1 + U(0, jitter)).
    A Retry-After up to max_delay is honoured as is; a longer one is not waited for (the caller gets
    the error with retry_after instead: e.g. Runway's daily cap answers 429 for hours)."""

    max_attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 4.0
    jitter: float = 0.5
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def delay(self, retry_index: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry ``retry_index``; None: do not retry (Retry-After beyond the cap)."""
        if retry_after is not None:
            if retry_after > self.max_delay:
                return None
            return max(0.0, retry_after)
        base = min(self.base_delay * (2**retry_index), self.max_delay)
        return float(base * (1.0 + self.jitter * self.random()))
