"""The per-caller cap on unfinished videos (issue 10, "Per-caller quotas, fleet-wide"), as the store contract:
`claim(record, max_active=N)` inserts only while the owner has fewer than N videos not in a terminal state,
checked and inserted in one atomic step of the store (so several processes sharing it honour one count).
A replay of a taken request_id is never refused; a video that ends frees its slot; other owners are
unaffected. Runs on every store engine (sqlite, memory, a real redis-server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_engines import ENGINES, new_store
from videogen_server import errors
from videogen_server.domain.clock import utcnow
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.observability.metrics import Metrics
from videogen_server.services.ports import VideoStore
from videogen_server.store import SqliteVideoStore
from videogen_server.store.redis import RedisVideoStore
from videogen_server.store.sqlite import SCHEMA_VERSION


@pytest.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VideoStore]:
    s = new_store(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


def creating(owner: str, request_id: str = "") -> VideoRecord:
    now = utcnow()
    return VideoRecord(
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
        request_id=request_id,
    )


async def test_claim_past_the_cap_is_refused_and_writes_nothing(store: VideoStore) -> None:
    first, _ = await store.claim(creating("alice"), max_active=2)
    await store.save(first.replace(status=VideoStatus.QUEUED))  # QUEUED still counts
    await store.claim(creating("alice", "r2"), max_active=2)
    over = creating("alice", "r3")
    with pytest.raises(errors.ActiveLimitReached) as caught:
        await store.claim(over, max_active=2)
    assert caught.value.limit == 2
    assert await store.get(over.id) is None
    # The key was not taken: the same request_id can be claimed once a slot is free (below, another test).
    assert [r.owner for r in await store.list_unfinished()] == ["alice", "alice"]


async def test_the_cap_is_per_owner_and_off_without_max_active(store: VideoStore) -> None:
    for _ in range(2):
        await store.claim(creating("alice"), max_active=2)
    _, inserted = await store.claim(creating("bob"), max_active=2)
    assert inserted
    _, inserted = await store.claim(creating("alice"))  # no cap asked: none applied
    assert inserted


async def test_a_replay_of_a_taken_key_is_never_refused(store: VideoStore) -> None:
    original, _ = await store.claim(creating("alice", "same"), max_active=1)
    stored, inserted = await store.claim(creating("alice", "same"), max_active=1)
    assert (stored, inserted) == (original, False)
    # At the cap, a replay still returns the existing video; a new key does not get in.
    with pytest.raises(errors.ActiveLimitReached):
        await store.claim(creating("alice", "other"), max_active=1)


@pytest.mark.parametrize("end", [VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELLED, "delete"])
async def test_a_finished_or_deleted_video_frees_its_slot(store: VideoStore, end: VideoStatus | str) -> None:
    first, _ = await store.claim(creating("alice", "r1"), max_active=1)
    with pytest.raises(errors.ActiveLimitReached):
        await store.claim(creating("alice", "r2"), max_active=1)
    if end == "delete":
        await store.delete(first.id)
    else:
        assert isinstance(end, VideoStatus)
        queued = await store.save(first.replace(status=VideoStatus.QUEUED, upstream_id="t1"))
        await store.save(queued.replace(status=end, complete_time=utcnow()))
    again = creating("alice", "r2")
    assert await store.claim(again, max_active=1) == (again, True)


async def test_a_terminal_save_through_the_merge_path_frees_the_slot(store: VideoStore) -> None:
    # A terminal record saved again with the same terminal status (the merge path) keeps the slot free,
    # and a stale non-terminal save of a terminal video does not take it back.
    first, _ = await store.claim(creating("alice"), max_active=1)
    done = await store.save(first.replace(status=VideoStatus.COMPLETED, complete_time=utcnow()))
    await store.save(done)
    await store.save(first.replace(status=VideoStatus.IN_PROGRESS))  # ignored: terminal is final
    _, inserted = await store.claim(creating("alice"), max_active=1)
    assert inserted


async def test_concurrent_claims_insert_exactly_the_cap(store: VideoStore) -> None:
    results = await asyncio.gather(
        *(store.claim(creating("alice", f"r{i}"), max_active=3) for i in range(10)),
        return_exceptions=True,
    )
    inserted = [r for r in results if isinstance(r, tuple) and r[1]]
    refused = [r for r in results if isinstance(r, errors.ActiveLimitReached)]
    assert (len(inserted), len(refused)) == (3, 7), results
    assert len(await store.list_unfinished()) == 3


async def test_the_timed_store_passes_the_cap_on(store: VideoStore) -> None:
    timed = Metrics("test").timed_store(store)
    await timed.claim(creating("alice"), max_active=1)
    with pytest.raises(errors.ActiveLimitReached):
        await timed.claim(creating("alice"), max_active=1)


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_two_redis_clients_share_one_count(store: RedisVideoStore) -> None:
    other = RedisVideoStore(store.url, prefix=store.prefix)
    await other.open()
    try:
        results = await asyncio.gather(
            *((store if i % 2 else other).claim(creating("alice", f"r{i}"), max_active=3) for i in range(10)),
            return_exceptions=True,
        )
        assert sum(1 for r in results if isinstance(r, tuple) and r[1]) == 3, results
        assert sum(1 for r in results if isinstance(r, errors.ActiveLimitReached)) == 7
    finally:
        await other.close()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_sqlite_counts_through_an_index(store: SqliteVideoStore) -> None:
    def plan() -> list[str]:
        return [
            str(row[-1])
            for row in store._db().execute(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM videos WHERE owner = ?"
                " AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
                ("alice",),
            )
        ]

    details = await store._run(plan)
    assert any("videos_owner_unfinished" in d for d in details), details


async def test_sqlite_migrates_a_version_1_file_and_counts_its_rows(tmp_path: Path) -> None:
    # A file written before the cap existed (schema 1): its unfinished videos count after the upgrade.
    path = tmp_path / "old.sqlite3"
    store = SqliteVideoStore(path)
    await store.open()
    await store.claim(creating("alice"))
    await store._run(lambda: store._db().execute("DROP INDEX IF EXISTS videos_owner_unfinished"))
    await store._run(lambda: store._db().execute("PRAGMA user_version = 1"))
    await store.close()
    again = SqliteVideoStore(path)
    await again.open()
    try:
        with pytest.raises(errors.ActiveLimitReached):
            await again.claim(creating("alice"), max_active=1)
        version = await again._run(lambda: again._db().execute("PRAGMA user_version").fetchone()[0])
        assert version == SCHEMA_VERSION
    finally:
        await again.close()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_sqlite_claim_without_a_cap_counts_nothing(store: SqliteVideoStore) -> None:
    # Generate with the cap off costs what it did: the one INSERT, no count.
    statements: list[str] = []
    await store._run(lambda: store._db().set_trace_callback(statements.append))
    await store.claim(creating("alice", "r1"))
    assert len(statements) == 1 and statements[0].startswith("INSERT"), statements
    statements.clear()
    await store.claim(creating("alice", "r2"), max_active=5)
    assert any("count(*)" in s for s in statements), statements


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_counts_unfinished_videos_written_before_the_counts_existed(
    store: RedisVideoStore,
) -> None:
    await store.claim(creating("alice"))
    # Data as an older version left it: no per-owner set, no marker.
    client = store._client
    assert client is not None
    await client.delete(f"{store.prefix}active:5:alice", f"{store.prefix}active:ready")
    again = RedisVideoStore(store.url, prefix=store.prefix)
    await again.open()  # fills the sets from the unfinished index, once
    try:
        with pytest.raises(errors.ActiveLimitReached):
            await again.claim(creating("alice"), max_active=1)
    finally:
        await again.close()


async def test_a_non_ascii_owner_gets_its_slot_back_after_a_delete(store: VideoStore) -> None:
    # Redis names the owner's set in Python (claim, save) and in Lua (delete, the fill on open); Lua's
    # string.len counts bytes, so Python must too, or a delete of "zoë"'s video leaves its id counted.
    first, _ = await store.claim(creating("zoë-team", "r1"), max_active=1)
    await store.delete(first.id)
    again = creating("zoë-team", "r2")
    assert await store.claim(again, max_active=1) == (again, True)


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_fills_the_count_of_a_non_ascii_owner_from_older_data(store: RedisVideoStore) -> None:
    await store.claim(creating("zoë-team"))
    client = store._client
    assert client is not None
    stale = [k async for k in client.scan_iter(f"{store.prefix}active:*")]
    await client.delete(*stale)  # data as an older version left it: no per-owner sets, no marker
    again = RedisVideoStore(store.url, prefix=store.prefix)
    await again.open()
    try:
        with pytest.raises(errors.ActiveLimitReached):
            await again.claim(creating("zoë-team"), max_active=1)
    finally:
        await again.close()


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_at_the_cap_drops_ids_that_are_no_longer_unfinished(store: RedisVideoStore) -> None:
    # A replica of the previous version (no active sets) finishing a video during a rolling deploy does not
    # remove it from its owner's set; at the cap, the claim script checks the set against the unfinished
    # index (which every version keeps) before refusing, so such an id does not hold a slot for good.
    first, _ = await store.claim(creating("alice"), max_active=1)
    client = store._client
    assert client is not None
    await client.zrem(f"{store.prefix}unfinished", first.id)  # as an older replica's terminal save does
    await client.hset(f"{store.prefix}video:{first.id}", "status", "COMPLETED")
    again = creating("alice")
    assert await store.claim(again, max_active=1) == (again, True)
    assert await client.smembers(f"{store.prefix}active:5:alice") == {again.id}
