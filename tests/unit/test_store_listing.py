"""List's store contract (issue 12): `list_page` walks one owner's index newest first (create_time, then id,
both descending), strictly after a cursor, filtered by status (QUEUED also matches CREATING) and model, with
a bounded scan; `secret` is made once and then the same for every store on the data. Runs on every engine
(sqlite, memory, a real redis-server); each engine's own checks (SQLite's plan and migration, Redis's fill
of older data and its sorted set) at the end."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from store_engines import ENGINES, new_store, reopen
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.listing import ListCursor, ListPage, ListQuery, cursor_of
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.observability.metrics import Metrics
from videogen_server.services.ports import VideoStore
from videogen_server.store import SqliteVideoStore
from videogen_server.store.codec import encode_record
from videogen_server.store.redis import RedisVideoStore
from videogen_server.store.sqlite import SCHEMA_VERSION

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EVERYTHING = ListQuery()


@pytest.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VideoStore]:
    s = new_store(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


def video(
    minute: float, owner: str = "alice", status: VideoStatus = VideoStatus.QUEUED, **changes: Any
) -> VideoRecord:
    at = T0 + timedelta(minutes=minute)
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "owner": owner,
        "mode": GenerationMode.TEXT_TO_VIDEO,
        "model": "gen4.5",
        "prompt": "a boat",
        "seconds": 5,
        "size": "1280x720",
        "status": status,
        "create_time": at,
        "update_time": at,
    }
    fields.update(changes)
    return VideoRecord(**fields)


def ids(records: list[VideoRecord]) -> list[str]:
    return [r.id for r in records]


def newest_first(records: list[VideoRecord]) -> list[str]:
    return ids(sorted(records, key=lambda r: (r.create_time, r.id), reverse=True))


async def walk(store: VideoStore, owner: str, query: ListQuery, limit: int, **kw: Any) -> list[ListPage]:
    """Every page of `owner`'s listing, resuming as the use case does."""
    pages: list[ListPage] = []
    after: ListCursor | None = None
    while True:
        page = await store.list_page(owner, query, after=after, limit=limit + 1, **kw)
        if len(page.records) > limit:
            page = ListPage(page.records[:limit])
            after = cursor_of(page.records[-1])
        else:
            after = page.scanned_to
        pages.append(page)
        if after is None:
            return pages


async def test_lists_the_owners_videos_newest_first_then_by_id_and_no_other_owners(store: VideoStore) -> None:
    mine = [video(m) for m in (3, 1, 2, 5, 4)]
    # Three created in the same microsecond: their ids decide, descending.
    mine += [video(6) for _ in range(3)]
    theirs = [video(m, owner="bob") for m in range(7)]
    for r in [*theirs, *mine]:
        await store.claim(r)
    page = await store.list_page("alice", EVERYTHING, after=None, limit=100)
    assert ids(page.records) == newest_first(mine) and page.scanned_to is None
    assert ids((await store.list_page("bob", EVERYTHING, after=None, limit=100)).records) == newest_first(
        theirs
    )
    assert (await store.list_page("carol", EVERYTHING, after=None, limit=100)).records == []
    # Strictly after a cursor, at most `limit`.
    order = newest_first(mine)
    third = next(r for r in mine if r.id == order[2])
    after = await store.list_page("alice", EVERYTHING, after=cursor_of(third), limit=2)
    assert ids(after.records) == order[3:5] and after.scanned_to is None
    # A cursor need not name a stored video (it may have been deleted): a position in the order.
    gone = ListCursor(T0 + timedelta(minutes=3, seconds=30), "ffffffff-0000-0000-0000-000000000000")
    assert ids((await store.list_page("alice", EVERYTHING, after=gone, limit=10)).records) == order[5:]


async def test_pages_neither_skip_nor_repeat_while_videos_are_created_between_them(store: VideoStore) -> None:
    first = [video(m) for m in range(25)]
    for r in first:
        await store.claim(r)
    page1 = await store.list_page("alice", EVERYTHING, after=None, limit=10)
    for m in range(30, 35):  # newer: before the first page in the order, so never on a later one
        await store.claim(video(m))
    page2 = await store.list_page("alice", EVERYTHING, after=cursor_of(page1.records[-1]), limit=10)
    page3 = await store.list_page("alice", EVERYTHING, after=cursor_of(page2.records[-1]), limit=10)
    listed = ids(page1.records) + ids(page2.records) + ids(page3.records)
    assert [len(p.records) for p in (page1, page2, page3)] == [10, 10, 5]
    assert listed == newest_first(first)


