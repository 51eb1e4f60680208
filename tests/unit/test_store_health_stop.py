"""Stopping health's store check (api/server.py StoreHealth) always ends its task, whenever the stop comes.

The hang this guards against (a fault-suite teardown timing out after 120 s with the event loop idle): on
Python 3.11, `asyncio.wait_for` returns the inner result, swallowing the cancellation, when the cancel
arrives after the inner call has finished but before the waiting task has resumed. StoreHealth's loop
then went on checking every second, and `StoreHealth.stop` (`task.cancel()` then `gather(task)`) waited
for it for good, with the gRPC server, the store and Runway's client never closed. The store below makes
the stop arrive in exactly that instant: as its check returns."""

from __future__ import annotations

import asyncio
import contextlib

from grpc_health.v1 import health
from videogen_server.api.server import StoreHealth
from videogen_server.store import MemoryVideoStore

# Generous: the stop takes microseconds; the defect made it take forever.
STOP_BOUND_S = 30.0


class _StopsAsItsCheckReturns(MemoryVideoStore):
    """A real in-memory store whose check, once armed, starts `StoreHealth.stop` just before returning."""

    def __init__(self) -> None:
        super().__init__()
        self.health: StoreHealth | None = None
        self.stopping: asyncio.Task[None] | None = None
        self.stop_started = asyncio.Event()

    async def check(self) -> None:
        await super().check()
        if self.health is not None and self.stopping is None:
            self.stopping = asyncio.create_task(self.health.stop(), name="health-stop")
            self.stop_started.set()


async def test_a_stop_that_arrives_as_a_check_returns_ends_the_health_task() -> None:
    store = _StopsAsItsCheckReturns()
    await store.open()
    health_check = StoreHealth(health.aio.HealthServicer(), store)
    await health_check.start()
    task = health_check._task
    assert task is not None
    try:
        store.health = health_check
        health_check.check_soon()  # the next check now, not in a second
        await store.stop_started.wait()
        assert store.stopping is not None
        done, _ = await asyncio.wait({store.stopping}, timeout=STOP_BOUND_S)
        assert done, (
            f"StoreHealth.stop did not end within {STOP_BOUND_S:g} s: the health task swallowed its "
            f"cancellation and runs on ({task!r})"
        )
        assert task.cancelled()
    finally:
        task.cancel()  # a second cancel ends a task that swallowed the first; no-op otherwise
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if store.stopping is not None:
            await asyncio.gather(store.stopping, return_exceptions=True)
        await store.close()
