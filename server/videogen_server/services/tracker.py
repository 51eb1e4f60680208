"""Keeps video records fresh from Runway: one upstream poller per task, shared by all its watchers.

A `_Feed` per watched video holds the latest record and a version number. Its poller asks Runway every
`poll_interval` seconds (with jitter, backing off on errors) while at least one watcher is attached and the
video is not terminal; every change is saved to the store and broadcast to all watchers at once. `Get` uses
`refresh`, which reuses a poll fresher than `freshness` seconds and coalesces concurrent polls of one task.

A poll is owned by none of the callers that share it: it runs in a task of its own, under the service's own
timeout (`poll_timeout`), in a logging context of its own. Each waiter (a Get, a Cancel, the poller) applies
its own deadline to its wait and may leave, by deadline or cancellation, without touching the poll; only
when the last waiter leaves before Runway answered is the request abandoned (nobody wants the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from videogen_server import errors
from videogen_server.domain.task import UpstreamTask
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.observability import logs
from videogen_server.services.ports import VideoStore

log = logging.getLogger(__name__)

GetTask = Callable[[str, float | None], Awaitable[UpstreamTask]]

_MAX_BACKOFF = 60.0


class _Poll:
    """One upstream read of a task in flight, shared by everyone who wants its answer."""

    __slots__ = ("fetching", "task", "waiters")

    def __init__(self) -> None:
        self.task: asyncio.Task[VideoRecord]  # set right after construction (the task needs this object)
        self.waiters = 0
        self.fetching = True  # still waiting for Runway (after that the answer is recorded, waiters or not)

    def failed_unheard(self, task: asyncio.Task[VideoRecord]) -> None:
        """A poll that failed after its last waiter left has nobody to tell: log it once (which also marks
        the exception retrieved, instead of asyncio's "Task exception was never retrieved")."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.waiters <= 0:
            log.warning("%s failed with nobody waiting for it: %s", task.get_name(), exc)


class _Feed:
    __slots__ = ("changed", "last_poll", "poller", "polling", "record", "version", "watchers")

    def __init__(self, record: VideoRecord) -> None:
        self.record = record
        self.version = 0
        self.changed = asyncio.Event()
        self.watchers = 0
        self.poller: asyncio.Task[None] | None = None
        self.polling: _Poll | None = None  # the poll in flight, shared
        self.last_poll = float("-inf")  # monotonic time of the last successful poll

    def publish(self, record: VideoRecord) -> None:
        self.record = record
        self.version += 1
        # Wake every waiter at once, then start a fresh event for the next change.
        self.changed.set()
        self.changed = asyncio.Event()


class TaskTracker:
    def __init__(
        self,
        store: VideoStore,
        get_task: GetTask,
        *,
        poll_interval: float,
        freshness: float = 1.0,
        heartbeat: float = 30.0,
        poll_timeout: float = 30.0,
    ) -> None:
        self._store = store
        self._get_task = get_task
        self._poll_interval = poll_interval
        self._freshness = freshness
        self._heartbeat = heartbeat
        self._poll_timeout = poll_timeout  # the service's own bound on one poll, whoever waits for it
        self._feeds: dict[str, _Feed] = {}
        self._closed = False
        self.upstream_polls = 0  # how many times Runway was asked (for tests and metrics)

    # -- reads -------------------------------------------------------------------------------------------

    async def refresh(
        self, record: VideoRecord, *, deadline: float | None = None, max_age: float | None = None
    ) -> VideoRecord:
        """The record, brought up to date from Runway unless it is terminal or a poll younger than `max_age`
        (default: the freshness window) suffices."""
        if record.status.terminal or record.status is VideoStatus.CREATING or not record.upstream_id:
            return record
        feed = self._feeds.get(record.id)
        max_age = self._freshness if max_age is None else max_age
        if feed is not None and time.monotonic() - feed.last_poll < max_age:
            return feed.record
        # The poll logs in a context of its own: this caller's own lines name the task too.
        logs.bind_task(record.upstream_id)
        return await self._poll(record, deadline)

    async def watch(self, record: VideoRecord) -> AsyncIterator[VideoRecord]:
        """The current state at once, then every change; ends after a terminal state. Quiet streams get the
        current state again every `heartbeat` seconds."""
        feed = self._attach(record)
        try:
            version = feed.version
            current = feed.record
            yield current
            while not current.status.terminal:
                waiter = feed.changed
                if feed.version == version:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for wraps the wait in a new Task, which a
                    # change fanned out to thousands of watchers pays once per watcher.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._heartbeat):
                            await waiter.wait()
                version = feed.version
                current = feed.record
                yield current
        finally:
            self._detach(feed)

    def publish(self, record: VideoRecord) -> None:
        """Tell watchers about a change made here (e.g. our own Cancel)."""
        feed = self._feeds.get(record.id)
        if feed is not None and record != feed.record:
            feed.publish(record)
            self._ensure_poller(feed)

    @property
    def active_pollers(self) -> int:
        return sum(1 for f in self._feeds.values() if f.poller is not None and not f.poller.done())

    @property
    def open_watchers(self) -> int:
        return sum(f.watchers for f in self._feeds.values())

    async def close(self) -> None:
        self._closed = True
        tasks: list[asyncio.Task[Any]] = []
        for feed in self._feeds.values():
            if feed.poller is not None:
                tasks.append(feed.poller)
            if feed.polling is not None:
                tasks.append(feed.polling.task)
        for task in tasks:
            task.cancel()
        # Outcomes were handled (or are moot) by now: only wait for the tasks to end.
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------------------

    def _attach(self, record: VideoRecord) -> _Feed:
        feed = self._feeds.get(record.id)
        if feed is None:
            feed = _Feed(record)
            self._feeds[record.id] = feed
        elif _newer(record, feed.record):
            feed.publish(record)
        feed.watchers += 1
        self._ensure_poller(feed)
        return feed

    def _ensure_poller(self, feed: _Feed) -> None:
        """A watched, unfinished task that Runway knows has exactly one poller."""
        record = feed.record
        if (
            feed.watchers > 0
            and feed.poller is None
            and not record.status.terminal
            and record.upstream_id
            and not self._closed
        ):
            # The poller outlives the RPC that started it: it runs in a logging context of its own.
            poller = asyncio.create_task(
                self._run_poller(feed), name=f"poller-{record.id}", context=_own_context(record)
            )
            poller.add_done_callback(lambda task: self._poller_done(feed, task))
            feed.poller = poller

    def _detach(self, feed: _Feed) -> None:
        feed.watchers -= 1
        if feed.watchers <= 0:
            # The last watcher left: its poller is not needed any more.
            if feed.poller is not None:
                poller, feed.poller = feed.poller, None
                poller.cancel()
            if feed.polling is None:
                self._feeds.pop(feed.record.id, None)

    async def _run_poller(self, feed: _Feed) -> None:
        backoff = self._poll_interval
        while not feed.record.status.terminal:
            await asyncio.sleep(_jitter(backoff))
            try:
                await self._poll(feed.record, None)
                backoff = self._poll_interval
            except errors.UpstreamUnavailable as exc:
                backoff = min(max(backoff * 2, exc.retry_after or 0.0), _MAX_BACKOFF)
                log.warning("poll of video %s failed (%s); next in ~%.1fs", feed.record.id, exc, backoff)
            except errors.VideogenError as exc:
                backoff = min(backoff * 2, _MAX_BACKOFF)
                log.warning("poll of video %s failed (%s); next in ~%.1fs", feed.record.id, exc, backoff)
            except Exception:
                # A bug or a failure nobody foresaw: the watchers still need their poller, so it lives on.
                backoff = min(backoff * 2, _MAX_BACKOFF)
                log.exception("poll of video %s failed unexpectedly; next in ~%.1fs", feed.record.id, backoff)

    def _poller_done(self, feed: _Feed, task: asyncio.Task[None]) -> None:
        """A poller ended. Detached (its last watcher left) or finished (terminal): nothing to do. Ended any
        other way while watched: restarted, so that its watchers never wait on a poller that is gone."""
        if feed.poller is not task:
            return
        feed.poller = None
        if self._closed:
            return
        if task.cancelled():
            log.error("poller of video %s was cancelled while watched; restarting it", feed.record.id)
        elif (exc := task.exception()) is not None:
            log.error("poller of video %s died; restarting it", feed.record.id, exc_info=exc)
        if self._feeds.get(feed.record.id) is feed:
            self._ensure_poller(feed)  # starts with a sleep of one interval: no busy loop

    async def _poll(self, record: VideoRecord, deadline: float | None) -> VideoRecord:
        """Runway's current view of the task: joins the poll in flight or starts one, then waits for it
        until `deadline` (this caller's only; the poll itself runs on)."""
        if deadline is not None and time.monotonic() >= deadline:
            # Out of time already: starting a poll for nobody would cost an upstream call for nothing.
            raise errors.DeadlineExceeded("deadline exceeded before reading the task from Runway")
        feed = self._feeds.get(record.id)
        if feed is None:
            feed = _Feed(record)
            self._feeds[record.id] = feed
        poll = feed.polling
        if poll is None:
            current = feed.record if _newer(feed.record, record) else record
            poll = feed.polling = _Poll()
            # A task of its own, in a context of its own: no caller's deadline, cancellation or request id.
            poll.task = asyncio.create_task(
                self._fetch(feed, poll, current),
                name=f"poll of video {current.id}",
                context=_own_context(current),
            )
            poll.task.add_done_callback(poll.failed_unheard)
        return await self._wait(poll, deadline)

    async def _wait(self, poll: _Poll, deadline: float | None) -> VideoRecord:
        poll.waiters += 1
        try:
            if deadline is None:
                return await asyncio.shield(poll.task)
            timeout = asyncio.timeout(deadline - time.monotonic())
            try:
                async with timeout:
                    return await asyncio.shield(poll.task)
            except TimeoutError:
                if not timeout.expired():
                    raise  # the poll's own failure, not this caller's deadline
                raise errors.DeadlineExceeded("deadline exceeded waiting for Runway's answer") from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if poll.task.cancelled() and (current is None or not current.cancelling()):
                # The poll was abandoned under us (the tracker is closing), not this caller cancelled.
                raise errors.UpstreamUnavailable("the read of the task from Runway was abandoned") from None
            raise
        finally:
            poll.waiters -= 1
            if poll.waiters <= 0 and poll.fetching and not poll.task.done():
                # Everyone left before Runway answered: nobody wants the answer, so don't keep a request
                # to Runway open for it. (While anyone still waits, the poll runs on whoever left.)
                poll.task.cancel()

    async def _fetch(self, feed: _Feed, poll: _Poll, current: VideoRecord) -> VideoRecord:
        """The shared poll itself: ask Runway, record and broadcast the change. Runs in its own task."""
        try:
            self.upstream_polls += 1
            try:
                task = await self._get_task(current.upstream_id, time.monotonic() + self._poll_timeout)
                updated = current.with_task(task)
            except errors.UpstreamNotFound:
                updated = current.gone()
            except errors.DeadlineExceeded as exc:
                # The service's own timeout, never a caller's: to the waiters, Runway is unavailable.
                raise errors.UpstreamUnavailable(
                    f"Runway did not answer within {self._poll_timeout:g}s ({exc.message})"
                ) from exc
            poll.fetching = False  # answered: it is recorded now, whoever still waits
            if updated != current:
                updated = await self._store.save(updated)
            feed.last_poll = time.monotonic()
            if updated != feed.record:
                feed.publish(updated)
            return updated
        finally:
            if feed.polling is poll:
                feed.polling = None
            if feed.watchers <= 0:
                # Nobody watches: keep the answer for the freshness window, so that Gets arriving right
                # after this poll reuse it instead of each asking Runway again, then forget the feed.
                asyncio.get_running_loop().call_later(self._freshness, self._forget, feed)

    def _forget(self, feed: _Feed) -> None:
        """Drops a feed nobody watches or polls any more (called once its freshness window has passed)."""
        key = feed.record.id
        if self._feeds.get(key) is feed and feed.watchers <= 0 and feed.polling is None:
            del self._feeds[key]


def _own_context(record: VideoRecord) -> contextvars.Context:
    """A logging context naming only the video and its task: work shared by callers (a poller, a poll)
    must not log under the request id and trace of whichever RPC happened to start it."""
    context = contextvars.Context()
    context.run(logs.bind_video, record.id)
    context.run(logs.bind_task, record.upstream_id)
    return context


def _newer(a: VideoRecord, b: VideoRecord) -> bool:
    if b.status.terminal:
        return False
    return a.status.terminal or a.update_time > b.update_time


def _jitter(interval: float) -> float:
    return interval * random.uniform(0.8, 1.2)
