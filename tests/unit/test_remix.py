"""The Remix use case (services/remix.py) on the shipped fakes: the in-memory store, provider and archive.

Pins the decisions made at this layer: the source is the caller's own COMPLETED video (NOT_FOUND /
FAILED_PRECONDITION otherwise), bad input costs nothing, a live output URL is sent as it is, a forgotten one
is uploaded from the archive (the temporary copy always removed), and a replayed request_id returns the same
video without a second create or upload. End to end (gRPC + the simulator): tests/integration/test_remix.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from videogen_server import errors
from videogen_server.archive.memory import MemoryArchive
from videogen_server.domain.generation import GenerateSpec, GenerationMode
from videogen_server.domain.remix import RemixSpec
from videogen_server.domain.video import ArchiveState, VideoRecord, VideoStatus, archive_key
from videogen_server.providers.memory import MemoryPlan, MemoryProvider
from videogen_server.services.remix import Remixes
from videogen_server.services.tracker import TaskTracker
from videogen_server.services.upload_keys import UploadKeys
from videogen_server.services.uploads import Uploads
from videogen_server.services.videos import Videos
from videogen_server.store import MemoryVideoStore
from videogen_server.store.local_coordinator import LocalCoordinator

GiB = 1024**3
ALICE, BOB = "alice", "bob"
SOURCE_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 300


@dataclass
class World:
    store: MemoryVideoStore
    provider: MemoryProvider
    archive: MemoryArchive
    videos: Videos
    remixes: Remixes
    spool: Path


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = MemoryVideoStore()
    await store.open()
    provider = MemoryProvider()
    archive = MemoryArchive()
    await archive.open()
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
    videos = Videos(store, provider, tracker)
    spool = tmp_path / "spool"
    spool.mkdir()
    try:
        yield World(
            store,
            provider,
            archive,
            videos,
            Remixes(
                videos,
                provider,
                archive,
                spool=Uploads(provider, spool, spool_limit=GiB, keys=UploadKeys(store)),
            ),
            spool,
        )
    finally:
        await tracker.close()
        await coordinator.close()
        await archive.close()
        await store.close()


async def completed(world: World, owner: str = ALICE) -> VideoRecord:
    video = await world.videos.generate(
        owner, GenerateSpec(model="gen4.5", prompt="a harbour"), deadline=None
    )
    world.provider.succeed(video.upstream_id, SOURCE_BYTES)
    done = await world.videos.get(owner, video.id, deadline=None)
    assert done.status is VideoStatus.COMPLETED
    return done


async def archived_and_forgotten(world: World, source: VideoRecord) -> None:
    """The archiver copied the output, then Runway forgot the task (its URL stops working with it)."""

    async def chunks() -> AsyncIterator[bytes]:
        yield SOURCE_BYTES

    await world.archive.put(archive_key(source.id, 0), chunks(), content_type="video/mp4")
    output = dataclasses.replace(
        source.outputs[0],
        archive=ArchiveState.ARCHIVED,
        size_bytes=len(SOURCE_BYTES),
        sha256=hashlib.sha256(SOURCE_BYTES).hexdigest(),
    )
    await world.store.save(source.replace(outputs=(output,)))
    world.provider.vanish(source.upstream_id)


def remix(source_id: str, request_id: str = "", prompt: str = "make it snow", **fields: object) -> RemixSpec:
    spec = GenerateSpec(model="aleph2", prompt=prompt, request_id=request_id, **fields)  # type: ignore[arg-type]
    return RemixSpec(source_id=source_id, index=0, spec=spec)


def sent_plan(world: World, record: VideoRecord) -> MemoryPlan:
    return world.provider.plans[record.upstream_id]


async def test_a_remix_of_a_video_runway_still_serves_sends_its_output_url(world: World) -> None:
    source = await completed(world)
    made = await world.remixes.remix(ALICE, remix(source.id), deadline=None)
    assert made.source_video_id == source.id and made.id != source.id
    assert made.mode is GenerationMode.VIDEO_TO_VIDEO and made.model == "aleph2"
    assert made.status is VideoStatus.QUEUED
    task = world.provider.tasks[source.upstream_id]
    assert sent_plan(world, made).spec.video_uri == task.outputs[0]  # the provider's own URL, as it is
    assert world.provider.calls["upload"] == 0
    # A normal video afterwards: it completes like any other.
    world.provider.succeed(made.upstream_id)
    done = await world.videos.get(ALICE, made.id, deadline=None)
    assert done.status is VideoStatus.COMPLETED and done.source_video_id == source.id


async def test_a_remix_of_a_video_runway_forgot_uploads_the_archived_copy(world: World) -> None:
    source = await completed(world)
    await archived_and_forgotten(world, source)
    made = await world.remixes.remix(ALICE, remix(source.id), deadline=None)
    uri = sent_plan(world, made).spec.video_uri
    assert uri.startswith("runway://") and world.provider.uploads[uri] == SOURCE_BYTES
    assert made.source_video_id == source.id and made.mode is GenerationMode.VIDEO_TO_VIDEO
    assert list(world.spool.iterdir()) == []  # the temporary copy is gone


async def test_an_archived_source_is_spooled_within_the_upload_spool_budget(world: World) -> None:
    # The copy on its way to Runway is an Upload spool file: it counts against VIDEOGEN_UPLOAD_SPOOL_BYTES.
    source = await completed(world)
    await archived_and_forgotten(world, source)
    world.remixes._spool.budget.limit = len(SOURCE_BYTES) - 1
    with pytest.raises(errors.ResourceExhausted) as info:
        await world.remixes.remix(ALICE, remix(source.id), deadline=None)
    assert info.value.reason == "UPLOAD_SPOOL_FULL"
    assert world.provider.calls["upload"] == 0 and list(world.spool.iterdir()) == []
    world.remixes._spool.budget.limit = len(SOURCE_BYTES)
    await world.remixes.remix(ALICE, remix(source.id), deadline=None)  # the request_id was freed
    assert world.remixes._spool.budget.used == 0


async def test_a_replayed_request_id_returns_the_same_video_without_another_create_or_upload(
    world: World,
) -> None:
    source = await completed(world)
    await archived_and_forgotten(world, source)
    first = await world.remixes.remix(ALICE, remix(source.id, request_id="r-1"), deadline=None)
    again = await world.remixes.remix(ALICE, remix(source.id, request_id="r-1"), deadline=None)
    assert again.id == first.id
    assert world.provider.calls["create"] == 2  # the source's and the remix's: one each
    assert world.provider.calls["upload"] == 1
    with pytest.raises(errors.AlreadyExists):  # the same key for another request
        await world.remixes.remix(ALICE, remix(source.id, request_id="r-1", prompt="rain"), deadline=None)


async def test_a_source_that_is_not_completed_is_a_failed_precondition(world: World) -> None:
    running = await world.videos.generate(ALICE, GenerateSpec(model="gen4.5", prompt="x"), deadline=None)
    with pytest.raises(errors.FailedPrecondition) as refused:
        await world.remixes.remix(ALICE, remix(running.id), deadline=None)
    assert refused.value.reason == "SOURCE_VIDEO_NOT_COMPLETED"
    assert world.provider.calls["create"] == 1  # the source's only


async def test_another_callers_video_is_not_found(world: World) -> None:
    source = await completed(world, owner=ALICE)
    with pytest.raises(errors.NotFound):
        await world.remixes.remix(BOB, remix(source.id), deadline=None)
    assert world.provider.calls["create"] == 1


async def test_invalid_input_costs_nothing_not_even_a_read_of_the_source_output(world: World) -> None:
    source = await completed(world)
    await archived_and_forgotten(world, source)
    reads = world.provider.calls["get_task"]
    with pytest.raises(errors.InvalidArgument):
        await world.remixes.remix(ALICE, remix(source.id, seconds=-1), deadline=None)
    with pytest.raises(errors.InvalidArgument) as bad_index:
        await world.remixes.remix(ALICE, dataclasses.replace(remix(source.id), index=1), deadline=None)
    assert [v.field for v in bad_index.value.violations] == ["index"]
    assert world.provider.calls["upload"] == 0 and world.provider.calls["create"] == 1
    assert world.provider.calls["get_task"] == reads  # a terminal source is read from its record
    assert await world.store.list_unfinished() == []


async def test_a_forgotten_output_without_an_archived_copy_is_gone_and_frees_the_request_id(
    world: World,
) -> None:
    source = await completed(world)
    world.provider.vanish(source.upstream_id)
    for _ in range(2):  # the failed attempt left no claim behind: the same request_id fails the same way
        with pytest.raises(errors.FailedPrecondition) as refused:
            await world.remixes.remix(ALICE, remix(source.id, request_id="r-2"), deadline=None)
        assert refused.value.reason == "VIDEO_OUTPUT_GONE"
    assert world.provider.calls["create"] == 1 and await world.store.list_unfinished() == []


async def test_a_source_whose_retention_ended_is_expired(world: World) -> None:
    source = await completed(world)
    await archived_and_forgotten(world, source)
    stored = await world.store.get(source.id)
    assert stored is not None
    gone = dataclasses.replace(stored.outputs[0], archive=ArchiveState.EXPIRED)
    await world.store.save(stored.replace(outputs=(gone,)))
    with pytest.raises(errors.FailedPrecondition) as refused:
        await world.remixes.remix(ALICE, remix(source.id), deadline=None)
    assert refused.value.reason == "VIDEO_OUTPUT_EXPIRED"


async def test_a_failed_upload_removes_the_temporary_copy_and_the_claim(world: World) -> None:
    source = await completed(world)
    await archived_and_forgotten(world, source)
    world.provider.fail_next("upload", errors.UpstreamUnavailable("storage down"))
    with pytest.raises(errors.UpstreamUnavailable):
        await world.remixes.remix(ALICE, remix(source.id, request_id="r-3"), deadline=None)
    assert list(world.spool.iterdir()) == []
    assert world.provider.calls["create"] == 1 and await world.store.list_unfinished() == []
    made = await world.remixes.remix(ALICE, remix(source.id, request_id="r-3"), deadline=None)
    assert made.source_video_id == source.id  # the retry with the same key goes through


async def test_the_fingerprint_is_the_requests_not_the_resolved_sources() -> None:
    a = remix("11111111-1111-4111-8111-111111111111", request_id="k")
    assert a.fingerprint() == remix("11111111-1111-4111-8111-111111111111", request_id="k").fingerprint()
    assert a.fingerprint() != dataclasses.replace(a, index=1).fingerprint()
    assert a.fingerprint() != remix("22222222-2222-4222-8222-222222222222", request_id="k").fingerprint()
    assert a.fingerprint() != a.spec.fingerprint()  # never equal to a Generate's
