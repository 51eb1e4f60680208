"""Engines of the video store port (`services.ports.VideoStore`; design §2 "The job record", "Idempotency").

``open_store(data_dir)`` gives the embedded default, SQLite; ``await store.open()`` before use (or
``async with open_store(d) as store:``). `MemoryVideoStore` keeps everything in this process, for tests of
the services. A shared store for several replicas implements the same port beside them.
"""

from __future__ import annotations

import os

from videogen_server.store.memory import MemoryVideoStore
from videogen_server.store.sqlite import DB_FILENAME, SqliteVideoStore

__all__ = ["DB_FILENAME", "MemoryVideoStore", "SqliteVideoStore", "open_store"]


def open_store(data_dir: str | os.PathLike[str]) -> SqliteVideoStore:
    """The embedded store in `data_dir` (created if missing), file ``videogen.sqlite3``.

    Returns it not yet opened: ``await store.open()`` (creates the schema) and ``await store.close()``.
    """
    os.makedirs(data_dir, exist_ok=True)
    return SqliteVideoStore(os.path.join(data_dir, DB_FILENAME))
