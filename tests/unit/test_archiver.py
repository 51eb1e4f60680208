"""The archiver, the retention sweeper and StreamContent's archive-first reads (issue 11) as services, on
real parts but the archive and the store: Runway is the simulator (a real HTTP server on loopback, its
output URLs, its fault plan) reached by the real RunwayProvider; the archive is MemoryArchive (with its fault
hooks), the store MemoryVideoStore, leases a LocalCoordinator group. The same behaviours through the real
server: tests/integration/test_archive.py and tests/faults/test_archive_faults.py."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from videogen_server import errors
from videogen_server.archive.memory import MemoryArchive
from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerateSpec, GenerationMode
from videogen_server.domain.video import ArchiveState, VideoRecord, VideoStatus, archive_key
from videogen_server.providers.runway import RunwayProvider
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.services import message_sizes
from videogen_server.services.archiver import Archiver, archive_lease
from videogen_server.services.content import ContentHeader, ContentRelay
from videogen_server.services.message_sizes import LargeMessageBudget
from videogen_server.services.retention import RetentionSweeper
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.videos import Videos
from videogen_server.simulator import RunwaySimulator, SimulatorConfig
from videogen_server.simulator.faults import Fault
from videogen_server.store import MemoryVideoStore
from videogen_server.store.local_coordinator import LocalCoordinator

# Not a multiple of the chunk size: the last chunk is short, as with real files.
OUTPUT_SIZE = 3 * 1024 * 1024 + 12_345
BOUND = 20.0  # generous: anything that should happen "soon"


def outputs_served(sim: RunwaySimulator) -> int:
    return sim.request_counts[("GET", "output")]


@dataclass
class Parts:
    sim: RunwaySimulator
    store: MemoryVideoStore
    archive: MemoryArchive
    runway: RunwayProvider
    coordinators: list[LocalCoordinator]
    announced: list[VideoRecord] = field(default_factory=list)

    async def announce(self, record: VideoRecord) -> None:
        self.announced.append(record)

    def archiver(self, *, coordinator: int = 0, **options: object) -> Archiver:
        settings: dict[str, object] = {"retention": 3600.0, "retry_delay": 0.01}
        settings.update(options)
        return Archiver(
            self.store,
            self.runway,
            self.archive,
            self.coordinators[coordinator],
            announce=self.announce,
            **settings,  # type: ignore[arg-type]
        )

    async def completed_video(self) -> VideoRecord:
        """A video recorded COMPLETED (by the tracker's rule, `with_task`) whose task finished at the
        simulator: its output PENDING."""
        ref = await self.runway.create(
            self.runway.plan(GenerateSpec(model="gen4.5", prompt="a boat", seconds=5))
        )
        async with asyncio.timeout(BOUND):
            while self.sim.task_status(ref.id) != "SUCCEEDED":  # noqa: ASYNC110 - the simulator's clock
                await asyncio.sleep(0.01)
        now = utcnow()
        record = VideoRecord(
            id=str(uuid.uuid4()),
            owner="alice",
            mode=GenerationMode.TEXT_TO_VIDEO,
            model="gen4.5",
            prompt="a boat",
            seconds=5,
            size="1280x720",
            status=VideoStatus.QUEUED,
            create_time=now,
            update_time=now,
            upstream_id=ref.id,
        )
        await self.store.claim(record)
        done = record.with_task(await self.runway.get_task(ref.id))
        assert done.status is VideoStatus.COMPLETED and done.outputs[0].archive is ArchiveState.PENDING
        return await self.store.save(done)

    async def forget_task(self, task_id: str) -> None:
        """Runway deletes the task (and its output), as it does some time after a task ends."""
        async with httpx.AsyncClient() as client:
            answer = await client.delete(
                f"{self.sim.base_url}/v1/tasks/{task_id}",
                headers={"Authorization": f"Bearer {self.sim.api_key}", "X-Runway-Version": "2024-11-06"},
            )
        assert answer.status_code == 204


@pytest.fixture
async def parts() -> AsyncIterator[Parts]:
    sim = RunwaySimulator(
        api_key="key_archiver_test",
        config=SimulatorConfig(
            pending_seconds=0.0, running_seconds=0.0, max_concurrency=None, output_size=OUTPUT_SIZE
        ),
    )
    base_url = await sim.start()
    store = MemoryVideoStore()
    await store.open()
    archive = MemoryArchive()
    await archive.open()
    coordinators = LocalCoordinator.group(2)
    for c in coordinators:
        await c.open()
    runway = RunwayProvider.connect(
        base_url, sim.api_key, retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05)
    )
    try:
        yield Parts(sim, store, archive, runway, coordinators)
    finally:
        await runway.aclose()
        for c in coordinators:
            await c.close()
        await archive.close()
        await store.close()
        await sim.stop()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stored_bytes(archive: MemoryArchive, key: str) -> bytes:
    async with archive.open_read(key) as out:
        return b"".join([chunk async for chunk in out.iter_chunks(1 << 20)])


async def test_a_completed_video_is_copied_once_verified_and_recorded(parts: Parts) -> None:
    video = await parts.completed_video()
    original = parts.sim.output_bytes(video.upstream_id)
    archiver = parts.archiver(retention=3600.0)
    before = utcnow()

    saved = await archiver.archive_video(video.id)

    assert saved is not None
    out = saved.outputs[0]
    assert out.archive is ArchiveState.ARCHIVED
    assert out.size_bytes == len(original) == OUTPUT_SIZE
    assert out.sha256 == sha256(original)
    assert await stored_bytes(parts.archive, archive_key(video.id, 0)) == original
    # Video.expire_time is now the retention's end, not Runway's URL expiry.
    assert saved.expire_time is not None
    assert before + timedelta(seconds=3599) <= saved.expire_time <= utcnow() + timedelta(seconds=3601)
    assert (await parts.store.get(video.id)) == saved
    assert parts.announced[-1] == saved  # watchers and the other replicas are told
    # Once archived there is nothing left to do: a second pass copies nothing.
    served = outputs_served(parts.sim)
    assert (await archiver.archive_video(video.id)) == saved
    assert outputs_served(parts.sim) == served and parts.archive.puts == 1
    assert archiver.archived == 1


async def test_retention_forever_records_no_expiry(parts: Parts) -> None:
    video = await parts.completed_video()
    saved = await parts.archiver(retention=None).archive_video(video.id)
    assert saved is not None and saved.outputs[0].archive is ArchiveState.ARCHIVED
    assert saved.expire_time is None


async def test_a_download_cut_midway_is_retried_and_recorded_once(parts: Parts) -> None:
    video = await parts.completed_video()
    original = parts.sim.output_bytes(video.upstream_id)
    parts.sim.faults.add(Fault(route="output", kind="cut_body", cut_after=OUTPUT_SIZE // 2))

    saved = await parts.archiver().archive_video(video.id)

    assert saved is not None and saved.outputs[0].archive is ArchiveState.ARCHIVED
    assert saved.outputs[0].sha256 == sha256(original)
    assert await stored_bytes(parts.archive, archive_key(video.id, 0)) == original
    assert outputs_served(parts.sim) == 2  # the cut one, then the whole one
    assert [r.outputs[0].archive for r in parts.announced] == [ArchiveState.ARCHIVED]  # recorded once


async def test_a_copy_cut_every_time_is_never_recorded_and_stays_pending(parts: Parts) -> None:
    video = await parts.completed_video()
    parts.sim.faults.add(Fault(route="output", kind="cut_body", cut_after=1000, count=3))

    saved = await parts.archiver(attempts=3).archive_video(video.id)

    assert saved is not None and saved.outputs[0].archive is ArchiveState.PENDING
    assert await parts.archive.size(archive_key(video.id, 0)) is None  # no part was committed
    assert parts.announced == []
    # Later (the scan's next pass) it succeeds.
    saved = await parts.archiver().archive_video(video.id)
    assert saved is not None and saved.outputs[0].archive is ArchiveState.ARCHIVED


async def test_an_expired_url_is_replaced_by_reading_the_task_again(parts: Parts) -> None:
    video = await parts.completed_video()
    original = parts.sim.output_bytes(video.upstream_id)
    parts.sim.faults.add(Fault(route="output", kind="expired_url"))
    gets = parts.sim.request_counts[("GET", "/v1/tasks/{id}")]

    saved = await parts.archiver().archive_video(video.id)

    assert saved is not None and saved.outputs[0].archive is ArchiveState.ARCHIVED
    assert saved.outputs[0].sha256 == sha256(original)
    assert parts.sim.request_counts[("GET", "/v1/tasks/{id}")] == gets + 2  # the first URL, then a fresh one


async def test_an_output_url_that_stays_expired_is_lost_with_its_reason(parts: Parts) -> None:
    video = await parts.completed_video()
    parts.sim.faults.add(Fault(route="output", kind="expired_url", count=5))

    saved = await parts.archiver().archive_video(video.id)

    assert saved is not None and saved.outputs[0].archive is ArchiveState.LOST
    assert "expired" in saved.outputs[0].lost_reason
    assert parts.archive.keys() == []


async def test_a_task_runway_forgot_is_lost_with_its_reason(parts: Parts) -> None:
    video = await parts.completed_video()
    await parts.forget_task(video.upstream_id)

    archiver = parts.archiver()
    saved = await archiver.archive_video(video.id)

    assert saved is not None and saved.outputs[0].archive is ArchiveState.LOST
    assert "no longer has the task" in saved.outputs[0].lost_reason
    assert archiver.lost == 1 and parts.archive.keys() == []
    # Final: a later pass does not try again.
    served = outputs_served(parts.sim)
    assert (await archiver.archive_video(video.id)) == saved
    assert outputs_served(parts.sim) == served


async def test_an_archive_that_refuses_writes_leaves_the_output_pending_for_later(parts: Parts) -> None:
    video = await parts.completed_video()
    parts.archive.fail_puts = True

    saved = await parts.archiver(attempts=2).archive_video(video.id)

    assert saved is not None and saved.outputs[0].archive is ArchiveState.PENDING
    assert parts.archive.puts == 2 and parts.archive.keys() == []
    parts.archive.fail_puts = False  # the disk has room again / S3 answers again
    saved = await parts.archiver().archive_video(video.id)
    assert saved is not None and saved.outputs[0].archive is ArchiveState.ARCHIVED


async def test_a_whole_copy_already_in_the_archive_is_recorded_without_asking_runway(parts: Parts) -> None:
    """A copier that died between its put and its save, or a record read before another replica's save
    reached us: the object under the key is hashed again from the archive, not downloaded again."""
    video = await parts.completed_video()
    original = parts.sim.output_bytes(video.upstream_id)

    async def chunks() -> AsyncIterator[bytes]:
        yield original

    await parts.archive.put(archive_key(video.id, 0), chunks(), content_type="video/mp4")
    before = runway_requests(parts.sim)

    saved = await parts.archiver().archive_video(video.id)

    assert saved is not None and saved.outputs[0].archive is ArchiveState.ARCHIVED
    assert saved.outputs[0].sha256 == sha256(original) and saved.outputs[0].size_bytes == OUTPUT_SIZE
    assert runway_requests(parts.sim) == before


async def test_a_video_another_replica_copies_is_left_to_it(parts: Parts) -> None:
    video = await parts.completed_video()
    assert await parts.coordinators[1].acquire(archive_lease(video.id))  # the other replica's copy

    assert await parts.archiver(coordinator=0).archive_video(video.id) is None
    assert parts.archive.puts == 0 and outputs_served(parts.sim) == 0

    await parts.coordinators[1].release([archive_lease(video.id)])
    saved = await parts.archiver(coordinator=0).archive_video(video.id)
    assert saved is not None and saved.outputs[0].archive is ArchiveState.ARCHIVED


async def test_two_replicas_told_of_one_completion_copy_it_once(parts: Parts) -> None:
    gated = GatedArchive()
    await gated.open()
    parts.archive = gated
    video = await parts.completed_video()
    first = asyncio.create_task(parts.archiver(coordinator=0).archive_video(video.id))
    async with asyncio.timeout(BOUND):
        await gated.started.wait()  # the first replica is copying, its lease held
    assert await parts.archiver(coordinator=1).archive_video(video.id) is None  # the second leaves it
    gated.gate.set()
    saved = await first
    assert saved is not None and saved.outputs[0].archive is ArchiveState.ARCHIVED
    assert gated.puts == 1 and outputs_served(parts.sim) == 1


class GatedArchive(MemoryArchive):
    """Puts wait at their first chunk until `gate` opens, and count how many were in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.most = 0
        self.started = asyncio.Event()

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, content_type: str) -> None:
        async def gated() -> AsyncIterator[bytes]:
            first = True
            async for chunk in chunks:
                if first:
                    first = False
                    self.started.set()
                    await self.gate.wait()
                yield chunk

        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await super().put(key, gated(), content_type=content_type)
        finally:
            self.in_flight -= 1


