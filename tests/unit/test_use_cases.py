"""The use cases (services/) on the shipped fakes: the in-memory store and the in-memory provider.

No socket, no thread, no simulator: each test runs in milliseconds. The same behaviours are also checked end
to end through gRPC and the simulator (tests/integration, tests/faults); these pin them at the layer where
they are decided.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from videogen_server import errors
from videogen_server.domain.generation import GenerateSpec
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.providers.memory import MemoryProvider
from videogen_server.services.content import Chunk, ContentHeader, ContentRelay
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.videos import Videos
from videogen_server.store import MemoryVideoStore
from videogen_server.store.local_coordinator import LocalCoordinator

ALICE, BOB = "alice", "bob"


@dataclass
class World:
    store: MemoryVideoStore
    provider: MemoryProvider
    tracker: TaskTracker
    videos: Videos


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection or listen fails the test: these run on fakes only."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a use-case test opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "bind", refuse)
    yield


@pytest.fixture
async def world() -> AsyncIterator[World]:
    store = MemoryVideoStore()
    await store.open()
    provider = MemoryProvider()
    coordinator = LocalCoordinator()
    await coordinator.open()
    tracker = TaskTracker(
        store,
        lambda record, deadline: provider.get_task(
            record.upstream_id, key=record.runway_key, deadline=deadline
        ),
        coordinator=coordinator,
        poll_interval=0.05,
        freshness=1.0,
    )
    try:
        yield World(store, provider, tracker, Videos(store, provider, tracker))
    finally:
        await tracker.close()
        await coordinator.close()
        await store.close()


def spec(request_id: str = "", prompt: str = "a paper boat on a rainy street") -> GenerateSpec:
    return GenerateSpec(model="any-model", prompt=prompt, request_id=request_id)


# -- Generate -------------------------------------------------------------------------------------------


async def test_generate_records_the_providers_task(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    assert video.status is VideoStatus.QUEUED and video.upstream_id in world.provider.tasks
    assert await world.store.get(video.id) == video


async def test_the_same_request_id_returns_the_same_video_and_creates_once(world: World) -> None:
    first = await world.videos.generate(ALICE, spec("key-1"), deadline=None)
    again = await world.videos.generate(ALICE, spec("key-1"), deadline=None)
    assert again.id == first.id and world.provider.calls["create"] == 1


async def test_concurrent_duplicates_of_one_request_id_create_once(world: World) -> None:
    videos = await asyncio.gather(
        *(world.videos.generate(ALICE, spec("key-1"), deadline=None) for _ in range(5))
    )
    assert len({v.id for v in videos}) == 1 and world.provider.calls["create"] == 1


async def test_a_request_id_reused_for_another_request_is_refused_without_a_create(world: World) -> None:
    await world.videos.generate(ALICE, spec("key-1"), deadline=None)
    with pytest.raises(errors.AlreadyExists):
        await world.videos.generate(ALICE, spec("key-1", prompt="something else"), deadline=None)
    assert world.provider.calls["create"] == 1


async def test_request_ids_are_scoped_by_caller(world: World) -> None:
    mine = await world.videos.generate(ALICE, spec("key-1"), deadline=None)
    theirs = await world.videos.generate(BOB, spec("key-1"), deadline=None)
    assert mine.id != theirs.id and world.provider.calls["create"] == 2


async def test_a_create_that_surely_failed_frees_its_request_id(world: World) -> None:
    world.provider.fail_next("create", errors.UpstreamUnavailable("no connection"))
    with pytest.raises(errors.UpstreamUnavailable):
        await world.videos.generate(ALICE, spec("key-1"), deadline=None)
    video = await world.videos.generate(ALICE, spec("key-1"), deadline=None)
    assert video.status is VideoStatus.QUEUED and world.provider.calls["create"] == 2


async def test_a_create_of_unknown_outcome_is_closed_and_never_sent_again(world: World) -> None:
    world.provider.fail_next("create", errors.UpstreamOutcomeUnknown("no answer"))
    with pytest.raises(errors.UpstreamOutcomeUnknown):
        await world.videos.generate(ALICE, spec("key-1"), deadline=None)
    video = await world.videos.generate(ALICE, spec("key-1"), deadline=None)
    assert video.status is VideoStatus.FAILED and world.provider.calls["create"] == 1


async def test_invalid_input_costs_no_create(world: World) -> None:
    with pytest.raises(errors.InvalidArgument):
        await world.videos.generate(ALICE, GenerateSpec(model=""), deadline=None)
    assert world.provider.calls["create"] == 0 and await world.store.list_unfinished() == []


# -- Get / the tracker ----------------------------------------------------------------------------------


async def test_get_brings_a_running_video_up_to_date(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    world.provider.start(video.upstream_id, progress=0.42)
    seen = await world.videos.get(ALICE, video.id, deadline=None)
    assert seen.status is VideoStatus.IN_PROGRESS and seen.progress == 42


async def test_concurrent_gets_share_one_poll(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    world.provider.start(video.upstream_id, progress=0.5)
    seen = await asyncio.gather(*(world.videos.get(ALICE, video.id, deadline=None) for _ in range(20)))
    assert {r.progress for r in seen} == {50}
    assert world.provider.calls["get_task"] == 1
    # Within the freshness window the poll is reused; a finished video is served from the record.
    await world.videos.get(ALICE, video.id, deadline=None)
    assert world.provider.calls["get_task"] == 1


async def test_a_poll_that_finds_the_task_gone_ends_the_video(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    world.provider.vanish(video.upstream_id)
    seen = await world.videos.get(ALICE, video.id, deadline=None)
    assert seen.status is VideoStatus.CANCELLED and seen.error_code == "UPSTREAM_TASK_DELETED"
    stored = await world.store.get(video.id)
    assert stored is not None and stored.status is VideoStatus.CANCELLED


async def test_a_finished_video_is_read_from_the_record_without_asking_the_provider(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    world.provider.succeed(video.upstream_id)
    assert (await world.videos.get(ALICE, video.id, deadline=None)).status is VideoStatus.COMPLETED
    polls = world.provider.calls["get_task"]
    for _ in range(3):
        assert (await world.videos.get(ALICE, video.id, deadline=None)).status is VideoStatus.COMPLETED
    assert world.provider.calls["get_task"] == polls


async def test_another_callers_video_is_not_found(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    with pytest.raises(errors.NotFound):
        await world.videos.get(BOB, video.id, deadline=None)


async def test_watchers_see_every_change_until_the_end(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    seen: list[VideoRecord] = []

    async def watch() -> None:
        async for state in world.tracker.watch(video):
            seen.append(state)

    watcher = asyncio.create_task(watch())
    world.provider.start(video.upstream_id, progress=0.3)
    await asyncio.sleep(0.2)
    world.provider.succeed(video.upstream_id)
    await asyncio.wait_for(watcher, timeout=5)
    assert seen[0].status is VideoStatus.QUEUED
    assert VideoStatus.IN_PROGRESS in [s.status for s in seen]
    assert seen[-1].status is VideoStatus.COMPLETED


# -- Cancel ---------------------------------------------------------------------------------------------


async def test_cancel_of_a_running_video_cancels_the_task(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    world.provider.start(video.upstream_id)
    cancelled = await world.videos.cancel(ALICE, video.id, deadline=None)
    assert cancelled.status is VideoStatus.CANCELLED and world.provider.calls["cancel_task"] == 1
    again = await world.videos.cancel(ALICE, video.id, deadline=None)
    assert again.status is VideoStatus.CANCELLED and world.provider.calls["cancel_task"] == 1


async def test_cancel_of_a_finished_video_is_refused_and_deletes_nothing(world: World) -> None:
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    world.provider.succeed(video.upstream_id)
    with pytest.raises(errors.FailedPrecondition) as refused:
        await world.videos.cancel(ALICE, video.id, deadline=None)
    assert refused.value.reason == "VIDEO_ALREADY_FINISHED"
    assert world.provider.calls["cancel_task"] == 0 and video.upstream_id in world.provider.tasks


# -- StreamContent --------------------------------------------------------------------------------------


async def test_content_is_relayed_by_range(world: World) -> None:
    relay = ContentRelay(world.videos, world.provider, chunk_size=64 * 1024)
    data = bytes(range(256)) * 40
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    world.provider.succeed(video.upstream_id, data)
    record = await relay.prepare(ALICE, video.id, index=0, offset=100, limit=1000, deadline=None)
    items = [item async for item in relay.stream(record, index=0, offset=100, limit=1000, deadline=None)]
    header, *chunks = items
    assert isinstance(header, ContentHeader) and header.total_size == len(data)
    assert all(isinstance(c, Chunk) for c in chunks)
    assert b"".join(c.data for c in chunks if isinstance(c, Chunk)) == data[100:1100]


async def test_content_of_an_unfinished_video_is_a_failed_precondition(world: World) -> None:
    relay = ContentRelay(world.videos, world.provider, chunk_size=64 * 1024)
    video = await world.videos.generate(ALICE, spec(), deadline=None)
    with pytest.raises(errors.FailedPrecondition):
        await relay.prepare(ALICE, video.id, index=0, offset=0, limit=0, deadline=None)
