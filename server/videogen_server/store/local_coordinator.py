"""The in-process Coordinator (services/ports.py): for the SQLite and memory stores, where this process is
the whole fleet.

Leases and poll locks are entries ``video_id -> (instance, expiry)`` in dicts, with expiry by
`time.monotonic()`: an expired entry is free, exactly as an expired Redis key is gone. Nothing awaits
(every method completes without yielding), so each method is atomic within the event loop.

Alone, a coordinator has no other instances to hear from: `notices()` yields nothing and ends at `close()`,
and `announce` reaches nobody. For tests of the multi-instance logic in one process,
``LocalCoordinator.group(n)`` builds n coordinators that SHARE one state (one "fleet"): a lease taken by one
is held against the others, and notices go to every other open member (an asyncio.Queue each), never to the
sender, as Redis pub/sub would deliver them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Collection
from typing import Final

from videogen_server.services.ports import Notice

__all__ = ["LocalCoordinator"]

DEFAULT_LEASE_TTL_S: Final = 10.0
# Expired entries of videos nobody asks about again are dropped at most this often (a sweep is O(entries)).
_SWEEP_EVERY_S: Final = 30.0


class _Fleet:
    """What the members of one group share: the leases, the poll locks and who is listening."""

    def __init__(self) -> None:
        self.leases: dict[str, tuple[str, float]] = {}  # video_id -> (instance, monotonic expiry)
        self.poll_locks: dict[str, tuple[str, float]] = {}
        self.members: list[LocalCoordinator] = []
        self._next_sweep = time.monotonic() + _SWEEP_EVERY_S

    def holder(self, table: dict[str, tuple[str, float]], video_id: str, now: float) -> str | None:
        entry = table.get(video_id)
        if entry is None:
            return None
        if entry[1] <= now:
            del table[video_id]
            return None
        return entry[0]

    def sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_S
        for table in (self.leases, self.poll_locks):
            for video_id in [v for v, (_, expiry) in table.items() if expiry <= now]:
                del table[video_id]

    def tell_others(self, sender: LocalCoordinator, notice: Notice) -> None:
        for member in self.members:
            if member is not sender:
                member._queue.put_nowait(notice)


class LocalCoordinator:
    """Coordinator for one process (see the module docstring); `group` for several sharing one state."""

    def __init__(self, lease_ttl: float = DEFAULT_LEASE_TTL_S, *, _fleet: _Fleet | None = None) -> None:
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        self._instance = uuid.uuid4().hex
        self._lease_ttl = lease_ttl
        self._fleet = _fleet if _fleet is not None else _Fleet()
        # Notices from other members; None is the end (put by close).
        self._queue: asyncio.Queue[Notice | None] = asyncio.Queue()
        self._opened = False
        self._closed = False

    @classmethod
    def group(cls, n: int, lease_ttl: float = DEFAULT_LEASE_TTL_S) -> list[LocalCoordinator]:
        """n coordinators sharing one state, as n replicas sharing one Redis would (for tests)."""
        fleet = _Fleet()
        return [cls(lease_ttl, _fleet=fleet) for _ in range(n)]

    @property
    def instance(self) -> str:
        return self._instance

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    async def open(self) -> None:
        if self._closed:
            raise RuntimeError("the coordinator is closed")
        if not self._opened:
            self._opened = True
            self._fleet.members.append(self)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self in self._fleet.members:
            self._fleet.members.remove(self)
        self._queue.put_nowait(None)  # ends notices()

    async def acquire(self, video_id: str) -> bool:
        now = self._now()
        holder = self._fleet.holder(self._fleet.leases, video_id, now)
        if holder is not None and holder != self._instance:
            return False
        self._fleet.leases[video_id] = (self._instance, now + self._lease_ttl)
        return True

    async def renew(self, video_ids: Collection[str]) -> set[str]:
        now = self._now()
        kept: set[str] = set()
        for video_id in video_ids:
            if self._fleet.holder(self._fleet.leases, video_id, now) == self._instance:
                self._fleet.leases[video_id] = (self._instance, now + self._lease_ttl)
                kept.add(video_id)
        return kept

    async def release(self, video_ids: Collection[str]) -> None:
        now = self._now()
        for video_id in video_ids:
            if self._fleet.holder(self._fleet.leases, video_id, now) == self._instance:
                del self._fleet.leases[video_id]
                self._fleet.tell_others(self, Notice("released", video_id))

    async def holder(self, video_id: str) -> str | None:
        return self._fleet.holder(self._fleet.leases, video_id, self._now())

    async def lock_poll(self, video_id: str, ttl: float) -> bool:
        now = self._now()
        if self._fleet.holder(self._fleet.poll_locks, video_id, now) is not None:
            return False  # not reentrant, as SET NX: a second read from this instance waits too
        self._fleet.poll_locks[video_id] = (self._instance, now + ttl)
        return True

    async def unlock_poll(self, video_id: str) -> None:
        if self._fleet.holder(self._fleet.poll_locks, video_id, self._now()) == self._instance:
            del self._fleet.poll_locks[video_id]

    async def announce(self, video_id: str) -> None:
        self._check()
        self._fleet.tell_others(self, Notice("changed", video_id))

    async def notices(self) -> AsyncIterator[Notice]:
        while not self._closed or not self._queue.empty():
            notice = await self._queue.get()
            if notice is None:
                return
            yield notice

    def _now(self) -> float:
        self._check()
        now = time.monotonic()
        self._fleet.sweep(now)
        return now

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("the coordinator is closed")
        if not self._opened:
            raise RuntimeError("the coordinator is not open (await open())")
