"""Keeps video records fresh from Runway: one upstream poller per task across the fleet, shared by all its
watchers on every instance (issue 10).

A `_Feed` per video followed here holds the latest record and a version number. A video is followed while
it has watchers here, or while this instance holds its lease (`services/leases.py`):

- The lease holder polls Runway every `poll_interval` seconds (with jitter, backing off on errors) until the
  video ends, watched or not, then releases the lease. Every poll is saved with `polled_at` (so that a Get
  on any instance can reuse it) and a change is announced to the other instances.
- An instance with watchers but without the lease re-reads the record from the store every interval
  (cheap), publishes it if it is newer, and tries to take the lease each time: a dead holder's lease is
  taken within one interval after it expired. A "changed" notice re-reads at once, a "released" one tries
  to take the lease at once.
- A recovery scan (`recover`, at start and every two intervals) takes the lease of every unfinished video
  nobody holds: it polls the QUEUED/IN_PROGRESS ones, and closes as outcome-unknown the CREATING ones (a
  create in flight holds its lease, so a CREATING record without a holder was left by a dead creator).

`Get` uses `refresh`, which reuses a poll younger than `freshness` seconds (the record's `polled_at`, set by
whichever instance polled) and otherwise coalesces concurrent polls of one task: one in flight per process,
and one across the fleet by the coordinator's poll lock (an instance that does not get the lock waits for
the winner's answer in the store).

A poll is owned by none of the callers that share it (`services/shared_poll.py`): it runs in a task of its
own, under the service's own timeout (`poll_timeout`), in a logging context of its own. Each waiter (a Get,
a Cancel, the poller) applies its own deadline to its wait and may leave, by deadline or cancellation,
without touching the poll; only when the last waiter leaves before Runway answered is the request abandoned
(nobody wants the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.task import UpstreamTask
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.observability import logs
from videogen_server.services.leases import Leases
from videogen_server.services.ports import Coordinator, Notice, VideoStore
from videogen_server.services.shared_poll import SharedPoll

log = logging.getLogger(__name__)

# Reads the video's task from the provider, with the video's own key (record.runway_key), by a deadline.
GetTask = Callable[[VideoRecord, float | None], Awaitable[UpstreamTask]]

_MAX_BACKOFF = 60.0
# How often an instance waiting for another instance's poll (or create) re-reads the store when no notice
# came: a lost notice costs at most this much delay.
_RECHECK = 0.1


class _Feed:
    __slots__ = ("changed", "due", "last_poll", "poller", "polling", "record", "version", "watchers")

    def __init__(self, record: VideoRecord) -> None:
        self.record = record
        self.version = 0
        self.changed = asyncio.Event()
        self.watchers = 0
        self.poller: asyncio.Task[None] | None = None
        self.polling: SharedPoll | None = None  # the poll in flight, shared
        self.last_poll = float("-inf")  # monotonic time of the last successful poll
        self.due: float | None = None  # when the poller's next poll is due, if not one interval from now

    def publish(self, record: VideoRecord) -> None:
        self.record = record
        self.version += 1
        # Wake every waiter at once, then start a fresh event for the next change.
        self.changed.set()
        self.changed = asyncio.Event()

    def settle(self, record: VideoRecord) -> None:
        """Take `record` if it is news: a change callers can see is published; a record that differs only
        by a later `polled_at` replaces the current one quietly (watchers are not woken for it)."""
        if _newer(record, self.record):
            self.publish(record)
        elif _same_view(record, self.record) and _later(record.polled_at, self.record.polled_at):
            self.record = record


class _Signals:
    """Wake-ups by video id for code waiting on another instance (its poll, its create): set when a notice
    says the video changed or its lease was released. A waiter re-reads the store either way."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}

    async def wait(self, video_id: str, at_most: float) -> None:
        event = self._events.setdefault(video_id, asyncio.Event())
        self._waiting[video_id] = self._waiting.get(video_id, 0) + 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most):
                    await event.wait()
        finally:
            left = self._waiting.pop(video_id) - 1
            if left > 0:
                self._waiting[video_id] = left
            elif self._events.get(video_id) is event:
                del self._events[video_id]

    def set(self, video_id: str) -> None:
        event = self._events.pop(video_id, None)
        if event is not None:
            event.set()


