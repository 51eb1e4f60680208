"""One upstream read of a task in flight, shared by everyone who wants its answer (services/tracker.py
starts them: a Get, a Cancel and the poller of one video join the same one).

A poll is owned by none of the callers that share it: it runs in a task of its own, under the service's own
timeout, in a logging context of its own (the tracker decides both). Each waiter applies its own deadline to
its wait and may leave, by deadline or cancellation, without touching the poll; only when the last waiter
leaves before Runway answered is the request abandoned (nobody wants the answer). Once Runway answered, the
poll runs to its end whoever still waits: the answer is recorded either way.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from videogen_server import errors
from videogen_server.domain.video import VideoRecord

# The tracker's logger: these lines are about its polls, and read (and filtered) as the tracker's, as they
# were before this module was split out of it.
log = logging.getLogger("videogen_server.services.tracker")


class SharedPoll:
    __slots__ = ("fetching", "task", "waiters")

    def __init__(self) -> None:
        self.task: asyncio.Task[VideoRecord]  # set by `start` (the task's coroutine needs this object)
        self.waiters = 0
        # Still waiting for Runway; the poll's coroutine clears it once answered (from then on the answer is
        # recorded, waiters or not).
        self.fetching = True

    @classmethod
    def start(
        cls,
        fetch: Callable[[SharedPoll], Coroutine[Any, Any, VideoRecord]],
        *,
        name: str,
        context: contextvars.Context,
    ) -> SharedPoll:
        """Run `fetch(poll)` in a task of its own, in `context`: no caller's deadline, cancellation or
        request id reaches it."""
        poll = cls()
        poll.task = asyncio.create_task(fetch(poll), name=name, context=context)
        poll.task.add_done_callback(poll._failed_unheard)
        return poll

    async def wait(self, deadline: float | None) -> VideoRecord:
        """The poll's answer for one caller, until `deadline` (this caller's only; the poll runs on)."""
        self.waiters += 1
        try:
            if deadline is None:
                return await asyncio.shield(self.task)
            timeout = asyncio.timeout(deadline - time.monotonic())
            try:
                async with timeout:
                    return await asyncio.shield(self.task)
            except TimeoutError:
                if not timeout.expired():
                    raise  # the poll's own failure, not this caller's deadline
                raise errors.DeadlineExceeded("deadline exceeded waiting for Runway's answer") from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.task.cancelled() and (current is None or not current.cancelling()):
                # The poll was abandoned under us (the tracker is closing), not this caller cancelled.
                raise errors.UpstreamUnavailable("the read of the task from Runway was abandoned") from None
            raise
        finally:
            self.waiters -= 1
            if self.waiters <= 0 and self.fetching and not self.task.done():
                # Everyone left before Runway answered: nobody wants the answer, so don't keep a request
                # to Runway open for it. (While anyone still waits, the poll runs on whoever left.)
                self.task.cancel()

    def _failed_unheard(self, task: asyncio.Task[VideoRecord]) -> None:
        """A poll that failed after its last waiter left has nobody to tell: log it once (which also marks
        the exception retrieved, instead of asyncio's "Task exception was never retrieved")."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.waiters <= 0:
            log.warning("%s failed with nobody waiting for it: %s", task.get_name(), exc)
