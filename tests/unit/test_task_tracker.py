"""TaskTracker (watch.py) on an in-memory store and a fake Runway read that answers only when told: who owns
a shared poll, whose deadline applies, and what keeps a poller alive (issue 8, item 1). No sockets."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from videogen_server import errors
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.task import UpstreamTask
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.observability import logs
from videogen_server.services.tracker import TaskTracker
from videogen_server.store.local_coordinator import LocalCoordinator

VID = "6f1c2a9e-0d4b-4f7a-8e3c-5b2d1a0f9c8e"
TID = "0b6c9f6e-2b7d-4c1e-9d6e-3f1a2b3c4d5e"
BOUND = 5.0  # generous upper bound on anything that should happen "soon"


def queued() -> VideoRecord:
    now = datetime.now(UTC)
    return VideoRecord(
        id=VID,
        owner="alice",
        mode=GenerationMode.TEXT_TO_VIDEO,
        model="gen4.5",
        prompt="a boat",
        seconds=5,
        size="1280x720",
        status=VideoStatus.QUEUED,
        create_time=now,
        update_time=now,
        upstream_id=TID,
        upstream_status="PENDING",
    )


class MemoryStore:
    """Records what is saved; a read finds the last record saved, or VID as first recorded."""

    def __init__(self) -> None:
        self.saved: list[VideoRecord] = []

    async def save(self, record: VideoRecord) -> VideoRecord:
        self.saved.append(record)
        return record

    async def get(self, video_id: str, *, owner: str | None = None) -> VideoRecord | None:
        # Never newer than the records the tests hand the tracker: a read is no news to a watcher.
        first = queued().replace(update_time=datetime(2000, 1, 1, tzinfo=UTC))
        return self.saved[-1] if self.saved else first


@pytest.fixture
async def coordinator() -> AsyncIterator[LocalCoordinator]:
    coord = LocalCoordinator()
    await coord.open()
    try:
        yield coord
    finally:
        await coord.close()


class FakeRunway:
    """GET task that answers only once `release` is set (then at once), as `status` at `progress`."""

    def __init__(self) -> None:
        self.deadlines: list[float | None] = []
        self.contexts: list[tuple[str, str, str]] = []  # (request id, video id, task id) each call saw
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = 0
        self.status = "RUNNING"
        self.progress = 0.1
        self.fail: list[BaseException] = []  # raised by the next calls, in order

    async def __call__(self, record: VideoRecord, deadline: float | None) -> UpstreamTask:
        self.deadlines.append(deadline)
        self.contexts.append((logs.request_id.get(), logs.video_id.get(), logs.task_id.get()))
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail:
            raise self.fail.pop(0)
        self.progress += 0.01  # every answer is news to the watchers
        outputs = ("https://cdn.example.test/out.mp4",) if self.status == "SUCCEEDED" else ()
        # The provider maps its own status words (providers/runway/wire.py); this fake knows two.
        mapped = VideoStatus.COMPLETED if self.status == "SUCCEEDED" else VideoStatus.IN_PROGRESS
        return UpstreamTask(
            id=record.upstream_id,
            status=self.status,
            video_status=mapped,
            progress=self.progress,
            outputs=outputs,
        )

    @property
    def calls(self) -> int:
        return len(self.deadlines)


@pytest.fixture
def runway() -> FakeRunway:
    return FakeRunway()


@pytest.fixture
async def tracker(runway: FakeRunway, coordinator: LocalCoordinator) -> AsyncIterator[TaskTracker]:
    t = TaskTracker(
        MemoryStore(),  # type: ignore[arg-type]
        runway,
        coordinator=coordinator,
        poll_interval=0.05,
        freshness=0.0,
        heartbeat=30.0,
    )
    try:
        yield t
    finally:
        await t.close()


async def waiters(tracker: TaskTracker, n: int) -> None:
    """Until `n` callers wait on the poll of VID in flight (white box: the feed's shared poll)."""
    async with asyncio.timeout(BOUND):
        while True:
            feed = tracker._feeds.get(VID)
            if feed is not None and feed.polling is not None and feed.polling.waiters == n:
                return
            await asyncio.sleep(0.005)


async def until_terminal(watch: AsyncIterator[VideoRecord]) -> list[VideoStatus]:
    seen = []
    async with asyncio.timeout(BOUND):
        async for state in watch:
            seen.append(state.status)
    return seen


async def test_a_get_that_joined_a_watchers_poll_is_answered_after_the_watcher_leaves(tracker, runway):
    watch = tracker.watch(queued())
    assert (await anext(watch)).status is VideoStatus.QUEUED
    await runway.started.wait()  # the poller's poll is in flight
    get = asyncio.create_task(tracker.refresh(queued()))
    await waiters(tracker, 2)
    await watch.aclose()  # the watcher goes away; the poller stays (this instance holds the lease)...
    assert tracker.active_pollers == 1
    tracker._leases_lost({VID})  # ...until the lease is lost: then nothing here follows the video
    await waiters(tracker, 1)
    runway.release.set()
    async with asyncio.timeout(BOUND):
        got = await get
    assert got.status is VideoStatus.IN_PROGRESS
    assert runway.calls == 1 and runway.cancelled == 0
    assert tracker.active_pollers == 0


@pytest.mark.parametrize("short_first", [True, False])
async def test_each_waiter_has_its_own_deadline_and_the_poll_has_none_of_them(tracker, runway, short_first):
    short_deadline = time.monotonic() + 0.05
    deadlines = [short_deadline, time.monotonic() + 30] if short_first else [None, short_deadline]
    first = asyncio.create_task(tracker.refresh(queued(), deadline=deadlines[0]))
    await runway.started.wait()
    second = asyncio.create_task(tracker.refresh(queued(), deadline=deadlines[1]))
    short, long = (first, second) if short_first else (second, first)
    with pytest.raises(errors.DeadlineExceeded):  # the domain error: DEADLINE_EXCEEDED on the wire
        await short
    await waiters(tracker, 1)
    runway.release.set()
    assert (await long).status is VideoStatus.IN_PROGRESS
    assert runway.calls == 1 and runway.cancelled == 0
    # The upstream call ran under the service's own timeout (30 s by default), not the caller's 50 ms.
    (upstream_deadline,) = runway.deadlines
    assert upstream_deadline is not None and upstream_deadline > short_deadline + 10


async def test_a_cancelled_caller_does_not_kill_the_poller_that_joined_its_poll(tracker, runway):
    get = asyncio.create_task(tracker.refresh(queued()))  # starts the poll
    await runway.started.wait()
    watch = tracker.watch(queued())
    assert (await anext(watch)).status is VideoStatus.QUEUED
    await waiters(tracker, 2)  # the poller woke up and joined the Get's poll
    get.cancel()
    with pytest.raises(asyncio.CancelledError):
        await get
    await waiters(tracker, 1)
    assert tracker.active_pollers == 1
    runway.release.set()
    async with asyncio.timeout(BOUND):
        assert (await anext(watch)).status is VideoStatus.IN_PROGRESS
    runway.status = "SUCCEEDED"
    assert (await until_terminal(watch))[-1] is VideoStatus.COMPLETED
    assert runway.cancelled == 0


async def test_the_poll_is_abandoned_only_when_its_last_waiter_leaves(tracker, runway):
    with pytest.raises(errors.DeadlineExceeded):
        await tracker.refresh(queued(), deadline=time.monotonic() + 0.05)
    async with asyncio.timeout(BOUND):
        while not runway.cancelled:  # noqa: ASYNC110 (the fake counts; there is no event)
            await asyncio.sleep(0.005)
    # Nobody wanted the answer: the request to Runway was not left open. The next read asks again.
    runway.release.set()
    assert (await tracker.refresh(queued())).status is VideoStatus.IN_PROGRESS
    assert runway.calls == 2


async def test_a_deadline_already_past_does_not_ask_runway(tracker, runway):
    with pytest.raises(errors.DeadlineExceeded):
        await tracker.refresh(queued(), deadline=time.monotonic() - 1)
    await asyncio.sleep(0.02)
    assert runway.calls == 0 and tracker.upstream_polls == 0


async def test_a_poller_survives_an_unexpected_failure(tracker, runway, caplog):
    runway.fail = [RuntimeError("a bug"), KeyError("another")]
    runway.release.set()
    watch = tracker.watch(queued())
    assert (await anext(watch)).status is VideoStatus.QUEUED
    async with asyncio.timeout(BOUND):
        assert (await anext(watch)).status is VideoStatus.IN_PROGRESS  # after two failed polls
    assert runway.calls >= 3
    assert sum("failed unexpectedly" in r.getMessage() for r in caplog.records) == 2
    await watch.aclose()


async def test_a_poller_cancelled_from_outside_is_restarted(tracker, runway, caplog):
    watch = tracker.watch(queued())
    assert (await anext(watch)).status is VideoStatus.QUEUED
    poller = tracker._feeds[VID].poller
    assert poller is not None
    poller.cancel()  # not by its last watcher leaving, nor by close()
    async with asyncio.timeout(BOUND):
        while tracker._feeds[VID].poller in (None, poller):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    assert any("restarting" in r.getMessage() for r in caplog.records)
    runway.release.set()
    async with asyncio.timeout(BOUND):
        assert (await anext(watch)).status is VideoStatus.IN_PROGRESS
    await watch.aclose()


async def test_the_shared_poll_logs_in_its_own_context(tracker, runway):
    runway.release.set()

    async def a_callers_get() -> VideoRecord:
        logs.request_id.set("rid-of-the-caller")
        return await tracker.refresh(queued())

    await asyncio.create_task(a_callers_get(), context=contextvars.Context())
    assert runway.contexts == [("", VID, TID)]


async def test_the_services_own_timeout_reaches_waiters_as_upstream_unavailable(tracker, runway):
    runway.fail = [errors.DeadlineExceeded("deadline exceeded during GET task")]
    runway.release.set()
    with pytest.raises(errors.UpstreamUnavailable):  # Get then serves the recorded state
        await tracker.refresh(queued(), deadline=time.monotonic() + 30)


async def test_closing_the_tracker_answers_waiters_with_an_error(runway, coordinator):
    tracker = TaskTracker(MemoryStore(), runway, coordinator=coordinator, poll_interval=0.05)  # type: ignore[arg-type]
    get = asyncio.create_task(tracker.refresh(queued()))
    await runway.started.wait()
    await tracker.close()
    with pytest.raises(errors.UpstreamUnavailable):
        await get


async def test_one_upstream_read_serves_every_watcher_and_get(runway, coordinator):
    tracker = TaskTracker(MemoryStore(), runway, coordinator=coordinator, poll_interval=0.05, freshness=10.0)  # type: ignore[arg-type]
    try:
        watches = [tracker.watch(queued()) for _ in range(5)]
        for watch in watches:
            assert (await anext(watch)).status is VideoStatus.QUEUED
        await runway.started.wait()
        gets = [asyncio.create_task(tracker.refresh(queued())) for _ in range(5)]
        await waiters(tracker, 6)  # 5 Gets and the one poller
        runway.release.set()
        assert {(await g).status for g in gets} == {VideoStatus.IN_PROGRESS}
        assert tracker.upstream_polls == runway.calls == 1
        # A Get within the freshness window reuses the last answer instead of asking again.
        calls = runway.calls
        assert (await tracker.refresh(queued())).status is VideoStatus.IN_PROGRESS
        assert runway.calls == calls
        for watch in watches:
            async with asyncio.timeout(BOUND):
                assert (await anext(watch)).status is VideoStatus.IN_PROGRESS
            await watch.aclose()
    finally:
        await tracker.close()


async def test_an_unwatched_feed_is_forgotten_after_the_freshness_window(runway, coordinator):
    tracker = TaskTracker(MemoryStore(), runway, coordinator=coordinator, poll_interval=0.05, freshness=0.05)  # type: ignore[arg-type]
    runway.release.set()
    await tracker.refresh(queued())
    assert VID in tracker._feeds  # kept for Gets right behind this one
    async with asyncio.timeout(BOUND):
        while VID in tracker._feeds:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await tracker.close()


class GatedStore(MemoryStore):
    """A store whose saves wait for `open`, then fail with `fail` if set."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.fail: BaseException | None = None

    async def save(self, record: VideoRecord) -> VideoRecord:
        await self.open.wait()
        if self.fail is not None:
            raise self.fail
        return await super().save(record)


@pytest.mark.parametrize("save_fails", [False, True])
async def test_an_answer_is_recorded_even_after_every_waiter_left(runway, coordinator, caplog, save_fails):
    store = GatedStore()
    store.fail = RuntimeError("disk full") if save_fails else None
    tracker = TaskTracker(store, runway, coordinator=coordinator, poll_interval=0.05)  # type: ignore[arg-type]
    try:
        runway.release.set()  # Runway answers at once; the save is what takes long
        with pytest.raises(errors.DeadlineExceeded):
            await tracker.refresh(queued(), deadline=time.monotonic() + 0.05)
        store.open.set()
        async with asyncio.timeout(BOUND):
            while tracker._feeds[VID].polling is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        unheard = [r for r in caplog.records if "nobody waiting" in r.getMessage()]
        if save_fails:
            assert store.saved == [] and len(unheard) == 1  # told once, not "never retrieved"
        else:
            assert [r.status for r in store.saved] == [VideoStatus.IN_PROGRESS] and unheard == []
    finally:
        await tracker.close()


async def test_the_poller_skips_its_interval_when_a_get_polled_moments_ago(runway, coordinator):
    """A followed video's poller does not ask Runway again right after a Get's poll: that answer is younger
    than the freshness window, which is all a Get itself would ask for."""
    tracker = TaskTracker(MemoryStore(), runway, coordinator=coordinator, poll_interval=60.0, freshness=30.0)  # type: ignore[arg-type]
    try:
        runway.release.set()
        record = await tracker.refresh(queued())  # a Get: one upstream read
        assert runway.calls == 1
        feed = tracker._feeds[VID]
        assert await tracker.hold(VID)  # this instance follows the video (it holds its lease)
        await tracker._step(feed)  # the poller's next interval, moments later
        assert runway.calls == 1 and record.status is VideoStatus.IN_PROGRESS
        feed.last_poll -= 31.0  # older than the window now: the poller asks
        await tracker._step(feed)
        assert runway.calls == 2
    finally:
        await tracker.close()


async def test_the_poller_never_skips_its_own_next_poll_whatever_the_settings(runway, coordinator):
    """With the poll interval as short as the freshness window, the poller's own last poll (at least 0.8
    of an interval ago: the jitter) is never taken for a Get's fresh one."""
    tracker = TaskTracker(MemoryStore(), runway, coordinator=coordinator, poll_interval=10.0, freshness=10.0)  # type: ignore[arg-type]
    try:
        runway.release.set()
        await tracker.refresh(queued())
        feed = tracker._feeds[VID]
        assert await tracker.hold(VID)
        feed.last_poll -= 8.0  # the shortest jittered delay after its own poll
        await tracker._step(feed)
        assert runway.calls == 2
    finally:
        await tracker.close()
