"""Uploads' keys in the store (issue 12): `save_upload` remembers which provider key uploaded a runway:// URI
until the URI expires, `upload_key` reads it back (None: not ours, or expired), fleet-wide and across
restarts. Runs on every engine (sqlite, memory, a real redis-server); each engine's own checks (SQLite's
pruning, plan and migration; Redis's expiry) at the end."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from store_engines import ENGINES, new_store, reopen
from videogen_server.domain.clock import utcnow
from videogen_server.observability.metrics import Metrics
from videogen_server.services.ports import VideoStore
from videogen_server.store import MemoryVideoStore, SqliteVideoStore
from videogen_server.store.redis import RedisVideoStore
from videogen_server.store.sqlite import _MIGRATIONS, SCHEMA_VERSION

URI = "runway://uploads/5f0c7a34-4d0e-4a8e-9a55-0c1d2e3f4a5b"
OTHER = "runway://uploads/0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
DAY = timedelta(hours=24)


@pytest.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VideoStore]:
    s = new_store(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


async def test_an_upload_key_is_kept_and_read_back(store: VideoStore) -> None:
    assert await store.upload_key(URI) is None  # never saved: not ours
    await store.save_upload(URI, "a", utcnow() + DAY)
    await store.save_upload(OTHER, "b", utcnow() + DAY)
    assert await store.upload_key(URI) == "a"
    assert await store.upload_key(OTHER) == "b"
    assert await store.upload_key(URI + "x") is None


async def test_saving_a_uri_again_replaces_its_key(store: VideoStore) -> None:
    await store.save_upload(URI, "a", utcnow() + DAY)
    await store.save_upload(URI, "b", utcnow() + DAY)
    assert await store.upload_key(URI) == "b"


async def test_an_expired_upload_is_not_ours_any_more(store: VideoStore) -> None:
    await store.save_upload(URI, "a", utcnow() - timedelta(seconds=1))  # saved already expired
    assert await store.upload_key(URI) is None
    await store.save_upload(OTHER, "b", utcnow() + timedelta(seconds=1))
    await store.save_upload(URI, "a", utcnow() + DAY)
    await asyncio.sleep(1.2)  # past OTHER's expire_time, whatever the machine's speed
    assert await store.upload_key(OTHER) is None
    assert await store.upload_key(URI) == "a"


async def test_upload_keys_survive_a_restart_and_are_shared(store: VideoStore) -> None:
    await store.save_upload(URI, "b", utcnow() + DAY)
    async with reopen(store) as again:  # another process on the same data (memory: the same store)
        assert await again.upload_key(URI) == "b"
        assert await again.upload_key(OTHER) is None


async def test_the_metrics_wrapper_forwards_and_times_upload_keys() -> None:
    metrics = Metrics()
    inner = MemoryVideoStore()
    await inner.open()
    timed = metrics.timed_store(inner)
    await timed.save_upload(URI, "a", utcnow() + DAY)
    assert await timed.upload_key(URI) == "a"
    assert await inner.upload_key(URI) == "a"
    text = generate_latest(metrics.registry).decode()
    assert 'videogen_store_operation_seconds_count{op="save_upload"} 1.0' in text
    assert 'videogen_store_operation_seconds_count{op="upload_key"} 1.0' in text
    await inner.close()


# -- SQLite: expired rows are pruned by saves, lookups use the key, older files migrate ------------------


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_sqlite_prunes_expired_rows_on_save(store: SqliteVideoStore) -> None:
    past = utcnow() - timedelta(minutes=5)
    for i in range(3):
        await store.save_upload(f"{URI}{i}", "a", utcnow() + DAY)
    # Rows that expired meanwhile, as a day later (written directly: no waiting a day).
    await store._run(
        lambda: store._db().execute(
            "UPDATE uploads SET expire_time = ? WHERE uri != ?", (past.isoformat(), f"{URI}2")
        )
    )
    await store.save_upload(OTHER, "b", utcnow() + DAY)
    left = await store._run(lambda: store._db().execute("SELECT uri FROM uploads ORDER BY uri").fetchall())
    assert [u for (u,) in left] == sorted([f"{URI}2", OTHER])


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_sqlite_upload_statements_use_their_indexes(store: SqliteVideoStore) -> None:
    def plan(sql: str) -> list[str]:
        args = ("x", "y")[: sql.count("?")]
        return [row[3] for row in store._db().execute("EXPLAIN QUERY PLAN " + sql, args)]

    lookup = await store._run(plan, "SELECT key FROM uploads WHERE uri = ? AND expire_time > ?")
    assert any("USING INDEX sqlite_autoindex_uploads_1" in d for d in lookup), lookup
    prune = await store._run(plan, "DELETE FROM uploads WHERE expire_time <= ?")
    assert any("uploads_expire_time" in d for d in prune), prune


async def test_sqlite_migrates_a_version_4_file(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        for step in _MIGRATIONS[:4]:
            for statement in step:
                if callable(statement):
                    statement(conn)
                else:
                    conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        conn.commit()
    async with SqliteVideoStore(path) as store:
        version = await store._run(lambda: store._db().execute("PRAGMA user_version").fetchone()[0])
        assert version == SCHEMA_VERSION == 5
        assert await store.upload_key(URI) is None
        await store.save_upload(URI, "a", utcnow() + DAY)
    async with SqliteVideoStore(path) as again:
        assert await again.upload_key(URI) == "a"


# -- Redis: one key per URI, expiring with it ---------------------------------------------------------------


@pytest.mark.parametrize("store", ["redis"], indirect=True)
async def test_redis_keeps_an_upload_key_until_the_uri_expires(store: RedisVideoStore) -> None:
    await store.save_upload(URI, "a", utcnow() + DAY)
    client = store._client
    assert client is not None
    key = f"{store.prefix}upload:{URI}"
    assert await client.get(key) == "a"
    ttl_ms = await client.pttl(key)
    assert DAY.total_seconds() * 1000 - 60_000 < ttl_ms <= DAY.total_seconds() * 1000
    await store.save_upload(OTHER, "b", utcnow() - timedelta(seconds=1))
    assert await client.exists(f"{store.prefix}upload:{OTHER}") == 0  # nothing kept for an expired URI
