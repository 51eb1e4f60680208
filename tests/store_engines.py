"""The store engines the store contract tests run against: each test module builds its `store` fixture with
`ENGINES` as the params, and `reopen` reads back what a closed engine kept.

Redis is a real redis-server (tests/redis_server.py), one per test run, each store under a key prefix of its
own; without redis-server its cases are skipped (failed in CI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis_server import shared_redis, unique_prefix
from videogen_server.services.ports import VideoStore
from videogen_server.store import MemoryVideoStore, SqliteVideoStore, open_store
from videogen_server.store.redis import RedisVideoStore

ENGINES = ["sqlite", "memory", "redis"]


def new_store(engine: str, tmp_path: Path) -> VideoStore:
    """A store of `engine`, not yet opened (SQLite in a fresh data directory under tmp_path; Redis on the
    test run's redis-server, under a fresh key prefix)."""
    if engine == "sqlite":
        return open_store(tmp_path / "data")
    if engine == "memory":
        return MemoryVideoStore()
    if engine == "redis":
        return RedisVideoStore(shared_redis().url, prefix=unique_prefix())
    raise ValueError(engine)


@asynccontextmanager
async def reopen(store: VideoStore) -> AsyncIterator[VideoStore]:
    """What `store` kept, read through a new store on the same data: SQLite reopens its file (the records
    come back from disk, not from the closed store's cache), Redis makes a new client on the same server and
    prefix. The memory engine keeps nothing once closed, so it is the same store, still open: what it gives
    back is what it kept."""
    again: VideoStore
    if isinstance(store, SqliteVideoStore):
        await store.close()
        again = SqliteVideoStore(store.path)
    elif isinstance(store, RedisVideoStore):
        await store.close()
        again = RedisVideoStore(store.url, prefix=store.prefix)
    else:
        yield store
        return
    await again.open()
    try:
        yield again
    finally:
        await again.close()
