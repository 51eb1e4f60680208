"""Keeps video records fresh from Runway: one upstream poller per task, shared by all its watchers.

A `_Feed` per watched video holds the latest record and a version number. Its poller asks Runway every
`poll_interval` seconds (with jitter, backing off on errors) while at least one watcher is attached and the
video is not terminal; every change is saved to the store and broadcast to all watchers at once. `Get` uses
`refresh`, which reuses a poll fresher than `freshness` seconds and coalesces concurrent polls of one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from . import errors, logs
from .domain import UpstreamTask, VideoRecord, VideoStatus
from .records import apply_task, mark_gone
from .store.base import VideoStore

log = logging.getLogger(__name__)

GetTask = Callable[[str, float | None], Awaitable[UpstreamTask]]

_MAX_BACKOFF = 60.0


class _Feed:
    __slots__ = ("changed", "last_poll", "poller", "polling", "record", "version", "watchers")

    def __init__(self, record: VideoRecord) -> None:
        self.record = record
        self.version = 0
        self.changed = asyncio.Event()
        self.watchers = 0
        self.poller: asyncio.Task[None] | None = None
        self.polling: asyncio.Future[VideoRecord] | None = None  # the poll in flight, shared
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
    ) -> None:
        self._store = store
        self._get_task = get_task
        self._poll_interval = poll_interval
        self._freshness = freshness
        self._heartbeat = heartbeat
        self._feeds: dict[str, _Feed] = {}
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
        pollers = [f.poller for f in self._feeds.values() if f.poller is not None]
        for task in pollers:
            task.cancel()
        for task in pollers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
        if feed.watchers > 0 and feed.poller is None and not record.status.terminal and record.upstream_id:
            # The poller outlives the RPC that started it: give it a logging context of its own (its video
            # and task) instead of inheriting that RPC's request id and trace.
            context = contextvars.Context()
            context.run(logs.bind_video, record.id)
            context.run(logs.bind_task, record.upstream_id)
            feed.poller = asyncio.create_task(
                self._run_poller(feed), name=f"poller-{record.id}", context=context
            )

    def _detach(self, feed: _Feed) -> None:
        feed.watchers -= 1
        if feed.watchers <= 0:
            # The last watcher left: its poller is not needed any more.
            if feed.poller is not None:
                feed.poller.cancel()
                feed.poller = None
            if feed.polling is None:
                self._feeds.pop(feed.record.id, None)

    async def _run_poller(self, feed: _Feed) -> None:
        backoff = self._poll_interval
        try:
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
        finally:
            if feed.poller is asyncio.current_task():
                feed.poller = None

    async def _poll(self, record: VideoRecord, deadline: float | None) -> VideoRecord:
        feed = self._feeds.get(record.id)
        if feed is None:
            feed = _Feed(record)
            self._feeds[record.id] = feed
        if feed.polling is not None:
            # Someone is already asking Runway about this task: share the answer.
            return await asyncio.shield(feed.polling)
        fut: asyncio.Future[VideoRecord] = asyncio.get_running_loop().create_future()
        feed.polling = fut
        try:
            current = feed.record if _newer(feed.record, record) else record
            self.upstream_polls += 1
            try:
                task = await self._get_task(current.upstream_id, deadline)
                updated = apply_task(current, task)
            except errors.UpstreamNotFound:
                updated = mark_gone(current)
            if updated != current:
                updated = await self._store.save(updated)
            feed.last_poll = time.monotonic()
            if updated != feed.record:
                feed.publish(updated)
            fut.set_result(updated)
            return updated
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark it retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
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


def _newer(a: VideoRecord, b: VideoRecord) -> bool:
    if b.status.terminal:
        return False
    return a.status.terminal or a.update_time > b.update_time


def _jitter(interval: float) -> float:
    return interval * random.uniform(0.8, 1.2)
