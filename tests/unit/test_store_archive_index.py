"""The archive's two store indexes (issue 11), as the store contract: `list_unarchived` (COMPLETED records
with an output still PENDING, oldest complete_time first: the archiver's recovery scan) and `list_expired`
(records with an ARCHIVED output whose expire_time has passed, oldest first: the retention sweeper). Each is
kept in the same atomic step as every claim, save and delete. Runs on every store engine (sqlite, memory, a
real redis-server); the engine's own checks (SQLite's query plan and migrations, two Redis clients) at the
end."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from store_engines import ENGINES, new_store, reopen
from videogen_server.domain.clock import format_time
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import ArchiveState, OutputInfo, VideoRecord, VideoStatus
from videogen_server.observability.metrics import Metrics
from videogen_server.services.ports import VideoStore
from videogen_server.store import SqliteVideoStore
from videogen_server.store.codec import encode_record
from videogen_server.store.redis import RedisVideoStore
from videogen_server.store.sqlite import _MIGRATIONS, SCHEMA_VERSION

INDEXED = ENGINES

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
P, A, L, X = ArchiveState.PENDING, ArchiveState.ARCHIVED, ArchiveState.LOST, ArchiveState.EXPIRED
SHA = "ab" * 32


@pytest.fixture(params=INDEXED)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VideoStore]:
    s = new_store(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


def out(index: int, state: ArchiveState = P) -> OutputInfo:
    if state is P:
        return OutputInfo(index, "video/mp4")
    if state is L:
        return OutputInfo(index, "video/mp4", archive=L, lost_reason="URL expired (403)")
    return OutputInfo(index, "video/mp4", 1000 + index, sha256=SHA, archive=state)


def video(status: VideoStatus = VideoStatus.CREATING, **changes: Any) -> VideoRecord:
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "owner": "alice",
        "mode": GenerationMode.TEXT_TO_VIDEO,
        "model": "gen4.5",
        "prompt": "a boat",
        "seconds": 5,
        "size": "1280x720",
        "status": status,
        "create_time": T0,
        "update_time": T0,
    }
    fields.update(changes)
    return VideoRecord(**fields)


def done(*outputs: OutputInfo, at: float = 0, expire: datetime | None = None, **changes: Any) -> VideoRecord:
    """A COMPLETED record, completed `at` minutes after T0."""
    when = T0 + timedelta(minutes=at)
    return video(
        VideoStatus.COMPLETED,
        outputs=outputs,
        complete_time=when,
        update_time=when,
        expire_time=expire if expire is not None else when + timedelta(hours=24),
        **changes,
    )


def ids(records: list[VideoRecord]) -> list[str]:
    return [r.id for r in records]


async def complete_through_saves(store: VideoStore, record: VideoRecord) -> VideoRecord:
    """`record` (COMPLETED) reached as a service does: claimed CREATING, saved QUEUED, then COMPLETED."""
    start = record.replace(status=VideoStatus.CREATING, outputs=(), complete_time=None, expire_time=None)
    await store.claim(start)
    await store.save(start.replace(status=VideoStatus.QUEUED, upstream_id="task"))
    return await store.save(record.replace(upstream_id="task"))


# -- list_unarchived -----------------------------------------------------------------------------------


async def test_unarchived_lists_completed_videos_with_a_pending_output_oldest_first(
    store: VideoStore,
) -> None:
    later = done(out(0), out(1), at=2)
    earlier = done(out(0, A), out(1), at=1)  # one output copied, one not yet
    not_listed = [
        video(),
        video(VideoStatus.IN_PROGRESS),
        video(VideoStatus.FAILED, complete_time=T0),
        video(VideoStatus.CANCELLED, complete_time=T0),
        done(at=0),  # no outputs: nothing to copy
        done(out(0, A), out(1, A), at=0),
        done(out(0, L), at=0),
        done(out(0, X), out(1, L), at=0),
    ]
    for record in (later, *not_listed, earlier):
        await store.claim(record)
    assert ids(await store.list_unarchived()) == [earlier.id, later.id]
    assert ids(await store.list_unarchived(limit=1)) == [earlier.id]


async def test_a_video_completed_through_saves_enters_the_unarchived_index(store: VideoStore) -> None:
    first = await complete_through_saves(store, done(out(0), at=3))
    second = await complete_through_saves(store, done(out(0), out(1), at=1))
    assert ids(await store.list_unarchived()) == [second.id, first.id]


async def test_a_video_leaves_the_unarchived_index_once_no_output_is_pending(store: VideoStore) -> None:
    stored = await complete_through_saves(store, done(out(0), out(1), at=1))
    partly = await store.save(stored.replace(outputs=(out(0, A),)))
    assert partly.outputs == (out(0, A), out(1))
    assert ids(await store.list_unarchived()) == [stored.id]  # output 1 still waits
    await store.save(stored.replace(outputs=(out(1, L),)))
    assert await store.list_unarchived() == []
    # A stale save (as a racing poller built the record: both PENDING) does not bring it back.
    await store.save(stored)
    assert await store.list_unarchived() == []
    async with reopen(store) as again:
        assert await again.list_unarchived() == []


async def test_unarchived_returns_the_stored_records(store: VideoStore) -> None:
    stored = await complete_through_saves(store, done(out(0), at=1, cost_credits=5.0))
    assert await store.list_unarchived() == [stored]
    async with reopen(store) as again:
        assert await again.list_unarchived() == [stored]


# -- list_expired --------------------------------------------------------------------------------------


async def test_expired_lists_archived_videos_past_their_expire_time_oldest_first(store: VideoStore) -> None:
    now = T0 + timedelta(days=30)
    oldest = done(out(0, A), expire=now - timedelta(days=2))
    at_now = done(out(0, A), out(1, L), expire=now)  # expire_time <= now: due
    middle = done(out(0, X), out(1, A), expire=now - timedelta(days=1))
    not_listed = [
        done(out(0, A), expire=now + timedelta(seconds=1)),  # not yet
        done(out(0), expire=now - timedelta(days=3)),  # Runway's URL expired; nothing archived to delete
        done(out(0, X), expire=now - timedelta(days=3)),  # deleted already
        done(out(0, L), expire=now - timedelta(days=3)),
        video(VideoStatus.FAILED, complete_time=T0, expire_time=now - timedelta(days=3)),
    ]
    for record in (at_now, *not_listed, middle, oldest):
        await store.claim(record)
    forever = await complete_through_saves(store, done(out(0), at=1))
    await store.save(forever.replace(outputs=(out(0, A),), expire_time=None))  # retention `forever`
    assert ids(await store.list_expired(now)) == [oldest.id, middle.id, at_now.id]
    assert ids(await store.list_expired(now, limit=2)) == [oldest.id, middle.id]
    assert await store.list_expired(now - timedelta(days=10)) == []
    assert ids(await store.list_expired(datetime(9999, 1, 1, tzinfo=UTC))) == [
        oldest.id,
        middle.id,
        at_now.id,
        not_listed[0].id,
    ]


async def test_archiving_puts_a_video_in_the_expiry_index_and_expiring_takes_it_out(
    store: VideoStore,
) -> None:
    stored = await complete_through_saves(store, done(out(0), out(1), at=0))
    retention_end = T0 + timedelta(days=30)
    after = retention_end + timedelta(seconds=1)
    assert await store.list_expired(after) == []
    archived = await store.save(stored.replace(outputs=(out(0, A), out(1, A)), expire_time=retention_end))
    assert archived.expire_time == retention_end
    assert await store.list_expired(retention_end - timedelta(seconds=1)) == []
    assert await store.list_expired(after) == [archived]
    # The sweeper deletes one output (saving the record it listed): the video stays due for the other.
    await store.save(archived.replace(outputs=(out(0, X),), update_time=after))
    assert ids(await store.list_expired(after)) == [stored.id]
    swept = await store.save(archived.replace(outputs=(out(1, X),), update_time=after))
    assert [o.archive for o in swept.outputs] == [X, X] and swept.expire_time == retention_end
    assert await store.list_expired(after) == []
    async with reopen(store) as again:
        assert await again.list_expired(after) == []
        assert await again.get(stored.id) == swept  # Get still shows the record


async def test_a_late_completed_save_leaves_the_expiry_as_archived(store: VideoStore) -> None:
    stored = await complete_through_saves(store, done(out(0), at=0))
    forever = await store.save(stored.replace(outputs=(out(0, A),), expire_time=None))
    late = stored.replace(expire_time=T0 + timedelta(hours=24), update_time=T0 + timedelta(minutes=5))
    assert (await store.save(late)).expire_time is None
    assert forever.expire_time is None
    assert await store.list_expired(datetime(9999, 1, 1, tzinfo=UTC)) == []


# -- both ----------------------------------------------------------------------------------------------


async def test_delete_takes_a_video_out_of_both_indexes(store: VideoStore) -> None:
    pending = done(out(0), at=0)
    archived = done(out(0, A), expire=T0)
    for record in (pending, archived):
        await store.claim(record)
        await store.delete(record.id)
    assert await store.list_unarchived() == []
    assert await store.list_expired(T0 + timedelta(days=1)) == []


async def test_concurrent_completions_are_all_indexed(store: VideoStore) -> None:
    records = [done(out(0), at=i) for i in range(30)]
    await asyncio.gather(*(complete_through_saves(store, r) for r in records))
    assert ids(await store.list_unarchived(limit=1000)) == ids(records)
    expiry = T0 + timedelta(days=1)
    await asyncio.gather(*(store.save(r.replace(outputs=(out(0, A),), expire_time=expiry)) for r in records))
    assert await store.list_unarchived() == []
    assert len(await store.list_expired(expiry, limit=1000)) == 30


async def test_the_timed_store_passes_the_listings_on(store: VideoStore) -> None:
    timed = Metrics("test").timed_store(store)
    record = done(out(0), at=0)
    await timed.claim(record)
    assert ids(await timed.list_unarchived(limit=5)) == [record.id]
    assert await timed.list_expired(T0, limit=5) == []


# -- SQLite: the indexes answer the listings, and older files are migrated -----------------------------


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_sqlite_lists_through_the_partial_indexes_in_order(store: SqliteVideoStore) -> None:
    def plan(sql: str, *args: object) -> str:
        return " | ".join(str(row[-1]) for row in store._db().execute("EXPLAIN QUERY PLAN " + sql, args))

    unarchived = await store._run(
        plan,
        "SELECT data FROM videos WHERE unarchived_since IS NOT NULL ORDER BY unarchived_since, rowid LIMIT ?",
        10,
    )
    expired = await store._run(
        plan,
        "SELECT data FROM videos WHERE archived_until <= ? ORDER BY archived_until, rowid LIMIT ?",
        "2025-01-01T00:00:00.000000+00:00",
        10,
    )
    # The index, and no sort afterwards (a "TEMP B-TREE" would mean reading every match first).
    assert "videos_unarchived" in unarchived and "TEMP B-TREE" not in unarchived, unarchived
    assert "videos_archived_until" in expired and "TEMP B-TREE" not in expired, expired
    # And those are the statements the engine runs.
    statements: list[str] = []
    await store._run(lambda: store._db().set_trace_callback(statements.append))
    await store.list_unarchived()
    await store.list_expired(T0)
    assert [s.split(" LIMIT")[0] for s in statements] == [
        "SELECT data FROM videos WHERE unarchived_since IS NOT NULL ORDER BY unarchived_since, rowid",
        "SELECT data FROM videos WHERE archived_until <= '2025-03-01T12:00:00.000000+00:00'"
        " ORDER BY archived_until, rowid",
    ]


def _old_file(path: Path, version: int, records: list[VideoRecord]) -> None:
    """A data file as the server at schema `version` left it: its migrations, and rows written by its codec
    (outputs without the archive keys)."""
    with closing(sqlite3.connect(path)) as conn:
        for step in _MIGRATIONS[:version]:
            for statement in step:
                assert isinstance(statement, str)
                conn.execute(statement)
        for r in records:
            data = json.loads(encode_record(r))
            data["outputs"] = [
                {"index": o["index"], "content_type": o["content_type"], "size_bytes": o["size_bytes"]}
                for o in data["outputs"]
            ]
            conn.execute(
                "INSERT INTO videos (id, owner, request_id, status, updated_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (r.id, r.owner, r.request_id, r.status.value, format_time(r.update_time), json.dumps(data)),
            )
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()


@pytest.mark.parametrize("version", [1, 2])
async def test_sqlite_migrates_an_older_file_and_indexes_its_completed_videos(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "old.sqlite3"
    newer = done(OutputInfo(0, "video/mp4", 512), OutputInfo(1), at=5)
    older = done(OutputInfo(0, "video/mp4"), at=1)
    others = [done(at=0), video(VideoStatus.IN_PROGRESS), video(VideoStatus.FAILED, complete_time=T0)]
    _old_file(path, version, [newer, *others, older])
    store = SqliteVideoStore(path)
    await store.open()
    try:
        version = await store._run(lambda: store._db().execute("PRAGMA user_version").fetchone()[0])
        assert version == SCHEMA_VERSION
        # Their outputs were never copied: PENDING, listed for the archiver, oldest first.
        assert await store.list_unarchived() == [older, newer]
        assert await store.list_expired(datetime(9999, 1, 1, tzinfo=UTC)) == []
        assert (await store.get(newer.id)) == newer
        # And from here on, saves keep the new columns.
        archived = await store.save(newer.replace(outputs=(out(0, A), out(1, A)), expire_time=T0))
        assert await store.list_unarchived() == [older]
        assert await store.list_expired(T0) == [archived]
        assert len(await store.list_unfinished()) == 1
    finally:
        await store.close()
    async with SqliteVideoStore(path) as again:  # opening a migrated file again changes nothing
        assert ids(await again.list_unarchived()) == [older.id]


# -- Redis: two clients, and the sorted sets are what the listings read --------------------------------


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_two_clients_archiving_outputs_concurrently_keep_one_index(
    store: RedisVideoStore,
) -> None:
    # Two replicas record the copies of different outputs of the same videos at once (the merge path under
    # WATCH/MULTI); each video must end archived, out of the unarchived index, in the expiring one.
    other = RedisVideoStore(store.url, prefix=store.prefix)
    await other.open()
    try:
        records = [done(out(0), out(1), at=i) for i in range(10)]
        await asyncio.gather(*(complete_through_saves(store, r) for r in records))
        assert ids(await other.list_unarchived()) == ids(records)
        expiry = T0 + timedelta(days=30)
        await asyncio.gather(
            *(
                s.save(r.replace(outputs=(out(i, A),), expire_time=expiry))
                for r in records
                for i, s in enumerate((store, other))
            ),
            *(other.save(r) for r in records),  # stale saves racing in: they must not bring anything back
        )
        for s in (store, other):
            assert await s.list_unarchived() == []
            listed = await s.list_expired(expiry, limit=100)
            assert sorted(ids(listed)) == sorted(ids(records))
            assert all([o.archive for o in r.outputs] == [A, A] for r in listed)
        client = store._client
        assert client is not None
        assert await client.zcard(f"{store.prefix}unarchived") == 0
        assert await client.zcard(f"{store.prefix}expiring") == 10
        await asyncio.gather(*(other.delete(r.id) for r in records))
        assert await client.zcard(f"{store.prefix}expiring") == 0
    finally:
        await other.close()


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_lists_from_the_sorted_sets_not_the_records(store: RedisVideoStore) -> None:
    pending = await complete_through_saves(store, done(out(0), at=1))
    archived = done(out(0, A), expire=T0)
    await store.claim(archived)
    client = store._client
    assert client is not None
    assert (
        await client.zscore(f"{store.prefix}unarchived", pending.id)
        == (T0 + timedelta(minutes=1)).timestamp()
    )
    assert await client.zscore(f"{store.prefix}expiring", archived.id) == T0.timestamp()
    # Take the entries out by hand: the records are still there, and no longer listed.
    await client.zrem(f"{store.prefix}unarchived", pending.id)
    await client.zrem(f"{store.prefix}expiring", archived.id)
    assert await store.list_unarchived() == [] and await store.list_expired(T0) == []
    assert await store.get(pending.id) == pending


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_sqlite_lists_from_the_index_columns_not_the_records(store: SqliteVideoStore) -> None:
    await complete_through_saves(store, done(out(0), at=1))
    await store.claim(done(out(0, A), expire=T0))
    await store._run(
        lambda: store._db().execute("UPDATE videos SET unarchived_since = NULL, archived_until = NULL")
    )
    assert await store.list_unarchived() == [] and await store.list_expired(T0) == []


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_indexes_videos_written_before_the_indexes_existed_once(store: RedisVideoStore) -> None:
    pending = await complete_through_saves(store, done(out(0), at=2))
    archived = done(out(0, A), expire=T0)
    unfinished = video(VideoStatus.IN_PROGRESS)
    for record in (archived, unfinished):
        await store.claim(record)
    client = store._client
    assert client is not None
    # Data as the previous version left it: no archive indexes, no marker.
    await client.delete(
        f"{store.prefix}unarchived", f"{store.prefix}expiring", f"{store.prefix}archive-index:ready"
    )
    assert await store.list_unarchived() == []
    again = RedisVideoStore(store.url, prefix=store.prefix)
    await again.open()  # fills them from the records, once
    try:
        assert await again.list_unarchived() == [pending]
        assert await again.list_expired(T0) == [archived]
    finally:
        await again.close()
    # Once per data set: an entry taken out by hand is not put back by the next start.
    await client.zrem(f"{store.prefix}unarchived", pending.id)
    third = RedisVideoStore(store.url, prefix=store.prefix)
    await third.open()
    try:
        assert await third.list_unarchived() == []
    finally:
        await third.close()