async def test_the_hook_queues_copies_and_concurrency_is_bounded(parts: Parts) -> None:
    gated = GatedArchive()
    await gated.open()
    parts.archive = gated
    videos = [await parts.completed_video() for _ in range(6)]
    archiver = parts.archiver(concurrency=2, scan_interval=3600.0)
    archiver._scan_forever = _no_scan  # type: ignore[method-assign]  # only the hook, here
    await archiver.start()
    try:
        for video in videos:
            archiver.completed(video)
            archiver.completed(video)  # twice: queued once
        async with asyncio.timeout(BOUND):
            await gated.started.wait()
            while gated.in_flight < 2:  # noqa: ASYNC110 - the workers take their next ids
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # room for a third copy to start, if anything let it
        assert gated.in_flight == 2 and archiver.in_flight == 2
        gated.gate.set()
        async with asyncio.timeout(BOUND):
            while archiver.archived < len(videos):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await archiver.close()
    assert gated.most == 2
    assert gated.puts == len(videos)
    for video in videos:
        stored = await parts.store.get(video.id)
        assert stored is not None and stored.outputs[0].archive is ArchiveState.ARCHIVED


async def _no_scan() -> None:
    return None


async def test_close_cancels_a_copy_in_flight_and_leaves_it_pending(parts: Parts) -> None:
    gated = GatedArchive()
    await gated.open()
    parts.archive = gated
    video = await parts.completed_video()
    archiver = parts.archiver()
    archiver._scan_forever = _no_scan  # type: ignore[method-assign]
    await archiver.start()
    archiver.completed(video)
    async with asyncio.timeout(BOUND):
        await gated.started.wait()
    await archiver.close()  # SIGTERM: the put aborts

    assert gated.keys() == []
    stored = await parts.store.get(video.id)
    assert stored is not None and stored.outputs[0].archive is ArchiveState.PENDING
    # Its lease was released: another replica takes the copy over at once.
    assert await parts.coordinators[1].holder(archive_lease(video.id)) is None