async def test_filters_by_status_as_callers_see_it_and_by_model(store: VideoStore) -> None:
    creating = video(1, status=VideoStatus.CREATING)
    queued = video(2, status=VideoStatus.QUEUED)
    running = video(3, status=VideoStatus.IN_PROGRESS, model="gen4_turbo")
    done = video(4, status=VideoStatus.COMPLETED, model="gen4_turbo")
    failed = video(5, status=VideoStatus.FAILED)
    bobs = video(6, owner="bob", status=VideoStatus.QUEUED)
    for r in (creating, queued, running, done, failed, bobs):
        await store.claim(r)

    async def listed(query: ListQuery) -> list[str]:
        return ids((await store.list_page("alice", query, after=None, limit=10)).records)

    assert await listed(ListQuery(status=VideoStatus.QUEUED)) == [queued.id, creating.id]
    assert await listed(ListQuery(status=VideoStatus.COMPLETED)) == [done.id]
    assert await listed(ListQuery(model="gen4_turbo")) == [done.id, running.id]
    assert await listed(ListQuery(model="gen4.5")) == [failed.id, queued.id, creating.id]
    assert await listed(ListQuery(status=VideoStatus.IN_PROGRESS, model="gen4_turbo")) == [running.id]
    assert await listed(ListQuery(status=VideoStatus.IN_PROGRESS, model="gen4.5")) == []
    assert await listed(ListQuery(model="nope")) == []
    # The status as it is now: saves move a video between filters (the index itself never changes).
    await store.save(queued.replace(status=VideoStatus.IN_PROGRESS, update_time=T0 + timedelta(hours=1)))
    await store.save(creating.replace(status=VideoStatus.FAILED, update_time=T0 + timedelta(hours=1)))
    assert await listed(ListQuery(status=VideoStatus.QUEUED)) == []
    assert await listed(ListQuery(status=VideoStatus.IN_PROGRESS)) == [running.id, queued.id]
    assert await listed(ListQuery(status=VideoStatus.FAILED)) == [failed.id, creating.id]
    async with reopen(store) as again:
        got = await again.list_page("alice", ListQuery(status=VideoStatus.FAILED), after=None, limit=10)
        assert ids(got.records) == [failed.id, creating.id]
        assert got.records[1].status is VideoStatus.FAILED


async def test_a_filter_that_matches_little_is_walked_within_the_scan_budget(store: VideoStore) -> None:
    rare = [video(m, status=VideoStatus.COMPLETED) for m in (0, 7)]
    others = [video(m) for m in (1, 2, 3, 4, 5, 6, 8, 9)]
    for r in [*rare, *others]:
        await store.claim(r)
    query = ListQuery(status=VideoStatus.COMPLETED)
    # Budget 3: minutes 9, 8, 7 examined (7 matches), the walk stops with entries left, and says where.
    page = await store.list_page("alice", query, after=None, limit=3, scan_limit=3)
    assert ids(page.records) == [rare[1].id]
    assert page.scanned_to == cursor_of(rare[1])  # minute 7, the last examined
    # Each page examines at most 3 (9-7, 6-4, 3-1, 0); together they find both, in order, and only the
    # last page has no resume point.
    pages = await walk(store, "alice", query, 2, scan_limit=3)
    assert [ids(p.records) for p in pages] == [[rare[1].id], [], [], [rare[0].id]]
    assert pages[-1].scanned_to is None
    # A budget that ends exactly at the end of the index: no resume point (nothing left).
    last = await store.list_page("alice", query, after=cursor_of(others[0]), limit=3, scan_limit=1)
    assert ids(last.records) == [rare[0].id] and last.scanned_to is None


async def test_a_deleted_video_leaves_the_listing(store: VideoStore) -> None:
    keep, drop = video(1, request_id="k1"), video(2, request_id="k2")
    for r in (keep, drop):
        await store.claim(r)
    await store.delete(drop.id)
    assert ids((await store.list_page("alice", EVERYTHING, after=None, limit=10)).records) == [keep.id]
    # Its request_id is free again, and the new video is listed once.
    again = video(3, request_id="k2")
    assert (await store.claim(again))[1]
    assert ids((await store.list_page("alice", EVERYTHING, after=None, limit=10)).records) == [
        again.id,
        keep.id,
    ]


async def test_a_replayed_claim_adds_nothing_to_the_listing(store: VideoStore) -> None:
    first = video(1, request_id="same")
    await store.claim(first)
    stored, inserted = await store.claim(video(2, request_id="same"))
    assert not inserted and stored.id == first.id
    assert ids((await store.list_page("alice", EVERYTHING, after=None, limit=10)).records) == [first.id]


async def test_the_secret_is_made_once_and_kept(store: VideoStore) -> None:
    one = await store.secret("list-page-token")
    assert isinstance(one, bytes) and len(one) == 32
    assert await store.secret("list-page-token") == one
    other = await store.secret("another")
    assert other != one and len(other) == 32
    async with reopen(store) as again:
        assert await again.secret("list-page-token") == one


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
async def test_concurrent_first_uses_of_a_secret_agree_across_stores(engine: str, tmp_path: Path) -> None:
    # Two stores on the same data (two replicas, or two processes on one file) racing to make it.
    first = new_store(engine, tmp_path)
    await first.open()
    second: VideoStore
    if isinstance(first, SqliteVideoStore):
        second = SqliteVideoStore(first.path)
    else:
        assert isinstance(first, RedisVideoStore)
        second = RedisVideoStore(first.url, prefix=first.prefix)
    await second.open()
    try:
        got = await asyncio.gather(*(s.secret("race") for _ in range(5) for s in (first, second)))
        assert len(set(got)) == 1
    finally:
        await second.close()
        await first.close()


