"""The video store contract (services/ports.py), run against every engine: SQLite on real files, and the
in-memory one. The tests of SQLite itself (schema, threads, query plan, two connections) run on SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from store_engines import ENGINES, new_store, reopen
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import ArchiveState, OutputInfo, VideoRecord, VideoStatus
from videogen_server.services.ports import VideoStore
from videogen_server.store import DB_FILENAME, MemoryVideoStore, SqliteVideoStore, open_store
from videogen_server.store.codec import decode_record, encode_record
from videogen_server.store.sqlite import SCHEMA_VERSION

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_record(**changes: Any) -> VideoRecord:
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "owner": "alice",
        "mode": GenerationMode.TEXT_TO_VIDEO,
        "model": "gen4.5",
        "prompt": "a cat on a skateboard",
        "seconds": 5,
        "size": "1280x720",
        "status": VideoStatus.CREATING,
        "create_time": T0,
        "update_time": T0,
    }
    fields.update(changes)
    return VideoRecord(**fields)


@pytest.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VideoStore]:
    s = new_store(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


# A test of SQLite itself: the `store` fixture on that engine only.
sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


def full_record() -> VideoRecord:
    return make_record(
        mode=GenerationMode.VIDEO_TO_VIDEO,
        model="gen4_aleph",
        prompt='naïve 🎬 prompt, "quoted" and\nmultiline',
        seconds=None,
        size="",
        status=VideoStatus.COMPLETED,
        # a non-UTC zone: stored as UTC, the same instant comes back
        create_time=datetime(2025, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))),
        update_time=T0 + timedelta(seconds=30),
        request_id="req-1",
        fingerprint="sha256:abc",
        upstream_id="3f1a6c2e-0000-4000-8000-000000000001",
        upstream_status="SUCCEEDED",
        progress=100,
        outputs=(
            OutputInfo(0, "video/mp4", 1234567, sha256="0f" * 32, archive=ArchiveState.ARCHIVED),
            OutputInfo(1),
            OutputInfo(
                2, "", None, archive=ArchiveState.LOST, lost_reason="Runway answered 403: URL expired"
            ),
            OutputInfo(3, "video/mp4", 99, sha256="e1" * 32, archive=ArchiveState.EXPIRED),
        ),
        error_code="",
        error_message="",
        complete_time=T0 + timedelta(seconds=30),
        expire_time=T0 + timedelta(hours=24),
        cost_credits=12.5,
        estimated_credits=10.0,
    )


# -- codec and round trip ------------------------------------------------------------------------------


def test_codec_round_trip_every_field() -> None:
    rec = full_record()
    back = decode_record(encode_record(rec))
    assert back == rec
    assert isinstance(back.status, VideoStatus) and isinstance(back.mode, GenerationMode)
    assert isinstance(back.outputs, tuple) and all(isinstance(o, OutputInfo) for o in back.outputs)
    for t in (back.create_time, back.update_time, back.complete_time, back.expire_time):
        assert t is not None and t.utcoffset() == timedelta(0)


def test_codec_tolerates_unknown_and_missing_keys() -> None:
    import json

    data = json.loads(encode_record(make_record()))
    data["a_field_from_a_newer_version"] = 1
    del data["fingerprint"], data["outputs"], data["complete_time"]
    back = decode_record(json.dumps(data))
    assert back.fingerprint == "" and back.outputs == () and back.complete_time is None


def test_codec_keeps_every_archive_state_by_value() -> None:
    import json

    rec = full_record()
    outputs = json.loads(encode_record(rec))["outputs"]
    assert [o["archive"] for o in outputs] == ["ARCHIVED", "PENDING", "LOST", "EXPIRED"]
    assert outputs[0]["sha256"] == "0f" * 32 and outputs[2]["lost_reason"].startswith("Runway answered 403")
    back = decode_record(encode_record(rec)).outputs
    assert back == rec.outputs and all(isinstance(o.archive, ArchiveState) for o in back)


def test_codec_reads_an_output_written_before_the_archive_as_pending() -> None:
    # Exactly what the previous codec wrote for a COMPLETED video's output: no sha256/archive/lost_reason.
    old = encode_record(make_record(status=VideoStatus.COMPLETED)).replace(
        '"outputs":[]', '"outputs":[{"index":0,"content_type":"video/mp4","size_bytes":512},{"index":1}]'
    )
    assert '"archive"' not in old
    back = decode_record(old)
    assert back.outputs == (OutputInfo(0, "video/mp4", 512), OutputInfo(1))
    assert back.outputs[0].archive is ArchiveState.PENDING
    assert (back.outputs[0].sha256, back.outputs[0].lost_reason) == ("", "")


def test_codec_naive_datetime_is_utc() -> None:
    naive = datetime(2025, 1, 1, 0, 0)
    back = decode_record(encode_record(make_record(create_time=naive)))
    assert back.create_time == naive.replace(tzinfo=UTC)


async def test_round_trip_through_the_store(store: VideoStore) -> None:
    full = full_record()
    minimal = make_record(seconds=None)  # defaults and None values
    failed = make_record(
        status=VideoStatus.FAILED, error_code="SAFETY.INPUT.TEXT", error_message="nope", request_id="r2"
    )
    for rec in (full, minimal, failed):
        assert await store.claim(rec) == (rec, True)
    # Read back from disk, not only from the terminal-record cache.
    async with reopen(store) as reopened:
        for rec in (full, minimal, failed):
            got = await reopened.get(rec.id)
            assert got == rec
            assert got is not None and got.create_time.tzinfo is not None
        assert await reopened.get("no-such-id") is None


@sqlite_only
async def test_schema_and_columns(store: SqliteVideoStore) -> None:
    rec = make_record(request_id="k", status=VideoStatus.QUEUED, update_time=T0)
    await store.claim(rec)
    with closing(sqlite3.connect(store.path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        row = conn.execute("SELECT id, owner, request_id, status, updated_at FROM videos").fetchone()
    assert row == (rec.id, "alice", "k", "QUEUED", "2025-03-01T12:00:00.123456+00:00")
    assert Path(store.path).name == DB_FILENAME


def test_protocol_conformance(tmp_path: Path) -> None:
    s: VideoStore = open_store(tmp_path / "d")  # also type-checked by mypy
    assert isinstance(s, VideoStore)
    assert (tmp_path / "d").is_dir()
    m: VideoStore = MemoryVideoStore()
    assert isinstance(m, VideoStore)


async def test_check_answers_on_an_open_store(store: VideoStore) -> None:
    # health's probe (api/server.py StoreHealth): returns on a store that answers, on every engine
    assert await store.check() is None


# -- claim ---------------------------------------------------------------------------------------------


async def test_claim_same_key_returns_the_first(store: VideoStore) -> None:
    first = make_record(request_id="key-1")
    second = make_record(request_id="key-1", prompt="something else")
    assert await store.claim(first) == (first, True)
    assert await store.claim(second) == (first, False)
    assert await store.get(second.id) is None


async def test_claim_key_is_scoped_by_owner(store: VideoStore) -> None:
    a = make_record(owner="alice", request_id="same")
    b = make_record(owner="bob", request_id="same")
    assert await store.claim(a) == (a, True)
    assert await store.claim(b) == (b, True)
    assert await store.get(a.id) == a and await store.get(b.id) == b


async def test_claim_without_key_always_inserts(store: VideoStore) -> None:
    recs = [make_record(request_id="") for _ in range(3)]
    for rec in recs:
        assert await store.claim(rec) == (rec, True)
    assert len(await store.list_unfinished()) == 3


async def test_claim_duplicate_id_is_an_error(store: VideoStore) -> None:
    rec = make_record(request_id="k1")
    await store.claim(rec)
    with pytest.raises(ValueError):
        await store.claim(rec.replace(request_id="k2"))
    with pytest.raises(ValueError):
        await store.claim(rec.replace(request_id=""))
    assert await store.get(rec.id) == rec


async def test_claim_concurrent_duplicates_exactly_one_inserted(store: VideoStore) -> None:
    recs = [make_record(request_id="dup") for _ in range(50)]
    results = await asyncio.gather(*(store.claim(r) for r in recs))
    assert sum(inserted for _, inserted in results) == 1
    winner = next(r for r, inserted in results if inserted)
    assert all(r == winner for r, _ in results)
    assert await store.get(winner.id) == winner


async def test_claim_two_connections_on_one_file(tmp_path: Path) -> None:
    # Two stores (two connections, two worker threads) on one file stand in for two processes.
    a, b = open_store(tmp_path), open_store(tmp_path)
    await a.open()
    await b.open()
    try:
        keys = [f"k{i}" for i in range(20)]
        results = await asyncio.gather(
            *(s.claim(make_record(request_id=k)) for k in keys for s in (a, b, a, b))
        )
        for i, k in enumerate(keys):
            group = results[4 * i : 4 * i + 4]
            assert sum(ins for _, ins in group) == 1, k
            assert len({r.id for r, _ in group}) == 1
    finally:
        await a.close()
        await b.close()


async def test_delete_frees_the_key(store: VideoStore) -> None:
    rec = make_record(request_id="retry-me")
    await store.claim(rec)
    await store.delete(rec.id)
    assert await store.get(rec.id) is None
    again = make_record(request_id="retry-me")
    assert await store.claim(again) == (again, True)
    await store.delete("unknown-id")  # no-op


# -- save ----------------------------------------------------------------------------------------------


async def test_save_progresses_and_returns_stored(store: VideoStore) -> None:
    rec = make_record(request_id="s")
    await store.claim(rec)
    queued = rec.replace(status=VideoStatus.QUEUED, upstream_id="u-1", upstream_status="PENDING")
    assert await store.save(queued) == queued
    running = queued.replace(status=VideoStatus.IN_PROGRESS, progress=40, update_time=T0 + timedelta(1))
    assert await store.save(running) == running
    assert await store.get(rec.id) == running


async def test_save_terminal_is_final(store: VideoStore) -> None:
    rec = make_record()
    await store.claim(rec)
    done = rec.replace(status=VideoStatus.COMPLETED, progress=100, outputs=(OutputInfo(0),), complete_time=T0)
    assert await store.save(done) == done
    stale = rec.replace(status=VideoStatus.IN_PROGRESS, progress=90)
    assert await store.save(stale) == done
    assert await store.save(rec.replace(status=VideoStatus.CANCELLED)) == done
    assert await store.save(rec.replace(status=VideoStatus.FAILED)) == done
    assert await store.get(rec.id) == done
    async with reopen(store) as again:
        assert await again.get(rec.id) == done


async def test_save_cancelled_stays_cancelled(store: VideoStore) -> None:
    rec = make_record(status=VideoStatus.IN_PROGRESS)
    await store.claim(rec)
    cancelled = rec.replace(status=VideoStatus.CANCELLED, upstream_status="CANCELLED")
    await store.save(cancelled)
    # The poller's last answer arrives late: Runway says SUCCEEDED, or a 404 reads as FAILED.
    for late in (VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.IN_PROGRESS, VideoStatus.QUEUED):
        assert await store.save(rec.replace(status=late)) == cancelled
    assert await store.get(rec.id) == cancelled


async def test_save_fills_output_metadata_on_completed(store: VideoStore) -> None:
    rec = make_record()
    await store.claim(rec)
    done = rec.replace(status=VideoStatus.COMPLETED, outputs=(OutputInfo(0), OutputInfo(1)), complete_time=T0)
    await store.save(done)
    assert await store.get(rec.id) == done  # now cached
    later = T0 + timedelta(minutes=1)
    filled = done.replace(
        outputs=(OutputInfo(0, "video/mp4", 999),),
        update_time=later,
        complete_time=later,  # ignored: the terminal moment stays as first recorded
        expire_time=T0 + timedelta(hours=24),
    )
    got = await store.save(filled)
    expected = done.replace(
        outputs=(OutputInfo(0, "video/mp4", 999), OutputInfo(1)),
        update_time=later,
        expire_time=T0 + timedelta(hours=24),
    )
    assert got == expected
    assert await store.get(rec.id) == expected  # the cache follows
    # Known metadata is never erased by a save that lacks it.
    assert await store.save(done) == expected.replace(update_time=later)
    async with reopen(store) as again:
        assert await again.get(rec.id) == expected


async def test_save_unknown_id_is_keyerror(store: VideoStore) -> None:
    with pytest.raises(KeyError):
        await store.save(make_record())


async def test_save_cannot_change_owner_or_key(store: VideoStore) -> None:
    rec = make_record(request_id="k")
    await store.claim(rec)
    with pytest.raises(ValueError):
        await store.save(rec.replace(owner="mallory"))
    with pytest.raises(ValueError):
        await store.save(rec.replace(request_id="other"))
    assert await store.get(rec.id) == rec


async def test_concurrent_saves_terminal_wins(store: VideoStore) -> None:
    rec = make_record()
    await store.claim(rec)
    done = rec.replace(status=VideoStatus.COMPLETED)
    updates = [rec.replace(status=VideoStatus.IN_PROGRESS, progress=p) for p in range(0, 100, 5)]
    await asyncio.gather(
        *(store.save(u) for u in updates[:10]), store.save(done), *map(store.save, updates[10:])
    )
    assert await store.get(rec.id) == done


# -- restart, list_unfinished, lifecycle --------------------------------------------------------------


async def test_restart_keeps_records_and_keys(store: VideoStore) -> None:
    s = store
    # create_time decides the order of list_unfinished (oldest first), then insertion order.
    creating = make_record(request_id="a", create_time=T0 + timedelta(seconds=2))
    queued = make_record(request_id="b", status=VideoStatus.QUEUED)
    running = make_record(status=VideoStatus.IN_PROGRESS)
    done = make_record(request_id="c", status=VideoStatus.COMPLETED)
    failed = make_record(status=VideoStatus.FAILED)
    cancelled = make_record(status=VideoStatus.CANCELLED)
    for rec in (creating, queued, running, done, failed, cancelled):
        await s.claim(rec)

    async with reopen(s) as s2:
        for rec in (creating, queued, running, done, failed, cancelled):
            assert await s2.get(rec.id) == rec
        assert await s2.claim(make_record(request_id="a")) == (creating, False)
        assert await s2.claim(make_record(request_id="c")) == (done, False)
        assert await s2.list_unfinished() == [queued, running, creating]


@pytest.mark.parametrize("engine", ENGINES)
async def test_lifecycle_errors(tmp_path: Path, engine: str) -> None:
    s = new_store(engine, tmp_path)
    with pytest.raises(RuntimeError, match="not open"):
        await s.get("x")
    async with s:
        await s.open()  # idempotent
        assert await s.get("x") is None
    with pytest.raises(RuntimeError, match="closed"):
        await s.claim(make_record())
    await s.close()  # idempotent


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path):
        pass
    with closing(sqlite3.connect(tmp_path / DB_FILENAME)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        await open_store(tmp_path).open()


@sqlite_only
async def test_sqlite_runs_on_one_worker_thread_off_the_loop(
    store: SqliteVideoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    original = store._select_sync

    def spy(video_id: str) -> VideoRecord | None:
        threads.add(threading.get_ident())
        return original(video_id)

    monkeypatch.setattr(store, "_select_sync", spy)
    rec = make_record()
    await store.claim(rec)
    await asyncio.gather(*(store.get(rec.id) for _ in range(20)), store.save(rec))
    assert len(threads) == 1 and threading.get_ident() not in threads


@sqlite_only
async def test_unfinished_query_uses_the_partial_index(store: SqliteVideoStore) -> None:
    with closing(sqlite3.connect(store.path)) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT data FROM videos"
            " WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"
        ).fetchall()
    # Either partial index over the unfinished rows (migrations 1 and 2 hold the same rows): SQLite picks by
    # its cost estimate, which the row width sways (schema 3's columns made it pick the owner one).
    assert "videos_unfinished" in str(plan) or "videos_owner_unfinished" in str(plan), plan


def test_the_terminal_list_in_sql_is_the_domains() -> None:
    from videogen_server.store.sqlite import _TERMINAL_SQL

    # Built from VideoStatus; the text is also that of migration 1's partial index, so it must not move.
    assert _TERMINAL_SQL == "('COMPLETED', 'FAILED', 'CANCELLED')"