async def test_the_recovery_scan_finds_the_copies_left_undone(parts: Parts) -> None:
    videos = [await parts.completed_video() for _ in range(3)]
    archiver = parts.archiver(scan_interval=3600.0)
    await archiver.start()  # its first scan runs now: nobody called the hook for these
    try:
        async with asyncio.timeout(BOUND):
            while archiver.archived < len(videos):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await archiver.close()
    assert await parts.store.list_unarchived() == []


async def test_the_sweeper_deletes_what_retention_ended_and_keeps_the_record(parts: Parts) -> None:
    video = await parts.completed_video()
    kept = await parts.completed_video()
    saved = await parts.archiver(retention=0.2).archive_video(video.id)
    await parts.archiver(retention=3600.0).archive_video(kept.id)
    assert saved is not None and saved.expire_time is not None
    sweeper = RetentionSweeper(parts.store, parts.archive, parts.coordinators[0], announce=parts.announce)

    await asyncio.sleep(0.3)
    assert await sweeper.sweep() == 1

    stored = await parts.store.get(video.id)
    assert stored is not None and stored.status is VideoStatus.COMPLETED
    assert stored.outputs[0].archive is ArchiveState.EXPIRED
    assert stored.expire_time == saved.expire_time and stored.expire_time < utcnow()
    assert await parts.archive.size(archive_key(video.id, 0)) is None
    assert await parts.archive.size(archive_key(kept.id, 0)) == OUTPUT_SIZE
    assert await sweeper.sweep() == 0  # idempotent


