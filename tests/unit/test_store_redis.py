"""The Redis store itself, on real redis-server processes: two clients ("two processes") racing one
idempotency key, keys that stay apart whatever ':' the owner and request_id hold, a crash of Redis (SIGKILL)
losing nothing acknowledged, and a Redis that is down failing fast with StoreUnavailable, never a raw
redis-py error."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer, free_port, require_redis_server, unique_prefix
from unit.test_store import make_record
from videogen_server import errors
from videogen_server.config import redact_url
from videogen_server.domain.video import VideoStatus
from videogen_server.store.redis import RedisVideoStore


async def test_two_clients_racing_one_key_make_one_winner(redis_server: RedisServer) -> None:
    prefix = unique_prefix()
    a = RedisVideoStore(redis_server.url, prefix=prefix)
    b = RedisVideoStore(redis_server.url, prefix=prefix)
    async with a, b:
        keys = [f"k{i}" for i in range(20)]
        results = await asyncio.gather(
            *(s.claim(make_record(request_id=k)) for k in keys for s in (a, b, a, b))
        )
        for i, k in enumerate(keys):
            group = results[4 * i : 4 * i + 4]
            assert sum(ins for _, ins in group) == 1, k
            assert len({r.id for r, _ in group}) == 1
            assert await a.get(group[0][0].id) == await b.get(group[0][0].id) == group[0][0]


async def test_keys_with_colons_stay_apart(redis_server: RedisServer) -> None:
    async with RedisVideoStore(redis_server.url, prefix=unique_prefix()) as store:
        one = make_record(owner="a:b", request_id="c")
        two = make_record(owner="a", request_id="b:c")
        assert await store.claim(one) == (one, True)
        assert await store.claim(two) == (two, True)
        await store.delete(one.id)
        assert await store.claim(make_record(owner="a", request_id="b:c")) == (two, False)


async def test_delete_frees_the_key_of_a_non_ascii_owner(redis_server: RedisServer) -> None:
    # The key is built in Python (claim) and in Lua (delete); Lua's string.len counts bytes, so Python
    # must too, or a non-ASCII caller name's key survives the delete and the request_id stays taken.
    prefix = unique_prefix()
    async with RedisVideoStore(redis_server.url, prefix=prefix) as store:
        first = make_record(owner="zoë-team", request_id="r1")
        assert await store.claim(first) == (first, True)
        await store.delete(first.id)
        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await raw.keys(f"{prefix}key:*") == []  # record and key went together
        finally:
            await raw.aclose()
        again = make_record(owner="zoë-team", request_id="r1")
        assert await store.claim(again) == (again, True)


async def test_a_retried_claim_of_the_same_record_is_still_its_own(redis_server: RedisServer) -> None:
    # redis-py retries a script once on a broken connection: a claim whose reply was lost runs again.
    async with RedisVideoStore(redis_server.url, prefix=unique_prefix()) as store:
        rec = make_record(request_id="again")
        assert await store.claim(rec) == (rec, True)
        assert await store.claim(rec) == (rec, True)


async def test_a_crash_of_redis_loses_nothing_acknowledged(redis_server: RedisServer) -> None:
    prefix = unique_prefix()
    async with RedisVideoStore(redis_server.url, prefix=prefix) as store:
        recs = [make_record(request_id=f"r{i}") for i in range(30)]
        for rec in recs:
            await store.claim(rec)
        done = await store.save(recs[0].replace(status=VideoStatus.COMPLETED))
        await store.delete(recs[1].id)
    redis_server.kill()  # SIGKILL right after the last acknowledged write
    redis_server.start()  # same port, same directory: replays the append-only file
    async with RedisVideoStore(redis_server.url, prefix=prefix) as again:
        assert await again.get(recs[0].id) == done
        assert await again.get(recs[1].id) is None
        for rec in recs[2:]:
            assert await again.get(rec.id) == rec
            assert await again.claim(make_record(request_id=rec.request_id)) == (rec, False)
        assert {r.id for r in await again.list_unfinished()} == {r.id for r in recs[2:]}


async def test_redis_down_fails_fast_as_store_unavailable(redis_server: RedisServer) -> None:
    store = RedisVideoStore(redis_server.url, prefix=unique_prefix())
    async with store:
        rec = make_record(request_id="before")
        await store.claim(rec)
        redis_server.kill()
        for call in (
            lambda: store.get(rec.id, owner="alice"),
            lambda: store.claim(make_record(request_id="during")),
            lambda: store.save(rec.replace(status=VideoStatus.QUEUED)),
            lambda: store.delete(rec.id),
            store.list_unfinished,
            store.check,  # health's probe: a PING
        ):
            start = time.monotonic()
            with pytest.raises(errors.StoreUnavailable) as info:
                await call()
            assert time.monotonic() - start < 5  # bounded timeouts, not the caller's deadline
            assert info.value.reason == "STORE_UNAVAILABLE" and info.value.retry_after == 1.0
        redis_server.start()
        # Back: the pooled connections broken by the restart cost no error.
        assert await store.get(rec.id) == rec
        assert await store.claim(make_record(request_id="before")) == (rec, False)
        await store.check()


async def test_a_replica_cut_off_from_its_master_is_store_unavailable(redis_server: RedisServer) -> None:
    # MASTERDOWN: Redis made a replica of a master it cannot reach, told not to serve stale data. redis-py
    # raises MasterDownError with the code stripped from its text: a check of the text alone misses it.
    async with RedisVideoStore(redis_server.url, prefix=unique_prefix()) as store:
        rec = make_record(request_id="before")
        await store.claim(rec)
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            await admin.config_set("replica-serve-stale-data", "no")
            await admin.replicaof("127.0.0.1", free_port())  # nothing listens there
        finally:
            await admin.aclose()
        with pytest.raises(errors.StoreUnavailable) as info:
            await store.get(rec.id)
        assert info.value.reason == "STORE_UNAVAILABLE" and info.value.retry_after == 1.0


async def test_open_warns_when_redis_would_not_keep_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_redis_server()
    weak = RedisServer(tmp_path / "weak", appendonly=False)
    weak.start()
    try:
        with caplog.at_level(logging.WARNING):
            async with RedisVideoStore(weak.url, prefix=unique_prefix()):
                pass
        assert any("appendonly off" in r.getMessage() for r in caplog.records)
    finally:
        weak.stop()


def test_the_description_has_no_password() -> None:
    store = RedisVideoStore("rediss://videogen:s3cret-pass@redis.internal:6380/2?ssl_cert_reqs=none")
    assert store.description == redact_url(store.url) == "rediss://redis.internal:6380/2"


async def test_a_hung_redis_fails_a_call_within_the_socket_timeout(redis_server: RedisServer) -> None:
    # SIGSTOP: the port still accepts connections, nothing answers (a hung or partitioned Redis).
    async with RedisVideoStore(redis_server.url, prefix=unique_prefix()) as store:
        assert await store.get("x") is None
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(errors.StoreUnavailable):
                await store.claim(make_record(request_id="hung"))
            # 2 s socket timeout, not retried: well under two of them (a retry would make it 4 s).
            assert time.monotonic() - start < 3.9
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)


async def _commands(client: aioredis.Redis) -> int:
    """Commands Redis has processed so far (INFO stats; this INFO counts as one), to tell an answer from
    memory from a round trip."""
    return int((await client.info("stats"))["total_commands_processed"])


async def test_terminal_records_are_cached_briefly_and_never_for_another_owner(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Get of a COMPLETED video is the hot read: a terminal record is answered from memory for a short
    while; a running one never is; another owner's cached video costs the round trip an unknown id costs."""
    monkeypatch.setattr("videogen_server.store.redis.TERMINAL_CACHE_TTL_S", 0.5)
    prefix = unique_prefix()
    a = RedisVideoStore(redis_server.url, prefix=prefix)
    b = RedisVideoStore(redis_server.url, prefix=prefix)
    info = aioredis.Redis.from_url(redis_server.url)
    async with a, b:
        await _commands(info)  # connected
        running = make_record(status=VideoStatus.IN_PROGRESS)
        await a.claim(running)
        done = make_record(status=VideoStatus.COMPLETED)
        await b.claim(done)
        assert await a.get(done.id) == done  # read once: cached from here

        before = await _commands(info)
        for _ in range(5):
            assert await a.get(done.id, owner="alice") == done
        assert await _commands(info) - before == 1  # only the INFO call itself

        # Another owner: a miss, the same owner-scoped round trip as an unknown id.
        before = await _commands(info)
        assert await a.get(done.id, owner="mallory") is None
        assert await _commands(info) - before > 1  # the owner-scoped script ran in Redis

        # A running record is always read from Redis: b's change is seen at once.
        await b.save(running.replace(progress=40))
        assert (await a.get(running.id)).progress == 40  # type: ignore[union-attr]

        # Output metadata saved by another process is seen once the short cache life is over.
        later = done.replace(upstream_status="SUCCEEDED-again")
        await b.save(later)
        assert (await a.get(done.id)).upstream_status == done.upstream_status  # type: ignore[union-attr]
        await asyncio.sleep(0.6)
        assert (await a.get(done.id)).upstream_status == "SUCCEEDED-again"  # type: ignore[union-attr]

        # A delete here forgets the cached record at once.
        await a.delete(done.id)
        assert await a.get(done.id) is None
    await info.aclose()