async def test_the_metrics_wrapper_forwards_and_times_list_page() -> None:
    from videogen_server.store import MemoryVideoStore

    metrics = Metrics()
    inner = MemoryVideoStore()
    await inner.open()
    timed = metrics.timed_store(inner)
    r = video(1)
    await timed.claim(r)
    page = await timed.list_page("alice", EVERYTHING, after=None, limit=5, scan_limit=7)
    assert ids(page.records) == [r.id]
    assert await timed.secret("s") == await inner.secret("s")
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert 'videogen_store_operation_seconds_count{op="list_page"} 1.0' in text
    await inner.close()


# -- SQLite: the index serves the page, and older files migrate -----------------------------------------


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_sqlite_pages_are_read_from_the_owner_index_in_order(store: SqliteVideoStore) -> None:
    def plan(after: bool) -> list[str]:
        sql = "SELECT create_time, id, status, model, data FROM videos WHERE owner = ?"
        args: list[object] = ["alice"]
        if after:
            sql += " AND (create_time, id) < (?, ?)"
            args += ["2025-03-01T12:00:00.000000+00:00", "x"]
        sql += " ORDER BY create_time DESC, id DESC LIMIT ?"
        return [row[3] for row in store._db().execute("EXPLAIN QUERY PLAN " + sql, [*args, 10])]

    for after in (False, True):
        details = await store._run(plan, after)
        assert any("videos_owner_created" in d for d in details), details
        assert not any("TEMP B-TREE" in d for d in details), details  # no sort: the index's order


def _version_3_file(path: Path, records: list[VideoRecord]) -> None:
    """A data file as the schema-3 server left it: its migrations, and its columns only."""
    from videogen_server.store.sqlite import _MIGRATIONS

    with closing(sqlite3.connect(path)) as conn:
        for step in _MIGRATIONS[:3]:
            for statement in step:
                if callable(statement):
                    statement(conn)
                else:
                    conn.execute(statement)
        for r in records:
            conn.execute(
                "INSERT INTO videos (id, owner, request_id, status, updated_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (r.id, r.owner, r.request_id, r.status.value, r.update_time.isoformat(), encode_record(r)),
            )
        conn.execute("PRAGMA user_version = 3")
        conn.commit()


async def test_sqlite_migrates_a_version_3_file_and_lists_its_videos(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = [video(m, model="gen4_turbo" if m % 2 else "gen4.5") for m in range(6)]
    _version_3_file(path, [*old, video(9, owner="bob")])
    async with SqliteVideoStore(path) as store:
        version = await store._run(lambda: store._db().execute("PRAGMA user_version").fetchone()[0])
        assert version == SCHEMA_VERSION == 5
        assert ids((await store.list_page("alice", EVERYTHING, after=None, limit=10)).records) == (
            newest_first(old)
        )
        turbo = await store.list_page("alice", ListQuery(model="gen4_turbo"), after=None, limit=10)
        assert ids(turbo.records) == newest_first([r for r in old if r.model == "gen4_turbo"])
        new = video(10)
        await store.claim(new)
        assert ids((await store.list_page("alice", EVERYTHING, after=None, limit=1)).records) == [new.id]
    async with SqliteVideoStore(path) as again:  # opening a migrated file again changes nothing
        assert len((await again.list_page("alice", EVERYTHING, after=None, limit=10)).records) == 7


# -- Redis: the per-owner sorted set, and older data indexed once ---------------------------------------


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_lists_from_the_owner_index_not_the_records(store: RedisVideoStore) -> None:
    r = video(1)
    await store.claim(r)
    client = store._client
    assert client is not None
    key = f"{store.prefix}by-owner:5:alice"
    assert await client.zrange(key, 0, -1) == [f"2025-03-01T12:01:00.000000+00:00|{r.id}"]
    await client.zrem(key, f"2025-03-01T12:01:00.000000+00:00|{r.id}")
    assert (await store.list_page("alice", EVERYTHING, after=None, limit=10)).records == []
    assert await store.get(r.id) == r


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_indexes_videos_written_before_the_list_index_existed(store: RedisVideoStore) -> None:
    old = [video(m) for m in range(3)]
    for r in old:
        await store.claim(r)
    client = store._client
    assert client is not None
    # Data as the previous version left it: no owner index, no 'listed'/'model' fields, no marker.
    await client.delete(f"{store.prefix}by-owner:5:alice", f"{store.prefix}list-index:ready")
    for r in old:
        await client.hdel(f"{store.prefix}video:{r.id}", "listed", "model")
    assert (await store.list_page("alice", EVERYTHING, after=None, limit=10)).records == []
    again = RedisVideoStore(store.url, prefix=store.prefix)
    await again.open()  # fills it from the records, once
    try:
        assert ids((await again.list_page("alice", EVERYTHING, after=None, limit=10)).records) == (
            newest_first(old)
        )
        await again.delete(old[0].id)  # and the filled entries leave with their record
        page = await again.list_page("alice", ListQuery(model="gen4.5"), after=None, limit=10)
        assert ids(page.records) == newest_first(old[1:])
    finally:
        await again.close()