async def test_the_sweeper_leaves_a_video_another_replica_holds(parts: Parts) -> None:
    video = await parts.completed_video()
    await parts.archiver(retention=0.05).archive_video(video.id)
    await asyncio.sleep(0.1)
    assert await parts.coordinators[1].acquire(archive_lease(video.id))
    sweeper = RetentionSweeper(parts.store, parts.archive, parts.coordinators[0], announce=parts.announce)
    assert await sweeper.sweep() == 0
    assert await parts.archive.size(archive_key(video.id, 0)) == OUTPUT_SIZE


async def test_an_archive_error_is_not_swallowed_by_the_sweeper_pass(parts: Parts) -> None:
    video = await parts.completed_video()
    await parts.archiver(retention=0.05).archive_video(video.id)
    await asyncio.sleep(0.1)
    parts.archive.fail_puts = True  # deletes fail too
    sweeper = RetentionSweeper(parts.store, parts.archive, parts.coordinators[0], announce=parts.announce)
    with pytest.raises(errors.ArchiveUnavailable):
        await sweeper.sweep()
    stored = await parts.store.get(video.id)
    assert stored is not None and stored.outputs[0].archive is ArchiveState.ARCHIVED  # not recorded EXPIRED
    parts.archive.fail_puts = False
    assert await sweeper.sweep() == 1


