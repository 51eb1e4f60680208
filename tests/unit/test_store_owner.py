"""An owner-scoped `get` (issue 8, item 9c): another owner's video is a miss through the same work as an
unknown id, whatever the terminal-record cache holds; the owner's own finished video stays a cache hit.
The owner scoping runs on every store engine; the cost of a miss is measured on SQLite's statements."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_engines import ENGINES, new_store
from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.observability.metrics import Metrics
from videogen_server.services.ports import VideoStore
from videogen_server.store import SqliteVideoStore

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VideoStore]:
    s = new_store(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


async def finished(store: VideoStore, owner: str) -> VideoRecord:
    now = utcnow()
    record = VideoRecord(
        id=str(uuid.uuid4()),
        owner=owner,
        mode=GenerationMode.TEXT_TO_VIDEO,
        model="gen4.5",
        prompt="a cat",
        seconds=5,
        size="1280x720",
        status=VideoStatus.CREATING,
        create_time=now,
        update_time=now,
    )
    await store.claim(record)
    return await store.save(record.replace(status=VideoStatus.COMPLETED, complete_time=now))


async def traced(store: SqliteVideoStore) -> list[str]:
    statements: list[str] = []

    def trace() -> None:
        store._db().set_trace_callback(lambda sql: statements.append(_UUID.sub("<id>", sql)))

    await store._run(trace)
    return statements


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # SQLite's statements are traced
@pytest.mark.parametrize("timed", [False, True], ids=["sqlite", "timed"])
async def test_another_owners_video_costs_what_an_unknown_id_costs(
    store: SqliteVideoStore, timed: bool
) -> None:
    theirs = await finished(store, "alice")
    api: VideoStore = Metrics("test").timed_store(store) if timed else store
    assert await api.get(theirs.id, owner="alice") == theirs  # cached by the save of its terminal state
    statements = await traced(store)

    assert await api.get(theirs.id, owner="alice") == theirs
    assert statements == []  # the owner's own finished video: answered from memory

    assert await api.get(theirs.id, owner="bob") is None
    other = list(statements)
    statements.clear()
    assert await api.get(str(uuid.uuid4()), owner="bob") is None
    assert other == statements == ["SELECT data FROM videos WHERE id = '<id>' AND owner = 'bob'"]


async def test_an_unscoped_get_still_reads_any_owner(store: VideoStore) -> None:
    theirs = await finished(store, "alice")
    assert await store.get(theirs.id) == theirs
