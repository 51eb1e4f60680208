"""The store engines the store contract tests run against: each test module builds its `store` fixture with
`ENGINES` as the params, and `reopen` reads back what a closed engine kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from videogen_server.services.ports import VideoStore
from videogen_server.store import MemoryVideoStore, SqliteVideoStore, open_store

ENGINES = ["sqlite", "memory"]


def new_store(engine: str, tmp_path: Path) -> VideoStore:
    """A store of `engine`, not yet opened (SQLite in a fresh data directory under tmp_path)."""
    if engine == "sqlite":
        return open_store(tmp_path / "data")
    if engine == "memory":
        return MemoryVideoStore()
    raise ValueError(engine)


@asynccontextmanager
async def reopen(store: VideoStore) -> AsyncIterator[VideoStore]:
    """What `store` kept, read through a new store on the same data: SQLite reopens its file (the records
    come back from disk, not from the closed store's cache). The memory engine keeps nothing once closed,
    so it is the same store, still open: what it gives back is what it kept."""
    if isinstance(store, SqliteVideoStore):
        await store.close()
        again = SqliteVideoStore(store.path)
        await again.open()
        try:
            yield again
        finally:
            await again.close()
    else:
        yield store