# -- StreamContent reads the archive first (services/content.py) -----------------------------------------


@dataclass
class Relay:
    content: ContentRelay
    tracker: TaskTracker


@pytest.fixture
async def relay(parts: Parts) -> AsyncIterator[Relay]:
    tracker = TaskTracker(
        parts.store,
        lambda record, deadline: parts.runway.get_task(
            record.upstream_id, key=record.runway_key, deadline=deadline
        ),
        coordinator=parts.coordinators[0],
        poll_interval=0.1,
    )
    videos = Videos(parts.store, parts.runway, tracker)
    try:
        yield Relay(ContentRelay(videos, parts.runway, chunk_size=256 * 1024, archive=parts.archive), tracker)
    finally:
        await tracker.close()


async def read(
    relay: Relay, record: VideoRecord, *, offset: int = 0, limit: int = 0
) -> tuple[int | None, bytes]:
    prepared = await relay.content.prepare(
        record.owner, record.id, index=0, offset=offset, limit=limit, deadline=None
    )
    total: int | None = None
    data = bytearray()
    position = offset
    async for item in relay.content.stream(prepared, index=0, offset=offset, limit=limit, deadline=None):
        if isinstance(item, ContentHeader):
            total = item.total_size
        else:
            assert item.offset == position  # in order, no gap, no overlap
            data += item.data
            position += len(item.data)
    return total, bytes(data)


def runway_requests(sim: RunwaySimulator) -> int:
    return sum(sim.request_counts.values())


async def test_an_archived_output_is_read_from_the_archive_with_no_request_to_runway(
    parts: Parts, relay: Relay
) -> None:
    video = await parts.completed_video()
    original = parts.sim.output_bytes(video.upstream_id)
    archived = await parts.archiver().archive_video(video.id)
    assert archived is not None
    assert parts.sim.forget_task(video.upstream_id)
    before = runway_requests(parts.sim)

    assert await read(relay, archived) == (OUTPUT_SIZE, original)
    assert await read(relay, archived, offset=100, limit=1000) == (OUTPUT_SIZE, original[100:1100])
    assert await read(relay, archived, offset=OUTPUT_SIZE - 3, limit=1000) == (OUTPUT_SIZE, original[-3:])
    assert await read(relay, archived, offset=OUTPUT_SIZE) == (OUTPUT_SIZE, b"")
    with pytest.raises(errors.OutOfRange):
        await read(relay, archived, offset=OUTPUT_SIZE + 1)
    assert runway_requests(parts.sim) == before


async def test_an_archived_object_that_cannot_be_read_is_relayed_from_runway(
    parts: Parts, relay: Relay
) -> None:
    video = await parts.completed_video()
    original = parts.sim.output_bytes(video.upstream_id)
    archived = await parts.archiver().archive_video(video.id)
    assert archived is not None

    await parts.archive.delete(archive_key(video.id, 0))  # missing: another replica's view, a lost object
    assert await read(relay, archived, offset=10) == (OUTPUT_SIZE, original[10:])
    assert outputs_served(parts.sim) == 2  # the archiver's copy, then this relay

    parts.archive.fail_reads = True  # the archive is down
    assert await read(relay, archived, limit=5000) == (OUTPUT_SIZE, original[:5000])
    assert outputs_served(parts.sim) == 3


