"""Creates in flight, in-process and on fakes (issue 8, items 2 and 9a): a create whose caller left is waited
for by shutdown (`Videos.drain`), closed as outcome-unknown when the grace ends (`Videos.close`), and its
outcome is retrieved and logged once when no caller received it. The process-level versions (SIGTERM, restart)
are in tests/faults/test_shutdown_creates.py."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from videogen_server import errors
from videogen_server.domain.generation import GenerateSpec
from videogen_server.domain.task import UpstreamRequest
from videogen_server.domain.video import OUTCOME_UNKNOWN_CODE, VideoRecord, VideoStatus
from videogen_server.providers.memory import MemoryProvider
from videogen_server.providers.runway.wire import CreatedTask
from videogen_server.services.videos import Videos
from videogen_server.store import SqliteVideoStore, open_store

SPEC = GenerateSpec(model="gen4.5", prompt="a boat", seconds=5, request_id="key-1")


class SlowUpstream(MemoryProvider):
    """A provider whose create answers only when the test says so: with a task, or with an error."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = asyncio.Event()
        self.answer: asyncio.Future[CreatedTask] = asyncio.get_running_loop().create_future()
        self.posts = 0

    async def create(self, plan: UpstreamRequest, *, deadline: float | None = None) -> CreatedTask:  # type: ignore[override]
        self.posts += 1
        self.sent.set()
        return await asyncio.shield(self.answer)

    async def get_task(self, task_id: str, *, deadline: float | None = None):  # pragma: no cover - unused
        raise AssertionError("not used")

    async def cancel_task(self, task_id: str, *, deadline: float | None = None) -> bool:  # pragma: no cover
        raise AssertionError("not used")


class Tracker:
    """What a create needs of the tracker: its lease (granted: this process is the whole fleet) and the
    announcement of its outcome."""

    def __init__(self) -> None:
        self.published: list[VideoRecord] = []
        self.held: set[str] = set()

    async def hold(self, video_id: str) -> bool:
        self.held.add(video_id)
        return True

    async def let_go(self, video_id: str) -> None:
        self.held.discard(video_id)

    async def announce(self, record: VideoRecord) -> None:
        self.published.append(record)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteVideoStore]:
    store = open_store(tmp_path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def abandoned(videos: Videos, upstream: SlowUpstream) -> None:
    """A Generate whose POST is out, and whose caller then left."""
    caller = asyncio.create_task(videos.generate("alice", SPEC, deadline=None))
    await upstream.sent.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_drain_waits_for_a_create_whose_caller_left(store: SqliteVideoStore, caplog) -> None:
    upstream, tracker = SlowUpstream(), Tracker()
    videos = Videos(store, upstream, tracker)  # type: ignore[arg-type]
    await abandoned(videos, upstream)
    drained = asyncio.create_task(videos.drain(30.0))
    await asyncio.sleep(0.05)
    assert not drained.done()  # still waiting for Runway's answer
    task_id = str(uuid.uuid4())
    upstream.answer.set_result(CreatedTask(id=task_id))
    await asyncio.wait_for(drained, 5)
    (record,) = tracker.published
    assert record.status is VideoStatus.QUEUED and record.upstream_id == task_id
    assert await store.get(record.id) == record
    # The same request_id returns the recorded task; nothing is sent again.
    assert (await videos.generate("alice", SPEC, deadline=None)).upstream_id == task_id
    assert upstream.posts == 1
    await videos.close()


async def test_close_records_a_create_still_out_as_outcome_unknown(store: SqliteVideoStore, caplog) -> None:
    upstream = SlowUpstream()
    videos = Videos(store, upstream, Tracker())  # type: ignore[arg-type]
    await abandoned(videos, upstream)
    await videos.drain(0.05)  # the grace ends with the POST still out
    (creating,) = await store.list_unfinished()
    assert creating.status is VideoStatus.CREATING
    await videos.close()
    assert await store.list_unfinished() == []  # not left CREATING
    closed = await store.get(creating.id)
    assert (
        closed is not None
        and closed.status is VideoStatus.FAILED
        and closed.error_code == OUTCOME_UNKNOWN_CODE
    )
    assert "still in flight at shutdown" in caplog.text
    # After close no create starts (the store and Runway client are about to close).
    with pytest.raises(errors.UpstreamUnavailable):
        await videos.generate("alice", GenerateSpec(model="gen4.5", prompt="later", seconds=5), deadline=None)
    assert upstream.posts == 1


async def test_a_failure_nobody_heard_is_retrieved_and_logged_once(store: SqliteVideoStore, caplog) -> None:
    caplog.set_level(logging.INFO)
    upstream = SlowUpstream()
    videos = Videos(store, upstream, Tracker())  # type: ignore[arg-type]
    await abandoned(videos, upstream)
    upstream.answer.set_exception(errors.UpstreamOutcomeUnknown("no answer from Runway (test)"))
    async with asyncio.timeout(5):
        # The create closes its record as outcome-unknown (no event to wait on: nobody awaits it).
        while await store.list_unfinished():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)  # and ends
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    lines = [r for r in caplog.records if "create failed after its caller left" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING, caplog.text


async def test_a_failure_a_caller_received_is_not_logged_again(store: SqliteVideoStore, caplog) -> None:
    upstream = SlowUpstream()
    videos = Videos(store, upstream, Tracker())  # type: ignore[arg-type]
    caller = asyncio.create_task(videos.generate("alice", SPEC, deadline=None))
    await upstream.sent.wait()
    upstream.answer.set_exception(errors.UpstreamOutcomeUnknown("no answer from Runway (test)"))
    with pytest.raises(errors.UpstreamOutcomeUnknown):
        await caller
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    assert "create failed after its caller left" not in caplog.text
