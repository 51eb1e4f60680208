"""Engines of the video store port (`services.ports.VideoStore`; design §2 "The job record", "Idempotency").

``open_store(data_dir, url)`` gives the engine VIDEOGEN_STORE names (config.py checks it): SQLite, the
embedded default, in `data_dir` or at a path of its own, or Redis, shared by several replicas
(store/redis.py, imported only then). ``await store.open()`` before use (or ``async with ... as store:``).
`MemoryVideoStore` keeps everything in this process, for tests of the services.

``open_coordinator(url, lease_ttl=...)`` gives the Coordinator (services/ports.py) that goes with that store:
Redis for a Redis store (store/redis_coordinator.py, every replica on it), else the in-process one
(store/local_coordinator.py: with SQLite, this process is the whole fleet).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from videogen_server.store.local_coordinator import LocalCoordinator
from videogen_server.store.memory import MemoryVideoStore
from videogen_server.store.sqlite import DB_FILENAME, SqliteVideoStore

if TYPE_CHECKING:
    from videogen_server.store.redis import RedisVideoStore
    from videogen_server.store.redis_coordinator import RedisCoordinator

__all__ = [
    "DB_FILENAME",
    "LocalCoordinator",
    "MemoryVideoStore",
    "SqliteVideoStore",
    "open_coordinator",
    "open_store",
]

REDIS_URL_PREFIXES = ("redis://", "rediss://")

SQLITE_URL_PREFIX = "sqlite:///"


def open_store(data_dir: str | os.PathLike[str], url: str = "sqlite") -> SqliteVideoStore | RedisVideoStore:
    """The store `url` names (a VIDEOGEN_STORE value, already checked by config.py), not yet opened:
    ``await store.open()`` and ``await store.close()``.

    ``sqlite``: the embedded store in `data_dir` (created if missing), file ``videogen.sqlite3``.
    ``sqlite:///absolute/path.db``: SQLite at that path (its directory created if missing).
    ``redis://...`` / ``rediss://...``: the shared Redis store.
    """
    if url.startswith(REDIS_URL_PREFIXES):
        from videogen_server.store.redis import RedisVideoStore  # only then: redis-py is not loaded otherwise

        return RedisVideoStore(url)
    if url.startswith(SQLITE_URL_PREFIX):
        path = "/" + url.removeprefix(SQLITE_URL_PREFIX)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return SqliteVideoStore(path)
    os.makedirs(data_dir, exist_ok=True)
    return SqliteVideoStore(os.path.join(data_dir, DB_FILENAME))


def open_coordinator(url: str, *, lease_ttl: float) -> LocalCoordinator | RedisCoordinator:
    """The Coordinator for the store `url` names (the same VIDEOGEN_STORE value as `open_store`), not yet
    opened: ``await coordinator.open()`` and ``await coordinator.close()``.

    ``redis://...`` / ``rediss://...``: `RedisCoordinator` on that Redis (the store's key prefix), shared by
    every replica. Anything else (SQLite, memory): `LocalCoordinator`, this process alone.
    """
    if url.startswith(REDIS_URL_PREFIXES):
        from videogen_server.store.redis_coordinator import RedisCoordinator  # redis-py only then

        return RedisCoordinator(url, lease_ttl=lease_ttl)
    return LocalCoordinator(lease_ttl)