async def test_archived_reads_grow_their_messages_within_the_service_wide_budget(
    parts: Parts, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule itself is tested with given takes (test_message_sizes.py); here its wiring: an archived read
    with every reader fast (FAST_RATE 1 byte/s, no RAMP) grows its messages past the chunk size while it
    holds the budget's place, and gives the place back when it ends, also when the caller goes away."""
    monkeypatch.setattr(message_sizes, "FAST_RATE", 1)
    monkeypatch.setattr(message_sizes, "RAMP", 0)
    video = await parts.completed_video()
    original = parts.sim.output_bytes(video.upstream_id)
    archived = await parts.archiver().archive_video(video.id)
    assert archived is not None
    budget = relay.content._large_messages

    sizes = []
    async for item in relay.content.stream(archived, index=0, offset=0, limit=0, deadline=None):
        if not isinstance(item, ContentHeader):
            sizes.append(len(item.data))
            assert budget.in_use == (1 if len(sizes) > 1 else 0)
    assert sizes[:3] == [256 * 1024, 512 * 1024, 1024 * 1024] and sum(sizes) == len(original)
    assert budget.in_use == 0

    # Only `limit` streams get larger messages at once; the next stays at the chunk size.
    budget = LargeMessageBudget(limit=1)
    monkeypatch.setattr(relay.content, "_large_messages", budget)
    first = relay.content.stream(archived, index=0, offset=0, limit=0, deadline=None)
    second = relay.content.stream(archived, index=0, offset=0, limit=0, deadline=None)
    try:
        got_first = [len(i.data) async for i in _take(first, 3)]
        got_second = [len(i.data) async for i in _take(second, 3)]
        assert got_first == [256 * 1024, 512 * 1024, 1024 * 1024]
        assert got_second == [256 * 1024] * 3 and budget.in_use == 1
    finally:
        await first.aclose()  # a caller gone mid-stream: its place is given back at once
        await second.aclose()
    assert budget.in_use == 0


async def _take(items: AsyncIterator[Any], n: int) -> AsyncIterator[Any]:
    """The first `n` chunks (not the header) of a stream, leaving it open."""
    got = 0
    while got < n:
        item = await items.__anext__()
        if not isinstance(item, ContentHeader):
            got += 1
            yield item


class FailingMidRead(MemoryArchive):
    """Reads fail after `good` chunks (an archive that goes away mid-stream)."""

    good = 2

    @asynccontextmanager
    async def open_read(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[Any]:
        async with super().open_read(key, start=start, end=end) as out:
            archive = self
            inner = out.iter_sized  # what StreamContent reads with

            async def chunks(next_size: Callable[[], int]) -> AsyncIterator[bytes]:
                sent = 0
                async for chunk in inner(next_size):
                    if sent == archive.good:
                        raise errors.ArchiveUnavailable("the disk went away")
                    sent += 1
                    yield chunk

            out.iter_sized = chunks  # type: ignore[method-assign]
            yield out


async def test_an_archive_read_cut_midway_is_finished_from_runway_from_the_byte_reached(
    parts: Parts, relay: Relay
) -> None:
    failing = FailingMidRead()
    await failing.open()
    parts.archive = failing
    relay.content._archive = failing
    video = await parts.completed_video()
    original = parts.sim.output_bytes(video.upstream_id)
    archived = await parts.archiver().archive_video(video.id)
    assert archived is not None

    assert await read(relay, archived, offset=7) == (OUTPUT_SIZE, original[7:])
    assert outputs_served(parts.sim) == 2  # the copy, then the rest of this read


async def test_an_expired_output_is_failed_precondition_and_a_lost_one_gone(
    parts: Parts, relay: Relay
) -> None:
    video = await parts.completed_video()
    archived = await parts.archiver(retention=0.01).archive_video(video.id)
    assert archived is not None
    await asyncio.sleep(0.05)
    sweeper = RetentionSweeper(parts.store, parts.archive, parts.coordinators[0], announce=parts.announce)
    assert await sweeper.sweep() == 1
    with pytest.raises(errors.FailedPrecondition) as expired:
        await relay.content.prepare("alice", video.id, index=0, offset=0, limit=0, deadline=None)
    assert expired.value.reason == "VIDEO_OUTPUT_EXPIRED"

    gone = await parts.completed_video()
    assert parts.sim.forget_task(gone.upstream_id)
    assert await parts.archiver().archive_video(gone.id) is not None
    with pytest.raises(errors.FailedPrecondition) as lost:
        await relay.content.prepare("alice", gone.id, index=0, offset=0, limit=0, deadline=None)
    assert lost.value.reason == "VIDEO_OUTPUT_GONE"


async def test_a_sweep_leaves_a_video_alone_while_a_copy_here_holds_its_lease(parts: Parts) -> None:
    """The sweeper shares the archiver's leases (bootstrap): the coordinator would grant one process's
    lease to both, and the one that finished first would release the other's."""
    video = await parts.completed_video()
    archiver = parts.archiver(retention=0.05)
    await archiver.archive_video(video.id)
    await asyncio.sleep(0.1)  # retention over
    sweeper = RetentionSweeper(
        parts.store, parts.archive, parts.coordinators[0], announce=parts.announce, leases=archiver.leases
    )
    lease = archive_lease(video.id)
    assert await archiver.leases.acquire(lease)  # as a copy of another output would hold it
    assert await sweeper.sweep() == 0
    assert archiver.leases.holds(lease)  # not released under the copy
    await archiver.leases.release([lease])
    assert await sweeper.sweep() == 1