class TaskTracker:
    def __init__(
        self,
        store: VideoStore,
        get_task: GetTask,
        *,
        coordinator: Coordinator,
        poll_interval: float,
        freshness: float = 1.0,
        heartbeat: float = 30.0,
        poll_timeout: float = 30.0,
        on_completed: Callable[[VideoRecord], None] | None = None,
    ) -> None:
        self._store = store
        # Told of every COMPLETED state this instance records (the archiver queues its copy: issue 11). Set
        # before `start`; it must neither block nor raise.
        self.on_completed = on_completed
        self._get_task = get_task
        self._coordinator = coordinator
        self._leases = Leases(coordinator, on_lost=self._leases_lost)
        self._poll_interval = poll_interval
        # The recovery scan lists every unfinished video (the one full scan of the store): every two poll
        # intervals keeps an unwatched video of a dead holder picked up within the bound (two poll
        # intervals plus the lease expiry) at half the cost of scanning every interval. Watched videos do
        # not wait for it: their followers try to take the lease every interval.
        self._scan_interval = 2 * poll_interval
        self._freshness = freshness
        self._heartbeat = heartbeat
        self._poll_timeout = poll_timeout  # the service's own bound on one poll, whoever waits for it
        self._feeds: dict[str, _Feed] = {}
        self._signals = _Signals()
        self._rereads: dict[str, bool] = {}  # video id -> "read it again": a re-read in flight, by notice
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.upstream_polls = 0  # how many times Runway was asked (for tests and metrics)

    async def start(self) -> None:
        """Follow the fleet: listen for notices from other instances, and scan for unfinished videos that
        nobody polls (now, then every two poll intervals)."""
        self._spawn(self._consume_notices(), "notices")
        self._spawn(self._recover_forever(), "recovery scan")

    # -- reads -------------------------------------------------------------------------------------------

    async def refresh(
        self, record: VideoRecord, *, deadline: float | None = None, max_age: float | None = None
    ) -> VideoRecord:
        """The record, brought up to date from Runway unless it is terminal or a poll younger than `max_age`
        (default: the freshness window) suffices: this process's own, or any instance's (`polled_at`)."""
        if record.status.terminal or record.status is VideoStatus.CREATING or not record.upstream_id:
            return record
        feed = self._feeds.get(record.id)
        max_age = self._freshness if max_age is None else max_age
        if feed is not None and time.monotonic() - feed.last_poll < max_age:
            return feed.record
        if _age(record.polled_at) < max_age:  # polled by any instance, recently enough
            return feed.record if feed is not None and _newer(feed.record, record) else record
        # The poll logs in a context of its own: this caller's own lines name the task too.
        logs.bind_task(record.upstream_id)
        return await self._poll(record, deadline, max_age)

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

    async def announce(self, record: VideoRecord) -> None:
        """A change made here and saved: to local watchers, and to every other instance (best effort).

        The notice to the others is sent in the background: nobody's call waits for it (a Generate would
        otherwise pay one more Redis round trip), and the others re-read the store anyway if it is lost."""
        self._publish_here(record)
        await self._tell_others_soon(record.id)

    # -- leases, for the creates (services/videos.py) ------------------------------------------------------

    @property
    def instance(self) -> str:
        return self._leases.instance

    async def hold(self, video_id: str) -> bool:
        """Take the lease of a video about to be created here (before its claim): while the create is in
        flight, other instances see a CREATING record with a live holder, not an orphan."""
        return await self._leases.acquire(video_id)

    async def let_go(self, video_id: str) -> None:
        """Give up the lease of a video this instance will not poll (its create failed or lost the claim)."""
        await self._leases.release([video_id])

    async def claim_orphan(self, record: VideoRecord) -> VideoRecord | None:
        """A CREATING record with no create in flight in this process: when no instance holds its lease (its
        creator died mid-create), take it and close the record as outcome-unknown. Returns the record as
        stored now (still CREATING when another instance's create is in flight), or None if it is gone (that
        create failed and was forgotten)."""
        if self._leases.holds(record.id):
            return record  # our own create, or our own closing of it, is under way
        if not await self._leases.acquire(record.id):
            return record  # another instance's create is in flight
        try:
            stored = await self._store.get(record.id)
            if stored is None or stored.status is not VideoStatus.CREATING:
                return stored
            return await self._close_orphan(stored)
        finally:
            await self._leases.release([record.id])

    async def wait_elsewhere(self, video_id: str) -> None:
        """Until another instance says `video_id` changed (or its lease was released), at most ~0.1 s: then
        re-read the store. (Notices may be lost: the bound is what never strands a waiter.)"""
        await self._signals.wait(video_id, _RECHECK)

    # -- gauges ------------------------------------------------------------------------------------------

    @property
    def active_pollers(self) -> int:
        """Feeds whose poller asks Runway (this instance holds the lease), not the followers."""
        return sum(
            1
            for f in self._feeds.values()
            if f.poller is not None and not f.poller.done() and self._leases.holds(f.record.id)
        )

    @property
    def open_watchers(self) -> int:
        return sum(f.watchers for f in self._feeds.values())

    @property
    def leases_held(self) -> int:
        return len(self._leases)

    async def close(self) -> None:
        """Stop every poller, then release every lease held (which tells the others: a successor takes over
        at once instead of waiting for expiry)."""
        self._closed = True
        tasks: list[asyncio.Task[Any]] = list(self._background)
        for feed in self._feeds.values():
            if feed.poller is not None:
                tasks.append(feed.poller)
            if feed.polling is not None:
                tasks.append(feed.polling.task)
        for task in tasks:
            task.cancel()
        # Outcomes were handled (or are moot) by now: only wait for the tasks to end.
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._leases.close()

    # -- feeds and their pollers -------------------------------------------------------------------------

    def _follow(self, record: VideoRecord) -> _Feed:
        """The feed of `record`'s video: made from it, or brought up to it."""
        feed = self._feeds.get(record.id)
        if feed is None:
            feed = self._feeds[record.id] = _Feed(record)
        else:
            feed.settle(record)
        return feed

    def _publish_here(self, record: VideoRecord) -> None:
        """Tell local watchers about a change made here (`announce` tells the others too). A video whose
        lease this instance holds is followed from now on, watched or not (its create just succeeded here)."""
        if record.id not in self._feeds and (record.status.terminal or not self._leases.holds(record.id)):
            return
        self._ensure_poller(self._follow(record))

    def _attach(self, record: VideoRecord) -> _Feed:
        feed = self._follow(record)
        feed.watchers += 1
        self._ensure_poller(feed)
        return feed

    def _ensure_poller(self, feed: _Feed) -> None:
        """A followed (watched here, or leased here), unfinished video has exactly one poller here."""
        record = feed.record
        if (
            feed.poller is None
            and not record.status.terminal
            and not self._closed
            and (feed.watchers > 0 or self._leases.holds(record.id))
        ):
            # The poller outlives the RPC that started it: it runs in a logging context of its own.
            poller = asyncio.create_task(
                self._run_poller(feed), name=f"poller-{record.id}", context=_own_context(record)
            )
            poller.add_done_callback(lambda task: self._poller_done(feed, task))
            feed.poller = poller

    def _detach(self, feed: _Feed) -> None:
        feed.watchers -= 1
        if feed.watchers <= 0 and not self._leases.holds(feed.record.id):
            # The last watcher left and another instance polls it: nothing to follow here any more.
            self._stop_following(feed)

    def _stop_following(self, feed: _Feed) -> None:
        """Nobody watches here and the lease is not ours (callers check): stop its poller, drop the feed
        unless a poll is still in flight (that poll forgets it when done)."""
        if feed.poller is not None:
            poller, feed.poller = feed.poller, None
            poller.cancel()
        self._forget(feed)

    def _leases_lost(self, video_ids: set[str]) -> None:
        """Leases the keeper could not renew: another instance may poll them now. A watched feed's poller
        runs on as a follower (each step asks whether we hold the lease); an unwatched one is dropped."""
        for video_id in video_ids:
            feed = self._feeds.get(video_id)
            if feed is not None and feed.watchers <= 0:
                self._stop_following(feed)

    async def _run_poller(self, feed: _Feed) -> None:
        video_id = feed.record.id
        backoff = self._poll_interval
        while not feed.record.status.terminal:
            delay = _jitter(backoff)
            if feed.due is not None:  # set by a take-over: the first poll of a new holder
                delay, feed.due = max(0.0, feed.due - time.monotonic()), None
            await _sleep_unless_ended(feed, delay)
            if feed.record.status.terminal:
                break
            try:
                await self._step(feed)
                backoff = self._poll_interval
            except errors.UpstreamUnavailable as exc:
                backoff = min(max(backoff * 2, exc.retry_after or 0.0), _MAX_BACKOFF)
                log.warning("poll of video %s failed (%s); next in ~%.1fs", video_id, exc, backoff)
            except errors.VideogenError as exc:
                backoff = min(backoff * 2, _MAX_BACKOFF)
                log.warning("poll of video %s failed (%s); next in ~%.1fs", video_id, exc, backoff)
            except Exception:
                # A bug or a failure nobody foresaw: the watchers still need their poller, so it lives on.
                backoff = min(backoff * 2, _MAX_BACKOFF)
                log.exception("poll of video %s failed unexpectedly; next in ~%.1fs", video_id, backoff)
        # Ended: nobody needs to poll it any more, here or elsewhere.
        await self._leases.release([video_id])

    async def _step(self, feed: _Feed) -> None:
        """One interval of a followed video: the holder asks Runway; a follower re-reads the store and tries
        to take the lease (a holder that died loses it by expiry)."""
        video_id = feed.record.id
        if not self._leases.holds(video_id):
            if await self._leases.acquire(video_id):
                log.info("took over the lease of video %s", video_id)
                await self._take_over(video_id)
                return
            stored = await self._store.get(video_id)
            if stored is not None:
                feed.settle(stored)
            return
        if feed.record.upstream_id:
            if time.monotonic() - feed.last_poll < min(self._freshness, self._poll_interval / 2):
                # A Get polled it moments ago (a poll this fresh is what a Get itself would reuse): that
                # answer is this interval's. Asking again cost one upstream GET per interval on top of the
                # Gets' own, since every unfinished video is followed (bench/get_running.py: 10 in 8 s).
                # Half the interval at most: this poller's own last poll is always older (the jittered
                # delay is >= 0.8 intervals), so however the two are configured it never skips itself.
                return
            await self._poll(feed.record, None, self._freshness)
        # else: its create is in flight here, and publishes its outcome itself.

    def _poller_done(self, feed: _Feed, task: asyncio.Task[None]) -> None:
        """A poller ended. Stopped (its last watcher left, or its lease was lost) or finished (terminal):
        the feed is dropped once nothing needs it. Ended any other way while followed: restarted, so that its
        watchers never wait on a poller that is gone."""
        if feed.poller is not task:
            return
        feed.poller = None
        if self._closed:
            return
        if task.cancelled():
            log.error("poller of video %s was cancelled while followed; restarting it", feed.record.id)
        elif (exc := task.exception()) is not None:
            log.error("poller of video %s died; restarting it", feed.record.id, exc_info=exc)
        if self._feeds.get(feed.record.id) is feed:
            self._ensure_poller(feed)  # starts with a sleep of one interval: no busy loop
            self._forget(feed)

    def _forget(self, feed: _Feed) -> None:
        """Drops a feed nobody watches, polls or holds any more."""
        key = feed.record.id
        if (
            self._feeds.get(key) is feed
            and feed.watchers <= 0
            and feed.polling is None
            and feed.poller is None
            and not self._leases.holds(key)
        ):
            del self._feeds[key]

    # -- taking a lease over -------------------------------------------------------------------------------

    async def _take_over(self, video_id: str) -> None:
        """This instance just took the lease of `video_id` (a follower, a "released" notice, the recovery
        scan): carry on from the stored record."""
        try:
            stored = await self._store.get(video_id)
        except BaseException:
            await self._leases.release([video_id])
            raise
        feed = self._feeds.get(video_id)
        if stored is None or stored.status.terminal:
            if feed is not None and stored is not None:
                feed.settle(stored)
            await self._leases.release([video_id])
            return
        if stored.status is VideoStatus.CREATING:
            # Creates hold their lease from before the claim: no holder means the creator died mid-create.
            try:
                await self._close_orphan(stored)
            finally:
                await self._leases.release([video_id])
            return
        feed = self._follow(stored)
        # The first poll comes one interval after the last poll of anyone (the previous holder's, which
        # may have handed the lease on at shutdown): no gap longer than one interval.
        last = feed.record.polled_at or feed.record.update_time
        feed.due = time.monotonic() + max(0.0, self._poll_interval - _age(last))
        poller = feed.poller
        if poller is not None and poller is not asyncio.current_task():
            feed.poller = None  # a follower's loop, sleeping on its own schedule: start afresh
            poller.cancel()
        self._ensure_poller(feed)

    async def _close_orphan(self, record: VideoRecord) -> VideoRecord:
        """Recorded as CREATING by an instance that died before Runway's answer: Runway cannot be asked
        whether the task exists, so close it rather than pay twice. Call with its lease held."""
        log.warning("video %s: create outcome unknown (its creator is gone); closing it as FAILED", record.id)
        saved = await self._store.save(record.outcome_unknown())
        await self.announce(saved)
        return saved

    async def recover(self) -> int:
        """One recovery scan: take the lease of every unfinished video nobody holds, poll it (or close it,
        if CREATING). Returns how many were taken."""
        taken = 0
        for record in await self._store.list_unfinished():
            if self._closed:
                break
            if self._leases.holds(record.id):
                continue
            if await self._leases.acquire(record.id):
                taken += 1
                await self._take_over(record.id)
        if taken:
            log.info("recovery scan: took over %d unfinished video(s) nobody was polling", taken)
        return taken

    async def _recover_forever(self) -> None:
        while not self._closed:
            try:
                await self.recover()
            except errors.VideogenError as exc:
                log.warning("recovery scan failed (%s); next in ~%.1fs", exc, self._scan_interval)
            except Exception:
                log.exception("recovery scan failed unexpectedly; next in ~%.1fs", self._scan_interval)
            await asyncio.sleep(_jitter(self._scan_interval))

    # -- notices from other instances --------------------------------------------------------------------

    async def _consume_notices(self) -> None:
        while not self._closed:
            try:
                async for notice in self._coordinator.notices():
                    self._on_notice(notice)
                return  # the coordinator closed
            except Exception as exc:
                # The engine resubscribes on its own; this is a bug or a closed engine. Watchers still have
                # their periodic re-reads; try again in a while.
                log.warning("notices from other instances stopped (%s); listening again shortly", exc)
                await asyncio.sleep(self._poll_interval)

    def _on_notice(self, notice: Notice) -> None:
        video_id = notice.video_id
        if notice.kind == "changed":
            self._signals.set(video_id)
            self._reread_soon(video_id)
        elif notice.kind == "released":
            self._signals.set(video_id)
            if not self._leases.holds(video_id):
                self._spawn(self._offered(video_id), f"take over {video_id}")
        elif notice.kind == "resync":
            for followed in list(self._feeds):
                self._signals.set(followed)
                self._reread_soon(followed)

    def _reread_soon(self, video_id: str) -> None:
        """Re-read a followed video from the store (once more if another notice comes meanwhile)."""
        if video_id not in self._feeds:
            return
        if video_id in self._rereads:
            self._rereads[video_id] = True
            return
        self._rereads[video_id] = False
        self._spawn(self._reread(video_id), f"re-read {video_id}")

    async def _reread(self, video_id: str) -> None:
        try:
            while True:
                self._rereads[video_id] = False
                feed = self._feeds.get(video_id)
                if feed is None:
                    return
                stored = await self._store.get(video_id)
                if stored is not None:
                    feed.settle(stored)  # a terminal one also wakes and ends the poller, releasing its lease
                if not self._rereads.get(video_id):
                    return
        except errors.VideogenError as exc:
            log.warning("re-reading video %s after a notice failed (%s)", video_id, exc)
        finally:
            self._rereads.pop(video_id, None)

    async def _offered(self, video_id: str) -> None:
        """Its holder released the lease (it stopped): take it if the video is unfinished, watched here or
        not, so that nobody waits for the next recovery scan."""
        try:
            stored = await self._store.get(video_id)
            if stored is None or stored.status.terminal:
                feed = self._feeds.get(video_id)
                if feed is not None and stored is not None:
                    feed.settle(stored)
                return
            if not self._leases.holds(video_id) and await self._leases.acquire(video_id):
                log.info("took over the released lease of video %s", video_id)
                await self._take_over(video_id)
        except errors.VideogenError as exc:
            log.warning("taking over the released lease of video %s failed (%s)", video_id, exc)

    async def _tell_others_soon(self, video_id: str) -> None:
        """The "changed" notice, in the background: nobody's call waits for a best-effort PUBLISH. Sent
        inline once closing (`_spawn` starts nothing then: `close` would not wait for it)."""
        if self._closed:
            await self._tell_others(video_id)
        else:
            self._spawn(self._tell_others(video_id), name=f"announce-{video_id}")

    async def _tell_others(self, video_id: str) -> None:
        try:
            await self._coordinator.announce(video_id)
        except errors.StoreUnavailable as exc:
            # Best effort by contract: the others re-read the store every interval anyway.
            log.warning("could not announce the change of video %s (%s)", video_id, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._closed:
            coro.close()
            return
        # Work of the whole tracker: in a logging context of its own, not the one of whoever caused it.
        task = asyncio.create_task(coro, name=name, context=contextvars.Context())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- polls ---------------------------------------------------------------------------------------------

    async def _poll(self, record: VideoRecord, deadline: float | None, max_age: float) -> VideoRecord:
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
            poll = feed.polling = SharedPoll.start(
                lambda started: self._fetch(feed, started, current, max_age),
                name=f"poll of video {current.id}",
                context=_own_context(current),
            )
        return await poll.wait(deadline)

    async def _fetch(
        self, feed: _Feed, poll: SharedPoll, current: VideoRecord, max_age: float
    ) -> VideoRecord:
        """The shared poll itself, in its own task: one read of the task across the fleet (the poll lock),
        recorded and broadcast. Without the lock, another instance is reading it right now: its answer,
        found in the store, is ours too; if its lock expires with no answer, we take the lock and read."""
        video_id = current.id
        seen = _latest(current.polled_at, feed.record.polled_at)
        give_up = time.monotonic() + self._poll_timeout
        try:
            while True:
                if await self._coordinator.lock_poll(video_id, self._poll_timeout):
                    try:
                        result = await self._read_upstream(poll, current, seen, max_age)
                    finally:
                        with contextlib.suppress(errors.StoreUnavailable):
                            await self._coordinator.unlock_poll(video_id)  # else it expires
                    break
                if time.monotonic() >= give_up:
                    raise errors.UpstreamUnavailable(
                        f"another instance's read of the task from Runway did not end within "
                        f"{self._poll_timeout:g}s"
                    )
                await self._signals.wait(video_id, _RECHECK)
                stored = await self._store.get(video_id)
                if stored is not None and (stored.status.terminal or _later(stored.polled_at, seen)):
                    result = stored
                    break
            feed.last_poll = time.monotonic()
            feed.settle(result)
            return result
        finally:
            if feed.polling is poll:
                feed.polling = None
            if feed.watchers <= 0:
                # Nobody watches: keep the answer for the freshness window, so that Gets arriving right
                # after this poll reuse it instead of each asking Runway again, then forget the feed.
                asyncio.get_running_loop().call_later(self._freshness, self._forget, feed)

    async def _read_upstream(
        self, poll: SharedPoll, current: VideoRecord, seen: datetime | None, max_age: float
    ) -> VideoRecord:
        """Ask Runway (holding the fleet's poll lock), save the answer with `polled_at`, announce a change."""
        # Another instance may have polled between our read of the record and our lock: then its answer,
        # if still fresh for us, saves an upstream GET (concurrent Gets on several replicas cost one).
        stored = await self._store.get(current.id)
        if stored is not None:
            polled_since = _later(stored.polled_at, seen) and _age(stored.polled_at) < max_age
            if stored.status.terminal or polled_since:
                return stored
            if not _newer(current, stored):
                current = stored
        self.upstream_polls += 1
        try:
            task = await self._get_task(current, time.monotonic() + self._poll_timeout)
            updated = current.with_task(task)
        except errors.UpstreamNotFound:
            updated = current.gone()
        except errors.DeadlineExceeded as exc:
            # The service's own timeout, never a caller's: to the waiters, Runway is unavailable.
            raise errors.UpstreamUnavailable(
                f"Runway did not answer within {self._poll_timeout:g}s ({exc.message})"
            ) from exc
        poll.fetching = False  # answered: it is recorded now, whoever still waits
        # Saved even when nothing changed (then only polled_at is new): a Get on any instance reuses it.
        saved = await self._store.save(updated.replace(polled_at=utcnow()))
        if not _same_view(saved, current):
            # In the background: the waiters (a Get, the poller) and the fleet's poll lock need not wait for
            # the PUBLISH.
            await self._tell_others_soon(current.id)
        if (
            saved.status is VideoStatus.COMPLETED
            and current.status is not VideoStatus.COMPLETED
            and self.on_completed is not None
        ):
            self.on_completed(saved)  # recorded here: whoever polled it starts its copy
        return saved


async def _sleep_unless_ended(feed: _Feed, delay: float) -> None:
    """Sleep `delay` seconds, or less if the video ends meanwhile (a notice, our own Cancel)."""
    end = time.monotonic() + delay
    while not feed.record.status.terminal:
        remaining = end - time.monotonic()
        if remaining <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await feed.changed.wait()


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


def _same_view(a: VideoRecord, b: VideoRecord) -> bool:
    """The same as callers see it: `polled_at` is bookkeeping, not news."""
    return a.replace(polled_at=None) == b.replace(polled_at=None)


def _later(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a > b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return a if _later(a, b) else b


def _age(polled_at: datetime | None) -> float:
    """Seconds since `polled_at` by the wall clock (instances share no other), never negative; infinite
    for a task never polled."""
    if polled_at is None:
        return float("inf")
    return max(0.0, (utcnow() - polled_at).total_seconds())


def _jitter(interval: float) -> float:
    return interval * random.uniform(0.8, 1.2)
